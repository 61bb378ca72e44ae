#pragma once
// Hugging Face checkpoint directory -> GGUF with llama.cpp's names.
//
// Documented transforms (docs/gguf-conventions.md):
//  - PyTorch [out, in] weights become GGUF ne = [in, out] (same bytes order);
//  - LLaMA q_proj/k_proj rows are permuted from Hugging Face's half-split rotary
//    layout to the interleaved one (llama.cpp's convert does the same), per
//    n_head for q and n_head_kv for k;
//  - GPT-NeoX's fused query_key_value rows, per head [q, k, v], are regrouped
//    into [all q; all k; all v] (weight and bias);
//  - 1-D tensors (norms, biases) stay F32; 2-D ones take the output type
//    (Q8_0 falls back to F16 for rows that are not whole 32-blocks).
#include <cstdint>
#include <functional>
#include <string>

#include "ggml/types.h"
#include "llm/arch.h"

namespace llm {

struct ConvertOptions {
  std::string model_dir;
  std::string out_path;
  ggml::Type outtype = ggml::Type::F16;  // F32, F16, BF16 or Q8_0
  bool vocab_only = false;               // tokenizer metadata only, no tensors
  // Called after each tensor is written (done of total, its GGUF name).
  std::function<void(size_t done, size_t total, const std::string& name)> progress;
  std::function<void(const std::string& msg)> warn;
};

struct ConvertSummary {
  Arch arch = Arch::LLAMA;
  size_t n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t out_bytes = 0;  // size of the written file
  int32_t n_vocab = 0;
};

// Throws llm::Error (one line) for anything unsupported or inconsistent;
// the output file appears only when complete.
ConvertSummary convert_hf_checkpoint(const ConvertOptions& opt);

// The q/k row permutation alone, exposed for tests: rows x cols, row-major.
void permute_rope_rows(const float* src, float* dst, int64_t rows, int64_t cols, int n_head);
void neox_qkv_regroup(const float* src, float* dst, int n_head, int64_t head_dim, int64_t cols);

}  // namespace llm
