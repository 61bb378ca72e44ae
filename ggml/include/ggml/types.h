#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ggml {

// Numeric ids are GGUF's (ggml_type), so a type read from a file is this enum.
enum class Type : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
  // Internal activation format for the 32-element block types: int8 values with
  // an F32 scale and their exact integer sum. Never stored in a file.
  Q8_S = 1000,
  // Q8_0 rearranged at load time for the matrix-vector kernels (block_q8_0r:
  // 256 values, 272 bytes). Never stored in a file.
  Q8_0R = 1001,
  // Q4_0 and Q4_1 rearranged the same way (block_q4_0r, block_q4_1r).
  Q4_0R = 1002,
  Q4_1R = 1003,
  COUNT_ = 1002,
};

using to_float_fn = void (*)(const void* x, float* y, int64_t n);
using from_float_fn = void (*)(const float* x, void* y, int64_t n);

struct TypeTraits {
  const char* name = nullptr;     // nullptr: unknown or unsupported id
  int64_t block_size = 0;         // elements per block
  size_t type_size = 0;           // bytes per block
  bool quantized = false;
  to_float_fn to_float = nullptr;     // reference dequantize (scalar)
  from_float_fn from_float = nullptr; // reference quantize, nullptr if none
  Type vec_dot_type = Type::F32;      // activation format for mul_mat
};

// Traits of a type; throws ggml::Error for an id that is not a known type.
const TypeTraits& traits(Type t);
bool type_known(uint32_t id);
// Types of this engine's own (Q8_S and the rearranged ones), which no file may hold.
inline bool type_internal(Type t) {
  return t == Type::Q8_S || t == Type::Q8_0R || t == Type::Q4_0R || t == Type::Q4_1R;
}
const char* type_name(Type t);
// Parses a type name ("q4_0", "F16", ...) case-insensitively; false if unknown.
bool type_from_name(std::string_view name, Type* out);

inline int64_t block_size(Type t) { return traits(t).block_size; }
inline size_t type_size(Type t) { return traits(t).type_size; }
// Bytes of a row of n elements; throws if n is not a multiple of the block size.
size_t row_size(Type t, int64_t n);

}  // namespace ggml
