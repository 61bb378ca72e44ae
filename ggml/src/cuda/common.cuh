#pragma once
// What the CUDA backend's kernels share: error checks, a tensor as kernels
// see it (device pointer, shape, byte strides), element loads by type and the
// GGUF block formats' dequantization, all on the device.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "blocks.h"
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
constexpr uint32_t T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12,
                   T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30;

__device__ __forceinline__ float bf16_f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ __forceinline__ uint16_t f_bf16(float f) {
  // round to nearest even, NaN kept quiet (as the host's fp32_to_bf16)
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 64);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

// Element i of a row of a float type.
template <uint32_t T>
__device__ __forceinline__ float deq(const char* row, int64_t i) {
  static_assert(!blocks::block_type(T), "block types decode 32 values at a time (blocks.h)");
  if constexpr (T == T_F32) return reinterpret_cast<const float*>(row)[i];
  else if constexpr (T == T_F16) return __half2float(reinterpret_cast<const __half*>(row)[i]);
  else return bf16_f(reinterpret_cast<const uint16_t*>(row)[i]);
}

// Calls f(std::integral_constant<uint32_t, T>{}) for type id t: one kernel
// instance per type a tensor may have (f: [&](auto k) { constexpr uint32_t T = k; ... }).
template <class F>
void with_type(uint32_t t, F&& f) {
  switch (t) {
    case T_F32: f(std::integral_constant<uint32_t, T_F32>{}); break;
    case T_F16: f(std::integral_constant<uint32_t, T_F16>{}); break;
    case T_BF16: f(std::integral_constant<uint32_t, T_BF16>{}); break;
    case T_Q4_0: f(std::integral_constant<uint32_t, T_Q4_0>{}); break;
    case T_Q4_1: f(std::integral_constant<uint32_t, T_Q4_1>{}); break;
    case T_Q5_0: f(std::integral_constant<uint32_t, T_Q5_0>{}); break;
    case T_Q5_1: f(std::integral_constant<uint32_t, T_Q5_1>{}); break;
    case T_Q8_0: f(std::integral_constant<uint32_t, T_Q8_0>{}); break;
    case T_Q4_K: f(std::integral_constant<uint32_t, T_Q4_K>{}); break;
    case T_Q5_K: f(std::integral_constant<uint32_t, T_Q5_K>{}); break;
    case T_Q6_K: f(std::integral_constant<uint32_t, T_Q6_K>{}); break;
    default: fail("cuda: no kernels for type id " + std::to_string(t));
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
