// K-quants (256-element super-blocks): layouts from llama.cpp's ggml-common.h.
// Dequantize and dot are exact to the format. Our quantizers for Q4_K/Q5_K/
// Q6_K use a simple min/max fit (documented in docs/types.md); they produce
// valid blocks but not llama.cpp's searched scales byte for byte.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ggml/quants.h"

namespace ggml::ref {

namespace {
// Six-bit scale and min of sub-block j (0..7) from the 12-byte packed array.
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void pack_scales_k4(const int* ls, const int* lm, uint8_t* scales) {
  std::memset(scales, 0, K_SCALE_SIZE);
  for (int j = 0; j < 8; j++) {
    if (j < 4) {
      scales[j] = uint8_t(ls[j]);
      scales[j + 4] = uint8_t(lm[j]);
    } else {
      scales[j + 4] = uint8_t((ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4));
      scales[j - 4] |= uint8_t((ls[j] >> 4) << 6);
      scales[j] |= uint8_t((lm[j] >> 4) << 6);
    }
  }
}

inline int nearest_int(float v) { return int(std::lround(v)); }

// Fits x = d*sc*q - dmin*m per 32-element sub-block with q in 0..qmax and
// 6-bit sc, m. Fills L (256 levels), packed scales, d and dmin.
void fit_k_asym(const float* x, int qmax, int* L, uint8_t* scales, float* d_out, float* dmin_out) {
  float sub_scale[8], sub_min[8];
  for (int j = 0; j < 8; j++) {
    float mn = 0.0f, mx = 0.0f;  // the range always includes 0, as in llama.cpp
    for (int l = 0; l < 32; l++) { mn = std::min(mn, x[32 * j + l]); mx = std::max(mx, x[32 * j + l]); }
    sub_scale[j] = (mx - mn) / float(qmax);
    sub_min[j] = -mn;
  }
  const float max_scale = *std::max_element(sub_scale, sub_scale + 8);
  const float max_min = *std::max_element(sub_min, sub_min + 8);
  const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
  const float id = d ? 1.0f / d : 0.0f, idmin = dmin ? 1.0f / dmin : 0.0f;
  int ls[8], lm[8];
  for (int j = 0; j < 8; j++) {
    ls[j] = std::min(63, nearest_int(sub_scale[j] * id));
    lm[j] = std::min(63, nearest_int(sub_min[j] * idmin));
  }
  pack_scales_k4(ls, lm, scales);
  // Quantize against the rounded fp16 scales that dequantization will use.
  const float dq = fp16_to_fp32(fp32_to_fp16(d)), dminq = fp16_to_fp32(fp32_to_fp16(dmin));
  for (int j = 0; j < 8; j++) {
    const float s = dq * float(ls[j]), m = dminq * float(lm[j]);
    for (int l = 0; l < 32; l++) {
      const int q = s > 0 ? nearest_int((x[32 * j + l] + m) / s) : 0;
      L[32 * j + l] = std::clamp(q, 0, qmax);
    }
  }
  *d_out = d;
  *dmin_out = dmin;
}
}  // namespace

void quantize_q4_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q4_K*>(vy);
  int L[QK_K];
  for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
    float d, dmin;
    fit_k_asym(x, 15, L, y[i].scales, &d, &dmin);
    y[i].d = fp32_to_fp16(d);
    y[i].dmin = fp32_to_fp16(dmin);
    uint8_t* q = y[i].qs;
    for (int j = 0; j < QK_K; j += 64, q += 32) {
      for (int l = 0; l < 32; l++) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void quantize_q5_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q5_K*>(vy);
  int L[QK_K];
  for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
    float d, dmin;
    fit_k_asym(x, 31, L, y[i].scales, &d, &dmin);
    y[i].d = fp32_to_fp16(d);
    y[i].dmin = fp32_to_fp16(dmin);
    std::memset(y[i].qh, 0, sizeof(y[i].qh));
    uint8_t* ql = y[i].qs;
    uint8_t m1 = 1, m2 = 2;
    for (int j = 0; j < QK_K; j += 64, ql += 32) {
      for (int l = 0; l < 32; l++) {
        int l1 = L[j + l], l2 = L[j + l + 32];
        if (l1 > 15) { l1 -= 16; y[i].qh[l] |= m1; }
        if (l2 > 15) { l2 -= 16; y[i].qh[l] |= m2; }
        ql[l] = uint8_t(l1 | (l2 << 4));
      }
      m1 = uint8_t(m1 << 2);
      m2 = uint8_t(m2 << 2);
    }
  }
}

void quantize_q6_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q6_K*>(vy);
  int L[QK_K];
  for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
    // Symmetric per 16-element sub-block: q in -32..31, int8 sub-block scale.
    float sub_scale[16];
    float max_abs_scale = 0.0f, max_scale = 0.0f;
    for (int j = 0; j < 16; j++) {
      float amax = 0.0f, mx = 0.0f;
      for (int l = 0; l < 16; l++) {
        const float v = x[16 * j + l];
        if (std::fabs(v) > amax) { amax = std::fabs(v); mx = v; }
      }
      sub_scale[j] = mx / -32.0f;  // the largest magnitude maps to -32
      if (std::fabs(sub_scale[j]) > max_abs_scale) { max_abs_scale = std::fabs(sub_scale[j]); max_scale = sub_scale[j]; }
    }
    const float iscale = max_scale ? -128.0f / max_scale : 0.0f;
    const float d = iscale ? 1.0f / iscale : 0.0f;
    y[i].d = fp32_to_fp16(d);
    const float dq = fp16_to_fp32(y[i].d);
    for (int j = 0; j < 16; j++) {
      const int sc = std::clamp(nearest_int(iscale * sub_scale[j]), -128, 127);
      y[i].scales[j] = int8_t(sc);
      const float s = dq * float(sc);
      for (int l = 0; l < 16; l++) {
        const int q = s != 0.0f ? nearest_int(x[16 * j + l] / s) : 0;
        L[16 * j + l] = std::clamp(q, -32, 31) + 32;
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; l++) {
        const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        ql[l] = uint8_t((q1 & 0x0f) | ((q3 & 0x0f) << 4));
        ql[l + 32] = uint8_t((q2 & 0x0f) | ((q4 & 0x0f) << 4));
        qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
  }
}

void quantize_q8_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_K*>(vy);
  for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = d;
    for (int j = 0; j < QK_K; j++) y[i].qs[j] = int8_t(std::round(x[j] * id));
    for (int j = 0; j < QK_K / 16; j++) {
      int s = 0;
      for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
      y[i].bsums[j] = int16_t(s);
    }
  }
}

void dequantize_q8_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q8_K*>(vx);
  for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
    for (int j = 0; j < QK_K; j++) y[j] = x[i].d * float(x[i].qs[j]);
  }
}

void dequantize_q4_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(vx);
  for (int64_t i = 0; i < n / QK_K; i++) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
      int sc, m;
      scale_min_k4(is, x[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; l++) *y++ = d1 * float(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequantize_q5_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(vx);
  for (int64_t i = 0; i < n / QK_K; i++) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2) {
      int sc, m;
      scale_min_k4(is, x[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; l++) *y++ = d1 * float((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = uint8_t(u1 << 2);
      u2 = uint8_t(u2 << 2);
    }
  }
}

namespace {
// The 256 signed six-bit values (-32..31) of a Q6_K block, in element order.
void q6_values(const block_q6_K& b, int* q) {
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  for (int n = 0; n < QK_K; n += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; l++) {
      q[n + l] = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      q[n + l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      q[n + l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      q[n + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
    }
  }
}
}  // namespace

void dequantize_q6_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(vx);
  int q[QK_K];
  for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
    const float d = fp16_to_fp32(x[i].d);
    q6_values(x[i], q);
    for (int j = 0; j < QK_K; j++) y[j] = d * float(x[i].scales[j / 16]) * float(q[j]);
  }
}

float dot_q4_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q4_K*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    int sumi = 0, summ = 0;
    const uint8_t* q = x[i].qs;
    const int8_t* a = y[i].qs;
    for (int j = 0; j < 4; j++, q += 32, a += 64) {
      int sc0, m0, sc1, m1;
      scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
      scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; l++) { lo += (q[l] & 0x0f) * a[l]; hi += (q[l] >> 4) * a[l + 32]; }
      sumi += sc0 * lo + sc1 * hi;
      summ += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) + m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
    }
    s += y[i].d * (fp16_to_fp32(x[i].d) * float(sumi) - fp16_to_fp32(x[i].dmin) * float(summ));
  }
  return s;
}

float dot_q5_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q5_K*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    int sumi = 0, summ = 0;
    const uint8_t* q = x[i].qs;
    const int8_t* a = y[i].qs;
    for (int j = 0; j < 4; j++, q += 32, a += 64) {
      int sc0, m0, sc1, m1;
      scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
      scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; l++) {
        const int h0 = (x[i].qh[l] >> (2 * j)) & 1, h1 = (x[i].qh[l] >> (2 * j + 1)) & 1;
        lo += ((q[l] & 0x0f) | (h0 << 4)) * a[l];
        hi += ((q[l] >> 4) | (h1 << 4)) * a[l + 32];
      }
      sumi += sc0 * lo + sc1 * hi;
      summ += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) + m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
    }
    s += y[i].d * (fp16_to_fp32(x[i].d) * float(sumi) - fp16_to_fp32(x[i].dmin) * float(summ));
  }
  return s;
}

float dot_q6_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q6_K*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float s = 0;
  int q[QK_K];
  for (int64_t i = 0; i < n / QK_K; i++) {
    q6_values(x[i], q);
    int sumi = 0;
    for (int j = 0; j < 16; j++) {
      int sub = 0;
      for (int l = 0; l < 16; l++) sub += q[16 * j + l] * y[i].qs[16 * j + l];
      sumi += x[i].scales[j] * sub;
    }
    s += fp16_to_fp32(x[i].d) * y[i].d * float(sumi);
  }
  return s;
}

}  // namespace ggml::ref
