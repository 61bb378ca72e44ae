#pragma once
// GGUF's block formats decoded 32 values at a time (a lane's share of a
// matrix-vector product, a thread's of a row lookup), for the host and the
// device alike: the CUDA kernels decode with these, and
// tests/test_cuda_blocks.cpp checks every format against the host's
// reference dequantization on machines without a GPU. The float operations
// are the reference's, in its order, so a decode is exact.
//
// Bytes are read one at a time: blocks of 18, 22 or 210 bytes align to
// nothing wider, and the loads of a warp's lanes still fall in one run.
#include <cstdint>

#ifdef __CUDACC__
#define GGML_HD __host__ __device__ __forceinline__
#else
#define GGML_HD inline
#endif

namespace ggml::cuda::blocks {

// Type ids (GGUF's) and bytes per block of 32 (or 256) values.
constexpr uint32_t F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13,
                   Q6_K = 14, BF16 = 30;

GGML_HD float bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

// IEEE half to float, exactly (subnormals, infinities and NaN included).
GGML_HD float h2f(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  if (e == 0x1f) return bits_f32(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return bits_f32(sign);
    // subnormal: m * 2^-24, exact in float
    return sign ? -float(m) * 5.9604644775390625e-8f : float(m) * 5.9604644775390625e-8f;
  }
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}
GGML_HD float bf2f(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

GGML_HD uint16_t u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
GGML_HD uint32_t u32(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24); }

// Block bytes and values per block.
GGML_HD int block_bytes(uint32_t t) {
  switch (t) {
    case Q4_0: return 18;
    case Q4_1: return 20;
    case Q5_0: return 22;
    case Q5_1: return 24;
    case Q8_0: return 34;
    case Q4_K: return 144;
    case Q5_K: return 176;
    case Q6_K: return 210;
    default: return 0;
  }
}
constexpr bool super_block(uint32_t t) { return t == Q4_K || t == Q5_K || t == Q6_K; }
constexpr bool block_type(uint32_t t) { return t != F32 && t != F16 && t != BF16; }

// The K-quants' 6-bit scale and minimum j (0..7) of a 12-byte scales field.
GGML_HD void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The 32 values of group g (values 32g .. 32g+31) of a row of type T.
template <uint32_t T>
GGML_HD void group32(const uint8_t* row, int64_t g, float* v) {
  if constexpr (T == Q4_0 || T == Q4_1 || T == Q5_0 || T == Q5_1 || T == Q8_0) {
    const uint8_t* b = row + g * block_bytes(T);
    const float d = h2f(u16(b));
    if constexpr (T == Q4_0) {
      for (int j = 0; j < 16; j++) {
        v[j] = float((b[2 + j] & 0x0f) - 8) * d;
        v[j + 16] = float((b[2 + j] >> 4) - 8) * d;
      }
    } else if constexpr (T == Q4_1) {
      const float m = h2f(u16(b + 2));
      for (int j = 0; j < 16; j++) {
        v[j] = float(b[4 + j] & 0x0f) * d + m;
        v[j + 16] = float(b[4 + j] >> 4) * d + m;
      }
    } else if constexpr (T == Q5_0 || T == Q5_1) {
      const int o = T == Q5_0 ? 2 : 4;  // qh after d (and m)
      const uint32_t qh = u32(b + o);
      const uint8_t* qs = b + o + 4;
      float m = 0;
      if constexpr (T == Q5_1) m = h2f(u16(b + 2));
      for (int j = 0; j < 16; j++) {
        const int lo = (qs[j] & 0x0f) | int(((qh >> j) & 1) << 4);
        const int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
        if constexpr (T == Q5_0) {
          v[j] = float(lo - 16) * d;
          v[j + 16] = float(hi - 16) * d;
        } else {
          v[j] = float(lo) * d + m;
          v[j + 16] = float(hi) * d + m;
        }
      }
    } else {
      for (int j = 0; j < 32; j++) v[j] = float(int8_t(b[2 + j])) * d;
    }
  } else if constexpr (T == Q4_K || T == Q5_K) {
    const uint8_t* b = row + (g / 8) * block_bytes(T);
    const int j = int(g % 8);  // the sub-block: scale j, nibble j % 2 of bytes 32 (j / 2) ..
    const float d = h2f(u16(b)), dmin = h2f(u16(b + 2));
    const uint8_t* scales = b + 4;
    int sc, mn;
    scale_min_k4(j, scales, &sc, &mn);
    const float d1 = d * float(sc), m1 = dmin * float(mn);
    if constexpr (T == Q4_K) {
      const uint8_t* q = b + 16 + 32 * (j / 2);
      for (int l = 0; l < 32; l++) v[l] = d1 * float(j % 2 ? q[l] >> 4 : q[l] & 0x0f) - m1;
    } else {
      const uint8_t* qh = b + 16;
      const uint8_t* q = b + 48 + 32 * (j / 2);
      for (int l = 0; l < 32; l++)
        v[l] = d1 * float((j % 2 ? q[l] >> 4 : q[l] & 0x0f) + (qh[l] & (1u << j) ? 16 : 0)) - m1;
    }
  } else if constexpr (T == Q6_K) {
    const uint8_t* b = row + (g / 8) * block_bytes(T);
    const int j = int(g % 8), n = j / 4, k = j % 4;
    const uint8_t* ql = b + 64 * n + (k % 2 ? 32 : 0);
    const uint8_t* qh = b + 128 + 32 * n;
    const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
    const float d = h2f(u16(b + 208));
    const int shift = 2 * k;
    for (int l = 0; l < 32; l++) {
      const int lo = k < 2 ? (ql[l] & 0x0f) : (ql[l] >> 4);
      const int q = (lo | (((qh[l] >> shift) & 3) << 4)) - 32;
      v[l] = d * float(scales[(32 * j + l) / 16]) * float(q);
    }
  } else {
    for (int l = 0; l < 32; l++) {
      const int64_t i = g * 32 + l;
      if constexpr (T == F32) v[l] = reinterpret_cast<const float*>(row)[i];
      else if constexpr (T == F16) v[l] = h2f(u16(row + 2 * i));
      else v[l] = bf2f(u16(row + 2 * i));
    }
  }
}

}  // namespace ggml::cuda::blocks
