#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ggml {

// Numeric ids are GGUF's (ggml_type), so a type read from a file is this
// enum; only GGUF's types are here. A backend's own formats (the CPU's
// activation blocks and rearranged weights, cpu.h) are its business: they
// take ids from BACKEND_FORMAT_BASE on and never appear in a file or in llm/.
enum class Type : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35,
};
// One past the largest id above: kernel tables are sized from it.
constexpr uint32_t TYPE_ID_END = uint32_t(Type::TQ2_0) + 1;
constexpr uint32_t BACKEND_FORMAT_BASE = 1u << 16;

using to_float_fn = void (*)(const void* x, float* y, int64_t n);
using from_float_fn = void (*)(const float* x, void* y, int64_t n);

struct TypeTraits {
  const char* name = nullptr;     // nullptr: unknown or unsupported id
  int64_t block_size = 0;         // elements per block
  size_t type_size = 0;           // bytes per block
  bool quantized = false;
  to_float_fn to_float = nullptr;     // reference dequantize (scalar)
  from_float_fn from_float = nullptr; // reference quantize, nullptr if none
};

// Traits of a GGUF type or of a backend's format; throws ggml::Error for an
// id that is neither.
const TypeTraits& traits(Type t);
// Whether id is a GGUF type this engine knows (a file may hold it).
bool type_known(uint32_t id);
const char* type_name(Type t);  // "unknown" for an unknown id
// Parses a type name ("q4_0", "F16", ...) case-insensitively; false if unknown.
bool type_from_name(std::string_view name, Type* out);

inline int64_t block_size(Type t) { return traits(t).block_size; }
inline size_t type_size(Type t) { return traits(t).type_size; }
// Bytes of a row of n elements; throws if n is not a multiple of the block size.
size_t row_size(Type t, int64_t n);

}  // namespace ggml
