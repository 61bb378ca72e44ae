// Scalar reference quantization for F16, BF16 and the 32-element block types.
// The quantizers follow llama.cpp's *_ref routines exactly (the same float
// operations in the same order), so their bytes match files made there.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ggml/quants.h"

namespace ggml::ref {

namespace {
struct AbsMax { float amax; float max; };
// Largest magnitude and the signed value that has it (first one on ties).
AbsMax signed_absmax(const float* x, int n) {
  AbsMax r{0.0f, 0.0f};
  for (int j = 0; j < n; j++) {
    if (r.amax < std::fabs(x[j])) { r.amax = std::fabs(x[j]); r.max = x[j]; }
  }
  return r;
}
void min_max(const float* x, int n, float* mn, float* mx) {
  float lo = INFINITY, hi = -INFINITY;
  for (int j = 0; j < n; j++) { lo = std::min(lo, x[j]); hi = std::max(hi, x[j]); }
  *mn = lo; *mx = hi;
}
}  // namespace

void quantize_q4_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q4_0*>(vy);
  for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
    const AbsMax a = signed_absmax(x, QK4_0);
    const float d = a.max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
      const uint8_t x0 = std::min<int>(15, int8_t(x[j] * id + 8.5f));
      const uint8_t x1 = std::min<int>(15, int8_t(x[j + QK4_0 / 2] * id + 8.5f));
      y[i].qs[j] = uint8_t(x0 | (x1 << 4));
    }
  }
}

void quantize_q4_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q4_1*>(vy);
  for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
    float mn, mx;
    min_max(x, QK4_1, &mn, &mx);
    const float d = (mx - mn) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mn);
    for (int j = 0; j < QK4_1 / 2; j++) {
      const uint8_t x0 = std::min<int>(15, int8_t((x[j] - mn) * id + 0.5f));
      const uint8_t x1 = std::min<int>(15, int8_t((x[j + QK4_1 / 2] - mn) * id + 0.5f));
      y[i].qs[j] = uint8_t(x0 | (x1 << 4));
    }
  }
}

void quantize_q5_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q5_0*>(vy);
  for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
    const AbsMax a = signed_absmax(x, QK5_0);
    const float d = a.max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0 / 2; j++) {
      const uint8_t x0 = std::min<int>(31, int8_t(x[j] * id + 16.5f));
      const uint8_t x1 = std::min<int>(31, int8_t(x[j + QK5_0 / 2] * id + 16.5f));
      y[i].qs[j] = uint8_t((x0 & 0x0f) | ((x1 & 0x0f) << 4));
      qh |= uint32_t((x0 & 0x10) >> 4) << j;
      qh |= uint32_t((x1 & 0x10) >> 4) << (j + QK5_0 / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quantize_q5_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q5_1*>(vy);
  for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
    float mn, mx;
    min_max(x, QK5_1, &mn, &mx);
    const float d = (mx - mn) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mn);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_1 / 2; j++) {
      const uint8_t x0 = uint8_t((x[j] - mn) * id + 0.5f);
      const uint8_t x1 = uint8_t((x[j + QK5_1 / 2] - mn) * id + 0.5f);
      y[i].qs[j] = uint8_t((x0 & 0x0f) | ((x1 & 0x0f) << 4));
      qh |= uint32_t((x0 & 0x10) >> 4) << j;
      qh |= uint32_t((x1 & 0x10) >> 4) << (j + QK5_1 / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

namespace {
float absmax(const float* x, int n) {
  float a = 0.0f;
  for (int j = 0; j < n; j++) a = std::max(a, std::fabs(x[j]));
  return a;
}
}  // namespace

void quantize_q8_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
    const float d = absmax(x, QK8_0) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; j++) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}

void quantize_q8_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_1*>(vy);
  for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
    const float d = absmax(x, QK8_1) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < QK8_1; j++) {
      y[i].qs[j] = int8_t(std::round(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = fp32_to_fp16(float(sum) * d);
  }
}

void quantize_q8_s(const float* x, void* vy, int64_t n) {
  const int64_t nb = n / 32;
  auto* d = static_cast<float*>(vy);
  float* ds = d + nb;
  auto* qs = reinterpret_cast<int8_t*>(ds + nb);
  for (int64_t b = 0; b < nb; b++, x += 32) {
    const float db = absmax(x, 32) / 127;
    const float id = db ? 1.0f / db : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
      const int8_t q = int8_t(std::round(x[j] * id));
      qs[Q8SRow::index(nb, b, j)] = q;
      sum += q;
    }
    d[b] = db;
    ds[b] = db * float(sum);
  }
}

void quantize_f16(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<fp16_t*>(vy);
  for (int64_t i = 0; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}
void quantize_bf16(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<bf16_t*>(vy);
  for (int64_t i = 0; i < n; i++) y[i] = fp32_to_bf16(x[i]);
}
void quantize_f32(const float* x, void* vy, int64_t n) { std::memcpy(vy, x, size_t(n) * 4); }

void dequantize_f32(const void* x, float* y, int64_t n) { std::memcpy(y, x, size_t(n) * 4); }
void dequantize_f16(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const fp16_t*>(vx);
  for (int64_t i = 0; i < n; i++) y[i] = fp16_to_fp32(x[i]);
}
void dequantize_bf16(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const bf16_t*>(vx);
  for (int64_t i = 0; i < n; i++) y[i] = bf16_to_fp32(x[i]);
}

void dequantize_q4_0(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(vx);
  for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < QK4_0 / 2; j++) {
      y[j] = float((x[i].qs[j] & 0x0f) - 8) * d;
      y[j + QK4_0 / 2] = float((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q4_1*>(vx);
  for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
    const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
    for (int j = 0; j < QK4_1 / 2; j++) {
      y[j] = float(x[i].qs[j] & 0x0f) * d + m;
      y[j + QK4_1 / 2] = float(x[i].qs[j] >> 4) * d + m;
    }
  }
}

namespace {
// Five-bit values of a Q5 block, 0..31.
void q5_values(const uint8_t* qs, const uint8_t* qh4, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  for (int j = 0; j < 16; j++) {
    q[j] = (qs[j] & 0x0f) | int(((qh >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
  }
}
}  // namespace

void dequantize_q5_0(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q5_0*>(vx);
  int q[32];
  for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
    const float d = fp16_to_fp32(x[i].d);
    q5_values(x[i].qs, x[i].qh, q);
    for (int j = 0; j < 32; j++) y[j] = float(q[j] - 16) * d;
  }
}

void dequantize_q5_1(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q5_1*>(vx);
  int q[32];
  for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
    const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
    q5_values(x[i].qs, x[i].qh, q);
    for (int j = 0; j < 32; j++) y[j] = float(q[j]) * d + m;
  }
}

void dequantize_q8_0(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(vx);
  for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < QK8_0; j++) y[j] = float(x[i].qs[j]) * d;
  }
}

void dequantize_q8_1(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q8_1*>(vx);
  for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < QK8_1; j++) y[j] = float(x[i].qs[j]) * d;
  }
}

void dequantize_q8_s(const void* vx, float* y, int64_t n) {
  const Q8SRow r(vx, n);
  for (int64_t b = 0; b < r.nb; b++, y += 32) {
    for (int j = 0; j < 32; j++) y[j] = float(r.q(b, j)) * r.d[b];
  }
}

// ---- dot products ----------------------------------------------------------
// Each block's integer sum is exact; the float accumulation order (block by
// block) is the reference the SIMD kernels are compared with.

float dot_f32(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const float*>(vx);
  const auto* y = static_cast<const float*>(vy);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
  return s;
}

float dot_f16(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const fp16_t*>(vx);
  const auto* y = static_cast<const float*>(vy);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += fp16_to_fp32(x[i]) * y[i];
  return s;
}

float dot_bf16(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const bf16_t*>(vx);
  const auto* y = static_cast<const float*>(vy);
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += bf16_to_fp32(x[i]) * y[i];
  return s;
}

namespace {
// Integer dot of one block's weights (q[32], unsigned or signed) with block b
// of a Q8_S row; also returns the activations' sum.
int block_dot(const int* q, const Q8SRow& y, int64_t b, int* ysum) {
  int sumi = 0, sy = 0;
  for (int j = 0; j < 32; j++) {
    const int v = y.q(b, j);
    sumi += q[j] * v;
    sy += v;
  }
  *ysum = sy;
  return sumi;
}
void q4_values(const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; j++) { q[j] = qs[j] & 0x0f; q[j + 16] = qs[j] >> 4; }
}
}  // namespace

// _0 types: x = d * (q - offset); _1 types: x = d * q + m.
float dot_q4_0(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q4_0*>(vx);
  const Q8SRow y(vy, n);
  float s = 0;
  int q[32], ysum;
  for (int64_t i = 0; i < y.nb; i++) {
    q4_values(x[i].qs, q);
    const int sumi = block_dot(q, y, i, &ysum);
    s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi - 8 * ysum);
  }
  return s;
}

float dot_q4_1(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q4_1*>(vx);
  const Q8SRow y(vy, n);
  float s = 0;
  int q[32], ysum;
  for (int64_t i = 0; i < y.nb; i++) {
    q4_values(x[i].qs, q);
    const int sumi = block_dot(q, y, i, &ysum);
    s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi) + fp16_to_fp32(x[i].m) * y.ds[i];
  }
  return s;
}

float dot_q5_0(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q5_0*>(vx);
  const Q8SRow y(vy, n);
  float s = 0;
  int q[32], ysum;
  for (int64_t i = 0; i < y.nb; i++) {
    q5_values(x[i].qs, x[i].qh, q);
    const int sumi = block_dot(q, y, i, &ysum);
    s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi - 16 * ysum);
  }
  return s;
}

float dot_q5_1(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q5_1*>(vx);
  const Q8SRow y(vy, n);
  float s = 0;
  int q[32], ysum;
  for (int64_t i = 0; i < y.nb; i++) {
    q5_values(x[i].qs, x[i].qh, q);
    const int sumi = block_dot(q, y, i, &ysum);
    s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi) + fp16_to_fp32(x[i].m) * y.ds[i];
  }
  return s;
}

float dot_q8_0(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q8_0*>(vx);
  const Q8SRow y(vy, n);
  float s = 0;
  int q[32], ysum;
  for (int64_t i = 0; i < y.nb; i++) {
    for (int j = 0; j < 32; j++) q[j] = x[i].qs[j];
    const int sumi = block_dot(q, y, i, &ysum);
    s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi);
  }
  return s;
}

void repack_q8_0r(const void* vx, void* vy, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(vx);
  auto* y = static_cast<block_q8_0r*>(vy);
  for (int64_t g = 0; g < n / 256; g++, x += 8) {
    block_q8_0r r;  // a local first: in and out may be the same memory
    for (int j = 0; j < 8; j++) {  // 16 values at a time: they stay together
      r.d[j] = x[j].d;
      std::memcpy(r.qs + q8_0r_index(j, 0), x[j].qs, 16);
      std::memcpy(r.qs + q8_0r_index(j, 16), x[j].qs + 16, 16);
    }
    std::memcpy(&y[g], &r, sizeof r);
  }
}

void unpack_q8_0r(const void* vx, void* vy, int64_t n) {
  const auto* x = static_cast<const block_q8_0r*>(vx);
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t g = 0; g < n / 256; g++, y += 8) {
    block_q8_0 b[8];
    for (int j = 0; j < 8; j++) {
      b[j].d = x[g].d[j];
      std::memcpy(b[j].qs, x[g].qs + q8_0r_index(j, 0), 16);
      std::memcpy(b[j].qs + 16, x[g].qs + q8_0r_index(j, 16), 16);
    }
    std::memcpy(y, b, sizeof b);
  }
}

void quantize_q8_0r(const float* x, void* y, int64_t n) {
  quantize_q8_0(x, y, n);
  repack_q8_0r(y, y, n);
}

// Q4_0R and Q4_1R: B is the stored block, R the rearranged group of 8.
namespace {
template <class B, class R>
void repack_r4(const void* vx, void* vy, int64_t n) {
  const auto* x = static_cast<const B*>(vx);
  auto* y = static_cast<R*>(vy);
  for (int64_t g = 0; g < n / 256; g++, x += 8) {
    R r;  // a local first: in and out may be the same memory
    for (int j = 0; j < 8; j++) {
      std::memcpy(r.qs + 16 * j, x[j].qs, 16);
      r.d[j] = x[j].d;
      if constexpr (std::is_same_v<B, block_q4_1>) r.m[j] = x[j].m;
    }
    std::memcpy(&y[g], &r, sizeof r);
  }
}
template <class B, class R>
void unpack_r4(const void* vx, void* vy, int64_t n) {
  const auto* x = static_cast<const R*>(vx);
  auto* y = static_cast<B*>(vy);
  for (int64_t g = 0; g < n / 256; g++, y += 8) {
    B b[8];
    for (int j = 0; j < 8; j++) {
      std::memcpy(b[j].qs, x[g].qs + 16 * j, 16);
      b[j].d = x[g].d[j];
      if constexpr (std::is_same_v<B, block_q4_1>) b[j].m = x[g].m[j];
    }
    std::memcpy(y, b, sizeof b);
  }
}
}  // namespace

void repack_q4_0r(const void* x, void* y, int64_t n) { repack_r4<block_q4_0, block_q4_0r>(x, y, n); }
void unpack_q4_0r(const void* x, void* y, int64_t n) { unpack_r4<block_q4_0, block_q4_0r>(x, y, n); }
void repack_q4_1r(const void* x, void* y, int64_t n) { repack_r4<block_q4_1, block_q4_1r>(x, y, n); }
void unpack_q4_1r(const void* x, void* y, int64_t n) { unpack_r4<block_q4_1, block_q4_1r>(x, y, n); }

void quantize_q4_0r(const float* x, void* y, int64_t n) {
  quantize_q4_0(x, y, n);
  repack_q4_0r(y, y, n);
}
void quantize_q4_1r(const float* x, void* y, int64_t n) {
  quantize_q4_1(x, y, n);
  repack_q4_1r(y, y, n);
}

// The rearranged types' dequantization and dot product go through their
// stored types, in the stored order: the same results by construction (the
// rearranged layouts are only for the SIMD kernels).
namespace {
template <class B, class R, void (*unpack)(const void*, void*, int64_t), void (*dequantize)(const void*, float*, int64_t)>
void dequantize_rearranged(const void* x, float* y, int64_t n) {
  B b[8];
  for (int64_t g = 0; g < n / 256; g++) {
    unpack(static_cast<const R*>(x) + g, b, 256);
    dequantize(b, y + 256 * g, 256);
  }
}
template <class B, void (*unpack)(const void*, void*, int64_t), float (*dot)(int64_t, const void*, const void*)>
float dot_rearranged(int64_t n, const void* vx, const void* vy) {
  std::vector<B> blocks(size_t(n / 32));
  unpack(vx, blocks.data(), n);
  return dot(n, blocks.data(), vy);
}
}  // namespace

void dequantize_q8_0r(const void* x, float* y, int64_t n) {
  dequantize_rearranged<block_q8_0, block_q8_0r, unpack_q8_0r, dequantize_q8_0>(x, y, n);
}
void dequantize_q4_0r(const void* x, float* y, int64_t n) {
  dequantize_rearranged<block_q4_0, block_q4_0r, unpack_q4_0r, dequantize_q4_0>(x, y, n);
}
void dequantize_q4_1r(const void* x, float* y, int64_t n) {
  dequantize_rearranged<block_q4_1, block_q4_1r, unpack_q4_1r, dequantize_q4_1>(x, y, n);
}
float dot_q8_0r(int64_t n, const void* x, const void* y) { return dot_rearranged<block_q8_0, unpack_q8_0r, dot_q8_0>(n, x, y); }
float dot_q4_0r(int64_t n, const void* x, const void* y) { return dot_rearranged<block_q4_0, unpack_q4_0r, dot_q4_0>(n, x, y); }
float dot_q4_1r(int64_t n, const void* x, const void* y) { return dot_rearranged<block_q4_1, unpack_q4_1r, dot_q4_1>(n, x, y); }

}  // namespace ggml::ref
