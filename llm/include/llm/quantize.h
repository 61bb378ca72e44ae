#pragma once
// GGUF -> GGUF with the weight matrices in another type (./quantize).
//
// Rules (docs/gguf-conventions.md): 1-D tensors (norms, biases) stay F32.
// With `pure`, every 2-D tensor takes the target type. Otherwise, for 4- and
// 5-bit targets the output matrix (or, when the model ties it, the token
// embedding) is kept at Q8_0: it is read once per token, small next to the
// blocks, and the most sensitive to quantization error (llama.cpp keeps it
// at higher precision too, Q6_K). Rows must be whole blocks of the target.
#include <cstdint>
#include <functional>
#include <string>

#include "ggml/types.h"

namespace llm {

struct QuantizeOptions {
  std::string in_path, out_path;
  ggml::Type type = ggml::Type::Q8_0;
  bool pure = false;
  bool allow_requantize = false;  // inputs already quantized: dequantize, then quantize
  int n_threads = 0;              // 0: all cores
  struct TensorReport {
    std::string name;
    ggml::Type from, to;
    int64_t n_elements;
    double rms_error;   // of the round trip against the input values
    double rms_value;   // of the input values, to put the error in scale
  };
  std::function<void(size_t done, size_t total, const TensorReport&)> progress;
  std::function<void(const std::string&)> warn;
  // Called for each row of each tensor in F32 before it is converted (rows
  // of one tensor from several threads at once): ./export-lora adds a LoRA
  // update here.
  std::function<void(const std::string& tensor, int64_t row, float* values, int64_t n)> adjust_row;
};

struct QuantizeSummary {
  uint64_t in_bytes = 0, out_bytes = 0;        // whole files
  uint64_t in_weight_bytes = 0, out_weight_bytes = 0;  // tensor data
  uint64_t n_elements = 0;
  double bits_per_weight() const { return n_elements ? 8.0 * (double)out_weight_bytes / (double)n_elements : 0; }
};

// Types ./quantize writes: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1.
ggml::Type parse_quant_type(const std::string& name);  // throws llm::Error
QuantizeSummary quantize_file(const QuantizeOptions& opt);

}  // namespace llm
