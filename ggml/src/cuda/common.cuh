#pragma once
// What the CUDA backend's kernels share: error checks, a tensor as kernels
// see it (device pointer, shape, byte strides), element loads by type and the
// GGUF block formats' dequantization, all on the device.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "ggml/error.h"
#include "ggml/tensor.h"

namespace ggml::cuda {

[[noreturn]] void fail_cuda(const char* what, cudaError_t e);
[[noreturn]] void fail_cublas(const char* what, cublasStatus_t s);
#define CUDA_CHECK(x)                                      \
  do {                                                     \
    cudaError_t e_ = (x);                                  \
    if (e_ != cudaSuccess) ::ggml::cuda::fail_cuda(#x, e_); \
  } while (0)
#define CUBLAS_CHECK(x)                                                \
  do {                                                                 \
    cublasStatus_t s_ = (x);                                           \
    if (s_ != CUBLAS_STATUS_SUCCESS) ::ggml::cuda::fail_cublas(#x, s_); \
  } while (0)

// A tensor for a kernel: its device address, element counts and byte strides.
struct TD {
  char* p;
  int64_t ne[4];
  int64_t nb[4];
  uint32_t type;
  uint32_t pad = 0;  // named: recorded launches compare argument bytes
};
TD td(const Tensor* t, void* dev);

// Types the kernels read (weights, caches, activations).
constexpr uint32_t T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_BF16 = 30;

struct bq4_0 { __half d; uint8_t qs[16]; };
struct bq4_1 { __half d, m; uint8_t qs[16]; };
struct bq5_0 { __half d; uint8_t qh[4]; uint8_t qs[16]; };
struct bq5_1 { __half d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct bq8_0 { __half d; int8_t qs[32]; };
static_assert(sizeof(bq4_0) == 18 && sizeof(bq4_1) == 20 && sizeof(bq5_0) == 22 && sizeof(bq5_1) == 24 &&
              sizeof(bq8_0) == 34);

__device__ __forceinline__ float bf16_f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ __forceinline__ uint16_t f_bf16(float f) {
  // round to nearest even, NaN kept quiet (as the host's fp32_to_bf16)
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 64);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

__device__ __forceinline__ uint32_t load_u32_2aligned(const uint8_t* p) {
  const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
  return uint32_t(q[0]) | (uint32_t(q[1]) << 16);
}

// Element j (0..31) of block b of a row of a block type.
template <uint32_t T>
__device__ __forceinline__ float deq(const char* row, int64_t i) {
  if constexpr (T == T_F32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (T == T_F16) {
    return __half2float(reinterpret_cast<const __half*>(row)[i]);
  } else if constexpr (T == T_BF16) {
    return bf16_f(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {
    const int64_t b = i / 32;
    const int j = int(i % 32);
    if constexpr (T == T_Q4_0) {
      const bq4_0& x = reinterpret_cast<const bq4_0*>(row)[b];
      const int q = j < 16 ? (x.qs[j] & 15) : (x.qs[j - 16] >> 4);
      return float(q - 8) * __half2float(x.d);
    } else if constexpr (T == T_Q4_1) {
      const bq4_1& x = reinterpret_cast<const bq4_1*>(row)[b];
      const int q = j < 16 ? (x.qs[j] & 15) : (x.qs[j - 16] >> 4);
      return float(q) * __half2float(x.d) + __half2float(x.m);
    } else if constexpr (T == T_Q5_0 || T == T_Q5_1) {
      using B = std::conditional_t<T == T_Q5_0, bq5_0, bq5_1>;
      const B& x = reinterpret_cast<const B*>(row)[b];
      const uint32_t qh = load_u32_2aligned(x.qh);
      const int q = (j < 16 ? (x.qs[j] & 15) : (x.qs[j - 16] >> 4)) | int(((qh >> j) & 1) << 4);
      if constexpr (T == T_Q5_0) return float(q - 16) * __half2float(x.d);
      else return float(q) * __half2float(x.d) + __half2float(x.m);
    } else {
      static_assert(T == T_Q8_0);
      const bq8_0& x = reinterpret_cast<const bq8_0*>(row)[b];
      return float(x.qs[j]) * __half2float(x.d);
    }
  }
}

// An element of a tensor of F32, F16 or BF16 at byte offset off.
__device__ __forceinline__ float load_f(const char* p, uint32_t type) {
  if (type == T_F32) return *reinterpret_cast<const float*>(p);
  if (type == T_F16) return __half2float(*reinterpret_cast<const __half*>(p));
  return bf16_f(*reinterpret_cast<const uint16_t*>(p));
}
__device__ __forceinline__ void store_f(char* p, uint32_t type, float v) {
  if (type == T_F32) *reinterpret_cast<float*>(p) = v;
  else if (type == T_F16) *reinterpret_cast<__half*>(p) = __float2half_rn(v);
  else *reinterpret_cast<uint16_t*>(p) = f_bf16(v);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Launchers (kernels.cu, mulmat.cu): one per op, on stream s.
struct Scratch {
  char* p = nullptr;
  size_t size = 0;
};
void op_binary(const Tensor* n, TD d, TD a, TD b, cudaStream_t s);
void op_unary(const Tensor* n, TD d, TD a, cudaStream_t s);
void op_silu_mul(TD d, TD a, TD b, cudaStream_t s);
void op_cpy(TD d, TD a, cudaStream_t s);
void op_get_rows(TD d, TD a, TD ids, cudaStream_t s);
void op_rms_norm(TD d, TD a, const float* w, float eps, cudaStream_t s);
void op_norm(TD d, TD a, float eps, cudaStream_t s);
void op_rope(const Tensor* n, TD d, TD a, TD pos, cudaStream_t s);
void op_soft_max(TD d, TD a, const TD* mask, float scale, int32_t n_past, cudaStream_t s);
// The matrix product: matrix-vector kernels for up to MV_COLS columns, cuBLAS
// (operands in F16 or F32) for more; scratch_mul_mat() is the scratch it needs.
constexpr int64_t MV_COLS = 8;
size_t scratch_mul_mat(const Tensor* n);
bool mul_mat_uses_cublas(const Tensor* n);
void op_mul_mat(TD d, TD a, TD b, const Scratch& sc, cublasHandle_t blas, cudaStream_t s);

}  // namespace ggml::cuda
