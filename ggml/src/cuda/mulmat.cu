// The CUDA backend's matrix products, dst[i, j] = dot(a row i, b row j) with
// a's batches broadcast over b's (mul_mat in ops.h):
//  - up to MV_COLS columns (generation, attention of one token): one warp
//    per row of a, each lane a block of 32 weights at a time, so a warp reads
//    a run of adjacent blocks; activations stay F32;
//  - more (prompts): cuBLAS, a in F16 (dequantized into scratch unless it is
//    F16) times b rounded to F16, float sums; F32 a times F32 b in F32.
#include "common.cuh"
#include "launch.cuh"

namespace ggml::cuda {

namespace {

constexpr int WARPS = 4;

template <uint32_t T, int NC>
__global__ void __launch_bounds__(32 * WARPS) k_mv(TD d, TD a, TD b) {
  const int lane = threadIdx.x % 32;
  const int64_t i = int64_t(blockIdx.x) * WARPS + threadIdx.x / 32;
  if (i >= a.ne[1]) return;
  const int64_t j0 = int64_t(blockIdx.y) * NC, N = b.ne[1];
  const int64_t i2 = blockIdx.z % b.ne[2], i3 = blockIdx.z / b.ne[2];
  const int64_t ia2 = i2 / (b.ne[2] / a.ne[2]), ia3 = i3 / (b.ne[3] / a.ne[3]);
  const char* arow = a.p + i * a.nb[1] + ia2 * a.nb[2] + ia3 * a.nb[3];
  const char* bcol[NC];
#pragma unroll
  for (int j = 0; j < NC; j++) bcol[j] = b.p + min(j0 + j, N - 1) * b.nb[1] + i2 * b.nb[2] + i3 * b.nb[3];
  float acc[NC];
#pragma unroll
  for (int j = 0; j < NC; j++) acc[j] = 0.0f;
  const int64_t K = a.ne[0];
  if constexpr (blocks::block_type(T)) {
    float v[32];
    for (int64_t blk = lane; blk < K / 32; blk += 32) {
      blocks::group32<T>(reinterpret_cast<const uint8_t*>(arow), blk, v);
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const float* bp = reinterpret_cast<const float*>(bcol[j]) + blk * 32;
        float s = 0;
#pragma unroll
        for (int t = 0; t < 32; t++) s = fmaf(v[t], bp[t], s);
        acc[j] += s;
      }
    }
  } else {
    for (int64_t k = int64_t(lane) * 8; k < K; k += 256) {
      float v[8];
      const int cnt = K - k < 8 ? int(K - k) : 8;
#pragma unroll
      for (int t = 0; t < 8; t++) v[t] = t < cnt ? deq<T>(arow, k + t) : 0.0f;
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const float* bp = reinterpret_cast<const float*>(bcol[j]) + k;
        float s = 0;
#pragma unroll
        for (int t = 0; t < 8; t++) s = t < cnt ? fmaf(v[t], bp[t], s) : s;
        acc[j] += s;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < NC; j++) {
    const float s = warp_sum(acc[j]);
    if (lane == 0 && j0 + j < N)
      *reinterpret_cast<float*>(d.p + i * d.nb[0] + (j0 + j) * d.nb[1] + i2 * d.nb[2] + i3 * d.nb[3]) = s;
  }
}

template <uint32_t T>
void launch_mv(TD d, TD a, TD b, cudaStream_t s) {
  const int64_t N = b.ne[1];
  const unsigned gx = unsigned((a.ne[1] + WARPS - 1) / WARPS), gz = unsigned(b.ne[2] * b.ne[3]);
  if (N == 1) {
    launch(k_mv<T, 1>, dim3(gx, 1, gz), 32 * WARPS, s, d, a, b);
  } else if (N <= 4) {
    launch(k_mv<T, 4>, dim3(gx, 1, gz), 32 * WARPS, s, d, a, b);
  } else {
    launch(k_mv<T, 8>, dim3(gx, unsigned((N + 7) / 8), gz), 32 * WARPS, s, d, a, b);
  }
}

// a [K, M, B2, B3] of any readable type -> F16, contiguous; a thread per
// element, or per group of 32 for the block types.
template <uint32_t T>
__global__ void k_to_half(TD a, __half* out, int64_t n) {
  constexpr int64_t G = blocks::block_type(T) ? 32 : 1;
  const int64_t idx = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * G;
  if (idx >= n) return;
  const int64_t k = idx % a.ne[0], r = idx / a.ne[0];
  const int64_t i1 = r % a.ne[1], i2 = (r / a.ne[1]) % a.ne[2], i3 = r / (a.ne[1] * a.ne[2]);
  const char* row = a.p + i1 * a.nb[1] + i2 * a.nb[2] + i3 * a.nb[3];
  if constexpr (G == 32) {
    float v[32];
    blocks::group32<T>(reinterpret_cast<const uint8_t*>(row), k / 32, v);
    for (int t = 0; t < 32; t++) out[idx + t] = __float2half_rn(v[t]);
  } else {
    out[idx] = __float2half_rn(deq<T>(row, k));
  }
}
// b (F32, any strides with contiguous rows) -> F16, contiguous.
__global__ void k_f32_half(TD b, __half* out, int64_t n) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int64_t k = idx % b.ne[0], r = idx / b.ne[0];
  const int64_t i1 = r % b.ne[1], i2 = (r / b.ne[1]) % b.ne[2], i3 = r / (b.ne[1] * b.ne[2]);
  out[idx] = __float2half_rn(*reinterpret_cast<const float*>(b.p + k * 4 + i1 * b.nb[1] + i2 * b.nb[2] + i3 * b.nb[3]));
}

void to_half_any(TD a, __half* out, cudaStream_t s) {
  const int64_t n = a.ne[0] * a.ne[1] * a.ne[2] * a.ne[3];
  if (n == 0) return;
  with_type(a.type, [&](auto k) {
    constexpr uint32_t T = k;
    const int64_t threads = blocks::block_type(T) ? n / 32 : n;
    launch(k_to_half<T>, unsigned((threads + 255) / 256), 256, s, a, out, n);
  });
}

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace

bool mul_mat_uses_cublas(const Tensor* n) { return n->src[1]->ne[1] > MV_COLS; }

size_t scratch_mul_mat(const Tensor* n) {
  if (!mul_mat_uses_cublas(n)) return 0;
  const Tensor* a = n->src[0];
  if (a->type == Type::F32) return 0;
  const size_t ah = a->type == Type::F16 ? 0 : align256(size_t(a->nelements()) * 2);
  return ah + align256(size_t(n->src[1]->nelements()) * 2);
}

void op_mul_mat(TD d, TD a, TD b, const Scratch& sc, cublasHandle_t blas, cudaStream_t s) {
  const int64_t K = a.ne[0], M = a.ne[1], N = b.ne[1];
  if (M == 0 || N == 0) return;
  if (N <= MV_COLS) {
    with_type(a.type, [&](auto k) { launch_mv<decltype(k)::value>(d, a, b, s); });
    return;
  }
  CUBLAS_CHECK(cublasSetStream(blas, s));
  const int64_t B2 = a.ne[2], B3 = a.ne[3], C2 = b.ne[2], C3 = b.ne[3], r2 = C2 / B2, r3 = C3 / B3;
  const char *A, *Bm;
  cudaDataType_t at, bt;
  int64_t lda, sA2, sA3, ldb, sB2, sB3;  // in elements
  size_t ea, eb;                         // element bytes
  if (a.type == T_F32) {
    A = a.p, at = CUDA_R_32F, ea = 4, lda = a.nb[1] / 4, sA2 = a.nb[2] / 4, sA3 = a.nb[3] / 4;
    Bm = b.p, bt = CUDA_R_32F, eb = 4, ldb = b.nb[1] / 4, sB2 = b.nb[2] / 4, sB3 = b.nb[3] / 4;
  } else {
    char* at_scratch = sc.p;
    if (a.type == T_F16) {
      A = a.p, lda = a.nb[1] / 2, sA2 = a.nb[2] / 2, sA3 = a.nb[3] / 2;
    } else {
      to_half_any(a, reinterpret_cast<__half*>(at_scratch), s);
      A = at_scratch, lda = K, sA2 = K * M, sA3 = K * M * B2;
      at_scratch += align256(size_t(K * M * B2 * B3) * 2);
    }
    const int64_t nb_ = K * N * C2 * C3;
    launch(k_f32_half, unsigned((nb_ + 255) / 256), 256, s, b, reinterpret_cast<__half*>(at_scratch), nb_);
    Bm = at_scratch, ldb = K, sB2 = K * N, sB3 = K * N * C2;
    at = bt = CUDA_R_16F, ea = eb = 2;
  }
  const int64_t ldc = d.nb[1] / 4, sC2 = d.nb[2] / 4, sC3 = d.nb[3] / 4;
  const float one = 1.0f, zero = 0.0f;
  for (int64_t i3 = 0; i3 < C3; i3++) {
    const int64_t ia3 = i3 / r3;
    const char* A3 = A + size_t(ia3 * sA3) * ea;
    const char* B3p = Bm + size_t(i3 * sB3) * eb;
    float* C3p = reinterpret_cast<float*>(d.p) + i3 * sC3;
    if (r2 == 1) {
      CUBLAS_CHECK(cublasGemmStridedBatchedEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(M), int(N), int(K), &one, A3, at, int(lda),
                                              sA2, B3p, bt, int(ldb), sB2, &zero, C3p, CUDA_R_32F, int(ldc), sC2, int(C2),
                                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
      // a's batch serves r2 of b's: a stride of 0 within each group.
      for (int64_t ia2 = 0; ia2 < B2; ia2++) {
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            blas, CUBLAS_OP_T, CUBLAS_OP_N, int(M), int(N), int(K), &one, A3 + size_t(ia2 * sA2) * ea, at, int(lda), 0,
            B3p + size_t(ia2 * r2 * sB2) * eb, bt, int(ldb), sB2, &zero, C3p + ia2 * r2 * sC2, CUDA_R_32F, int(ldc), sC2,
            int(r2), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }
    }
  }
}

}  // namespace ggml::cuda
