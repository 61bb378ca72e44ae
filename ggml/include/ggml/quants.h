#pragma once
// Block layouts, bit-identical to GGUF / llama.cpp (ggml-common.h), and the
// scalar reference quantize / dequantize / dot routines. The SIMD kernels are
// tested against these.
#include <cstddef>
#include <cstdint>

#include "fp16.h"

namespace ggml {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

// x = (q - 8) * d; qs[j] holds element j in its low nibble and j+16 in its high.
struct block_q4_0 { fp16_t d; uint8_t qs[QK4_0 / 2]; };
// x = q * d + m
struct block_q4_1 { fp16_t d; fp16_t m; uint8_t qs[QK4_1 / 2]; };
// x = (q - 16) * d; bit 4 of element j is bit j of qh.
struct block_q5_0 { fp16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };
struct block_q5_1 { fp16_t d; fp16_t m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
struct block_q8_0 { fp16_t d; int8_t qs[QK8_0]; };
// s = d * sum(qs)
struct block_q8_1 { fp16_t d; fp16_t s; int8_t qs[QK8_1]; };
// Internal activations for the 32-element block types (Q8_S): a row of n
// values, nb = n / 32 blocks, 40 bytes a block, laid out for SIMD rather than
// block by block:
//   float  d[nb]       scales, x ~= d * q
//   float  ds[nb]      d * (sum of the block's q), for the types with a min
//   int8_t qs[32 * nb] in groups of 4 blocks (the last group may hold fewer, g):
//                      the first 16 values of each block of the group, then
//                      the last 16 of each. A 512-bit register then holds the
//                      halves that match 4 blocks' low (or high) nibbles.
// Only whole rows are meaningful: quantize each row with its own call.
struct Q8SRow {
  const float* d;
  const float* ds;
  const int8_t* qs;
  int64_t nb;
  Q8SRow(const void* row, int64_t n)
      : d(static_cast<const float*>(row)), ds(d + n / 32), qs(reinterpret_cast<const int8_t*>(ds + n / 32)), nb(n / 32) {}
  // Index into qs of value j (0..31) of block b.
  static int64_t index(int64_t nb, int64_t b, int j) {
    const int64_t g0 = b & ~int64_t(3), gs = nb - g0 < 4 ? nb - g0 : 4;
    return 32 * g0 + (j >> 4) * 16 * gs + (b - g0) * 16 + (j & 15);
  }
  int q(int64_t b, int j) const { return qs[index(nb, b, j)]; }
};

// Q8_0R: Q8_0 rearranged for the SIMD matrix-vector kernels, made at load
// time and never stored in a file. Each group of 8 Q8_0 blocks (256 values)
// holds the first 16 values of blocks 0-3, then their last 16 (the order of
// Q8_S activations), the same for blocks 4-7, then the 8 scales: the kernels
// load it as it lies instead of gathering it with byte permutes. Same size
// as the 8 Q8_0 blocks; rows must be whole groups.
struct block_q8_0r { int8_t qs[256]; fp16_t d[8]; };
// Index into block_q8_0r::qs of value v (0..31) of block j (0..7).
inline int q8_0r_index(int j, int v) { return (j >> 2) * 128 + (v >> 4) * 64 + (j & 3) * 16 + (v & 15); }
// Q4_0R / Q4_1R: Q4_0 and Q4_1 rearranged the same way (at load time, never
// in a file): each group of 8 blocks holds the 16 qs bytes of its blocks one
// after another (block j at qs + 16 j; a 64-byte load takes four blocks in
// the order of Q8_S activations), then the 8 scales, and for Q4_1R the 8
// mins. Same size as the 8 blocks; rows must be whole groups.
struct block_q4_0r { uint8_t qs[128]; fp16_t d[8]; };
struct block_q4_1r { uint8_t qs[128]; fp16_t d[8]; fp16_t m[8]; };

// 8 sub-blocks of 32: x = d * sc * q - dmin * m, 6-bit sc and m packed in scales.
struct block_q4_K { fp16_t d; fp16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { fp16_t d; fp16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q 6 bits split in ql/qh.
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; fp16_t d; };
// Activations for the K-quants; bsums are sums of 16 consecutive qs.
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q8_1) == 36);
static_assert(sizeof(block_q8_0r) == 8 * sizeof(block_q8_0));
static_assert(sizeof(block_q4_0r) == 8 * sizeof(block_q4_0));
static_assert(sizeof(block_q4_1r) == 8 * sizeof(block_q4_1));
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);

namespace ref {
// n is the element count; it must be a multiple of the block size.
void quantize_q4_0(const float* x, void* y, int64_t n);
void quantize_q4_1(const float* x, void* y, int64_t n);
void quantize_q5_0(const float* x, void* y, int64_t n);
void quantize_q5_1(const float* x, void* y, int64_t n);
void quantize_q8_0(const float* x, void* y, int64_t n);
void quantize_q8_1(const float* x, void* y, int64_t n);
void quantize_q8_0r(const float* x, void* y, int64_t n);  // Q8_0's values, rearranged
void quantize_q4_0r(const float* x, void* y, int64_t n);  // Q4_0's values, rearranged
void quantize_q4_1r(const float* x, void* y, int64_t n);  // Q4_1's values, rearranged
void quantize_q8_s(const float* x, void* y, int64_t n);
void quantize_q8_K(const float* x, void* y, int64_t n);
void quantize_f16(const float* x, void* y, int64_t n);
void quantize_bf16(const float* x, void* y, int64_t n);
void quantize_q4_K(const float* x, void* y, int64_t n);
void quantize_q5_K(const float* x, void* y, int64_t n);
void quantize_q6_K(const float* x, void* y, int64_t n);

void dequantize_q4_0(const void* x, float* y, int64_t n);
void dequantize_q4_1(const void* x, float* y, int64_t n);
void dequantize_q5_0(const void* x, float* y, int64_t n);
void dequantize_q5_1(const void* x, float* y, int64_t n);
void dequantize_q8_0(const void* x, float* y, int64_t n);
void dequantize_q8_1(const void* x, float* y, int64_t n);
void dequantize_q8_0r(const void* x, float* y, int64_t n);
// Q8_0 <-> Q8_0R, n values (a multiple of 256).
void repack_q8_0r(const void* q8_0, void* q8_0r, int64_t n);
void unpack_q8_0r(const void* q8_0r, void* q8_0, int64_t n);
// Q4_0 <-> Q4_0R and Q4_1 <-> Q4_1R, n values (a multiple of 256).
void repack_q4_0r(const void* q4_0, void* q4_0r, int64_t n);
void unpack_q4_0r(const void* q4_0r, void* q4_0, int64_t n);
void repack_q4_1r(const void* q4_1, void* q4_1r, int64_t n);
void unpack_q4_1r(const void* q4_1r, void* q4_1, int64_t n);
void dequantize_q4_0r(const void* x, float* y, int64_t n);
void dequantize_q4_1r(const void* x, float* y, int64_t n);
void dequantize_q8_s(const void* x, float* y, int64_t n);
void dequantize_q8_K(const void* x, float* y, int64_t n);
void dequantize_q4_K(const void* x, float* y, int64_t n);
void dequantize_q5_K(const void* x, float* y, int64_t n);
void dequantize_q6_K(const void* x, float* y, int64_t n);
void dequantize_f16(const void* x, float* y, int64_t n);
void dequantize_bf16(const void* x, float* y, int64_t n);
void dequantize_f32(const void* x, float* y, int64_t n);
void quantize_f32(const float* x, void* y, int64_t n);

// Dot products of one weight row with one activation row of n elements.
// x is the weight type, y its vec_dot_type (see TypeTraits).
float dot_f32(int64_t n, const void* x, const void* y);
float dot_f16(int64_t n, const void* x, const void* y);   // y: F32
float dot_bf16(int64_t n, const void* x, const void* y);  // y: F32
float dot_q4_0(int64_t n, const void* x, const void* y);  // y: Q8_S
float dot_q4_1(int64_t n, const void* x, const void* y);  // y: Q8_S
float dot_q5_0(int64_t n, const void* x, const void* y);  // y: Q8_S
float dot_q5_1(int64_t n, const void* x, const void* y);  // y: Q8_S
float dot_q8_0(int64_t n, const void* x, const void* y);  // y: Q8_S
float dot_q8_0r(int64_t n, const void* x, const void* y); // y: Q8_S
float dot_q4_0r(int64_t n, const void* x, const void* y); // y: Q8_S
float dot_q4_1r(int64_t n, const void* x, const void* y); // y: Q8_S
float dot_q4_K(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_q5_K(int64_t n, const void* x, const void* y);  // y: Q8_K
float dot_q6_K(int64_t n, const void* x, const void* y);  // y: Q8_K
}  // namespace ref

}  // namespace ggml
