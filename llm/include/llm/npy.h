#pragma once
// NumPy .npy files of float32 (little-endian, C order): written atomically by
// --dump-logits, read by the tests against reference logits.
#include <cstdint>
#include <string>
#include <vector>

namespace llm {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

struct NpyF32 {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
// Throws llm::Error for anything but a C-order '<f4' array.
NpyF32 read_npy_f32(const std::string& path);
// The same for '<i4' (pre-tokenized training batches).
struct NpyI32 {
  std::vector<int64_t> shape;
  std::vector<int32_t> data;
};
NpyI32 read_npy_i32(const std::string& path);

}  // namespace llm
