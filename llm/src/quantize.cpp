#include "llm/quantize.h"


#include <omp.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "ggml/backend.h"
#include "llm/arch.h"
#include "llm/files.h"
#include "llm/gguf.h"

namespace llm {

namespace {

bool is_float(ggml::Type t) { return t == ggml::Type::F32 || t == ggml::Type::F16 || t == ggml::Type::BF16; }

FileType file_type(ggml::Type t) {
  switch (t) {
    case ggml::Type::F32: return FileType::ALL_F32;
    case ggml::Type::F16: return FileType::MOSTLY_F16;
    case ggml::Type::BF16: return FileType::MOSTLY_BF16;
    case ggml::Type::Q4_0: return FileType::MOSTLY_Q4_0;
    case ggml::Type::Q4_1: return FileType::MOSTLY_Q4_1;
    case ggml::Type::Q5_0: return FileType::MOSTLY_Q5_0;
    case ggml::Type::Q5_1: return FileType::MOSTLY_Q5_1;
    default: return FileType::MOSTLY_Q8_0;
  }
}

}  // namespace

ggml::Type parse_quant_type(const std::string& name) {
  static const std::pair<const char*, ggml::Type> names[] = {
      {"f32", ggml::Type::F32},   {"f16", ggml::Type::F16},   {"bf16", ggml::Type::BF16}, {"q8_0", ggml::Type::Q8_0},
      {"q4_0", ggml::Type::Q4_0}, {"q4_1", ggml::Type::Q4_1}, {"q5_0", ggml::Type::Q5_0}, {"q5_1", ggml::Type::Q5_1}};
  std::string lower;
  for (char c : name) lower += (char)std::tolower((unsigned char)c);
  for (const auto& [n, t] : names)
    if (lower == n) return t;
  throw Error("type '" + name + "' is not one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1");
}

QuantizeSummary quantize_file(const QuantizeOptions& opt) {
  // The output is written beside and renamed over its path at the end, so
  // naming the input again (by any path) would replace the model.
  if (same_file(opt.in_path, opt.out_path))
    throw Error(opt.out_path + " is the input file: the output must not overwrite the input");
  auto in = gguf::File::open(opt.in_path);
  const gguf::File& f = *in;
  QuantizeSummary sum;
  sum.in_bytes = std::filesystem::file_size(opt.in_path);
  const ggml::Type T = opt.type;
  const bool low_bits = T == ggml::Type::Q4_0 || T == ggml::Type::Q4_1 || T == ggml::Type::Q5_0 || T == ggml::Type::Q5_1;
  const bool tied = !f.find_tensor("output.weight");

  gguf::Writer w;
  for (const auto& [k, v] : f.metadata()) {
    if (k == kv::FILE_TYPE || k == kv::QUANTIZATION_VERSION || k == "general.alignment") continue;
    w.set(k, v);
  }
  w.set(kv::FILE_TYPE, gguf::Value::make_uint(gguf::ValueType::U32, (uint32_t)file_type(T)));
  if (ggml::traits(T).quantized) w.set(kv::QUANTIZATION_VERSION, gguf::Value::make_uint(gguf::ValueType::U32, 2));

  // Plan every tensor's output type first: the header precedes the data.
  std::vector<ggml::Type> out_type;
  bool requantize = false;
  for (const auto& t : f.tensors()) {
    if (!is_float(t.type)) {
      if (!ggml::traits(t.type).to_float)
        throw Error(f.path() + ": tensor '" + t.name + "' has type " + ggml::type_name(t.type) + ", which cannot be read");
      requantize = true;
    }
    ggml::Type to = T;
    if (t.n_dims == 1) {
      to = ggml::Type::F32;
    } else if (!opt.pure && low_bits && (t.name == "output.weight" || (tied && t.name == "token_embd.weight"))) {
      to = ggml::Type::Q8_0;
    }
    if (t.ne[0] % ggml::block_size(to) != 0)
      throw Error(f.path() + ": tensor '" + t.name + "' has rows of " + std::to_string(t.ne[0]) +
                  " values, not a multiple of " + ggml::type_name(to) + "'s block of " +
                  std::to_string(ggml::block_size(to)));
    out_type.push_back(to);
  }
  if (requantize && !opt.allow_requantize)
    throw Error(f.path() + ": the input is already quantized; pass --allow-requantize to dequantize and quantize again");
  if (requantize && opt.warn)
    opt.warn("requantizing: quantized tensors are dequantized first, so their error adds to the new one");
  for (size_t i = 0; i < f.tensors().size(); i++) {
    const auto& t = f.tensors()[i];
    w.add_tensor(t.name, out_type[i], t.ne, t.n_dims, nullptr);
  }

  const int threads = opt.n_threads > 0 ? opt.n_threads : ggml::physical_cores();
  std::vector<float> x, back;
  std::vector<uint8_t> out;
  size_t done = 0;
  w.write(opt.out_path, [&](size_t i) -> const void* {
    const gguf::TensorInfo& t = f.tensors()[i];
    const ggml::Type to = out_type[i];
    const int64_t n = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3], ne0 = t.ne[0];
    if (n <= 0) throw Error(f.path() + ": tensor '" + t.name + "' is empty");  // the reader refuses these too
    const int64_t rows = n / ne0;
    const size_t in_row = ggml::row_size(t.type, ne0), out_row = ggml::row_size(to, ne0);
    x.resize((size_t)n);
    back.resize((size_t)n);
    out.resize(out_row * (size_t)rows);
    const auto& ti = ggml::traits(t.type);
    const auto& tt = ggml::traits(to);
    double err = 0, val = 0;
    // Rows are independent: dequantize, quantize and measure the round trip per row.
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : err, val)
    for (int64_t r = 0; r < rows; r++) {
      float* xr = x.data() + r * ne0;
      float* br = back.data() + r * ne0;
      ti.to_float((const uint8_t*)t.data + (size_t)r * in_row, xr, ne0);
      if (opt.adjust_row) opt.adjust_row(t.name, r, xr, ne0);
      tt.from_float(xr, out.data() + (size_t)r * out_row, ne0);
      tt.to_float(out.data() + (size_t)r * out_row, br, ne0);
      for (int64_t j = 0; j < ne0; j++) {
        const double d = (double)xr[j] - br[j];
        err += d * d;
        val += (double)xr[j] * xr[j];
      }
    }
    sum.in_weight_bytes += t.nbytes;
    sum.out_weight_bytes += out.size();
    sum.n_elements += (uint64_t)n;
    if (opt.progress)
      opt.progress(++done, f.tensors().size(),
                   {t.name, t.type, to, n, std::sqrt(err / (double)n), std::sqrt(val / (double)n)});
    return out.data();
  });
  sum.out_bytes = std::filesystem::file_size(opt.out_path);
  return sum;
}

}  // namespace llm
