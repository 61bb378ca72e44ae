// bitsandbytes' dynamic 8-bit code (create_dynamic_map) and its block-wise
// quantization, for 8-bit optimizer states.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ggml/optim.h"

namespace ggml {

namespace {
// torch.linspace(a, b, n) in float as its CPU kernel makes it: start +
// step i for the first half, end - step (n - 1 - i) for the rest, each a
// fused multiply-add (checked against torch's values, which differ from the
// unfused ones in the last bit).
std::vector<float> linspace(float a, float b, int n) {
  const float step = (b - a) / float(n - 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) v[size_t(i)] = i < n / 2 ? std::fma(step, float(i), a) : std::fma(-step, float(n - 1 - i), b);
  return v;
}

std::array<float, 256> make_map(bool is_signed) {
  std::vector<float> d;
  for (int i = 0; i < 7; i++) {
    const int parts = is_signed ? (1 << i) : (1 << (i + 1));
    const std::vector<float> b = linspace(0.1f, 1.0f, parts + 1);
    const float scale = float(std::pow(10.0, double(i - 6)));
    for (int k = 0; k < parts; k++) {
      const float mean = (b[size_t(k)] + b[size_t(k) + 1]) / 2.0f;
      d.push_back(scale * mean);
      if (is_signed) d.push_back(-(scale * mean));
    }
  }
  d.push_back(0.0f);
  d.push_back(1.0f);
  std::sort(d.begin(), d.end());
  std::array<float, 256> m{};
  std::copy(d.begin(), d.end(), m.begin());
  return m;
}

uint8_t nearest(const float* map, float x) {
  const float* hi = std::lower_bound(map, map + 256, x);
  if (hi == map) return 0;
  if (hi == map + 256) return 255;
  const float* lo = hi - 1;
  return uint8_t((x - *lo <= *hi - x ? lo : hi) - map);
}
}  // namespace

const float* dyn8_map(bool is_signed) {
  static const std::array<float, 256> s = make_map(true), u = make_map(false);
  return is_signed ? s.data() : u.data();
}

void dyn8_quantize(const float* x, int64_t n, bool is_signed, uint8_t* codes, float* absmax) {
  const float* map = dyn8_map(is_signed);
  for (int64_t b0 = 0; b0 < n; b0 += kDyn8Block) {
    const int64_t b1 = std::min(n, b0 + kDyn8Block);
    float mx = 0;
    for (int64_t i = b0; i < b1; i++) mx = std::max(mx, std::fabs(x[i]));
    absmax[b0 / kDyn8Block] = mx;
    // bitsandbytes divides by the absmax (an all-zero block's codes are 0)
    for (int64_t i = b0; i < b1; i++) codes[i] = mx > 0 ? nearest(map, x[i] / mx) : 0;
  }
}

void dyn8_dequantize(const uint8_t* codes, const float* absmax, int64_t n, bool is_signed, float* x) {
  const float* map = dyn8_map(is_signed);
  for (int64_t i = 0; i < n; i++) x[i] = map[codes[i]] * absmax[i / kDyn8Block];
}

}  // namespace ggml
