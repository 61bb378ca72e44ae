// The CUDA kernels' block decoders (ggml/src/cuda/blocks.h, host and device
// code alike) against the host's reference dequantization, on the CPU: every
// format the GPU reads, exactly. (What a GPU adds, the kernels around them,
// is tests/test_cuda.cpp's.)
#include "../ggml/src/cuda/blocks.h"

#include "helpers.h"

using namespace ggml;
namespace cb = ggml::cuda::blocks;

namespace {

template <uint32_t T>
void check_type(Type t) {
  const std::string name = type_name(t);
  CAPTURE(name);
  const int64_t n = 256 * 6;
  th::Rng rng(static_cast<uint64_t>(T) + 1);
  std::vector<float> x = rng.normals(size_t(n), 0.7f);
  // extremes and exact zeros in places, for scales and minimums at their ends
  x[3] = 0.0f, x[40] = 9.0f, x[41] = -9.0f, x[300] = 1e-6f;
  std::vector<unsigned char> q(row_size(t, n));
  if (t == Type::F32) std::memcpy(q.data(), x.data(), size_t(n) * 4);
  else traits(t).from_float(x.data(), q.data(), n);
  std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
  traits(t).to_float(q.data(), want.data(), n);
  for (int64_t g = 0; g < n / 32; g++) cb::group32<T>(q.data(), g, &got[size_t(g * 32)]);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) bad += std::memcmp(&want[size_t(i)], &got[size_t(i)], 4) != 0;
  CHECK(bad == 0);
  if (cb::block_type(T)) CHECK(size_t(cb::block_bytes(T)) == type_size(t));
}

}  // namespace

TEST_CASE("cuda block decoders equal the reference dequantization of every format the GPU reads, bit for bit") {
  check_type<cb::F32>(Type::F32);
  check_type<cb::F16>(Type::F16);
  check_type<cb::BF16>(Type::BF16);
  check_type<cb::Q4_0>(Type::Q4_0);
  check_type<cb::Q4_1>(Type::Q4_1);
  check_type<cb::Q5_0>(Type::Q5_0);
  check_type<cb::Q5_1>(Type::Q5_1);
  check_type<cb::Q8_0>(Type::Q8_0);
  check_type<cb::Q4_K>(Type::Q4_K);
  check_type<cb::Q5_K>(Type::Q5_K);
  check_type<cb::Q6_K>(Type::Q6_K);
}

TEST_CASE("the half decoder is exact on every one of the 65536 bit patterns") {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    const float a = cb::h2f(uint16_t(h)), b = fp16_to_fp32(fp16_t(h));
    if (std::isnan(a) != std::isnan(b) || (!std::isnan(a) && std::memcmp(&a, &b, 4) != 0)) bad++;
  }
  CHECK(bad == 0);
}
