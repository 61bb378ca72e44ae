// The CUDA backend's kernels besides the matrix product: element-wise ops
// with broadcasting, copies between F32/F16/BF16 of any strides, row lookups
// in every weight type, RMS and layer norm, rotary embeddings, softmax with
// the causal mask. Each follows its CPU kernel's definition (ops.h); sums
// are float, not the CPU's double, so results agree within rounding. Built
// with --fmad=false (ggml/CMakeLists.txt): a multiply-add rounds twice, as on
// the host.
#include <cmath>

#include "common.cuh"
#include "launch.cuh"
#include "ggml/ops.h"

namespace ggml::cuda {

namespace {

constexpr int BLOCK = 256;

__device__ __forceinline__ void unravel(int64_t i, const int64_t* ne, int64_t* ix) {
  ix[0] = i % ne[0];
  i /= ne[0];
  ix[1] = i % ne[1];
  i /= ne[1];
  ix[2] = i % ne[2];
  ix[3] = i / ne[2];
}
__device__ __forceinline__ int64_t at(const TD& t, const int64_t* ix) {
  return ix[0] * t.nb[0] + ix[1] * t.nb[1] + ix[2] * t.nb[2] + ix[3] * t.nb[3];
}
__device__ __forceinline__ int64_t at_bcast(const TD& t, const int64_t* ix) {
  return (ix[0] % t.ne[0]) * t.nb[0] + (ix[1] % t.ne[1]) * t.nb[1] + (ix[2] % t.ne[2]) * t.nb[2] +
         (ix[3] % t.ne[3]) * t.nb[3];
}
int64_t nel(const TD& t) { return t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]; }
unsigned grid_for(int64_t n) { return unsigned((n + BLOCK - 1) / BLOCK); }

// silu_mul's b has a's shape: its broadcast index is the plain one.
enum class Bin { Add, Mul, SiluMul };
template <Bin OP>
__global__ void k_binary(TD d, TD a, TD b, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t ix[4];
  unravel(i, d.ne, ix);
  const float x = *reinterpret_cast<const float*>(a.p + at(a, ix));
  const float y = *reinterpret_cast<const float*>(b.p + at_bcast(b, ix));
  float r;
  if constexpr (OP == Bin::Add) r = x + y;
  else if constexpr (OP == Bin::Mul) r = x * y;
  else r = (x / (1.0f + expf(-x))) * y;
  *reinterpret_cast<float*>(d.p + at(d, ix)) = r;
}

enum class Un { Scale, Silu, Gelu, GeluErf };
template <Un OP>
__global__ void k_unary(TD d, TD a, int64_t n, float param) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t ix[4];
  unravel(i, d.ne, ix);
  const float x = *reinterpret_cast<const float*>(a.p + at(a, ix));
  float y;
  if constexpr (OP == Un::Scale) y = x * param;
  else if constexpr (OP == Un::Silu) y = x / (1.0f + expf(-x));
  else if constexpr (OP == Un::Gelu) y = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  else y = 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
  *reinterpret_cast<float*>(d.p + at(d, ix)) = y;
}

// d and a of one element count; a walked in its own shape (CONT, CPY).
__global__ void k_cpy(TD d, TD a, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t ia[4], id[4];
  unravel(i, a.ne, ia);
  unravel(i, d.ne, id);
  store_f(d.p + at(d, id), d.type, load_f(a.p + at(a, ia), a.type));
}

template <uint32_t T>
__global__ void k_get_rows(TD d, TD a, TD ids) {
  const int64_t r = blockIdx.x;
  int32_t id = *reinterpret_cast<const int32_t*>(ids.p + r * ids.nb[0]);
  // Ids are checked on the host before a compute (Session::run); a bad one
  // reads row 0 here rather than memory outside the matrix.
  if (id < 0 || id >= a.ne[1]) id = 0;
  const char* row = a.p + int64_t(id) * a.nb[1];
  float* out = reinterpret_cast<float*>(d.p + r * d.nb[1]);
  if constexpr (blocks::block_type(T)) {
    float v[32];
    for (int64_t g = threadIdx.x; g < d.ne[0] / 32; g += blockDim.x) {
      blocks::group32<T>(reinterpret_cast<const uint8_t*>(row), g, v);
      for (int t = 0; t < 32; t++) out[g * 32 + t] = v[t];
    }
  } else {
    for (int64_t i = threadIdx.x; i < d.ne[0]; i += blockDim.x) out[i] = deq<T>(row, i);
  }
}

// One block per row of a [ne0, ne1, ne2, ne3] tensor: its row pointer.
__device__ __forceinline__ const char* row_of(const TD& t, int64_t r) {
  const int64_t i1 = r % t.ne[1], i2 = (r / t.ne[1]) % t.ne[2], i3 = r / (t.ne[1] * t.ne[2]);
  return t.p + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3];
}
__device__ __forceinline__ char* row_of(TD& t, int64_t r) { return const_cast<char*>(row_of(const_cast<const TD&>(t), r)); }

__device__ float block_sum(float v) {
  __shared__ float part[32];
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  if (lane == 0) part[w] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
  if (w == 0) v = warp_sum(v);
  if (threadIdx.x == 0) part[0] = v;
  __syncthreads();
  v = part[0];
  __syncthreads();  // part may be reused by the caller's next sum
  return v;
}
__device__ float block_max(float v) {
  __shared__ float part[32];
  v = warp_max(v);
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  if (lane == 0) part[w] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : -INFINITY;
  if (w == 0) v = warp_max(v);
  if (threadIdx.x == 0) part[0] = v;
  __syncthreads();
  v = part[0];
  __syncthreads();
  return v;
}

__global__ void k_rms_norm(TD d, TD a, const float* w, float eps) {
  const int64_t r = blockIdx.x, n = a.ne[0];
  const char* x = row_of(a, r);
  float* y = reinterpret_cast<float*>(row_of(d, r));
  float s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = *reinterpret_cast<const float*>(x + i * a.nb[0]);
    s += v * v;
  }
  s = block_sum(s);
  const float sc = rsqrtf(s / float(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = *reinterpret_cast<const float*>(x + i * a.nb[0]) * sc;
    y[i] = w ? v * w[i] : v;
  }
}

__global__ void k_norm(TD d, TD a, float eps) {
  const int64_t r = blockIdx.x, n = a.ne[0];
  const char* x = row_of(a, r);
  float* y = reinterpret_cast<float*>(row_of(d, r));
  float s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += *reinterpret_cast<const float*>(x + i * a.nb[0]);
  const float mean = block_sum(s) / float(n);
  float v2 = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = *reinterpret_cast<const float*>(x + i * a.nb[0]) - mean;
    v2 += v * v;
  }
  const float sc = rsqrtf(block_sum(v2) / float(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    y[i] = (*reinterpret_cast<const float*>(x + i * a.nb[0]) - mean) * sc;
}

// One block per (head, token) row; threads over the row's pairs, the
// unrotated tail copied. The inverse frequencies come from the host, computed
// as the CPU computes them (powf there; the device's differs by an ulp here
// and there, which at position 1000 moves an angle by 1e-4).
struct RopeFreqs {
  float inv[128];
};
__global__ void k_rope(TD d, TD a, TD pos, int n_dims, int neox, float freq_scale, int inverse, RopeFreqs f) {
  const int64_t r = blockIdx.x;
  const int64_t i2 = (r / a.ne[1]) % a.ne[2];
  const char* x = row_of(a, r);
  float* y = reinterpret_cast<float*>(row_of(d, r));
  const int half = n_dims / 2;
  const float pf = float(*reinterpret_cast<const int32_t*>(pos.p + i2 * pos.nb[0])) * freq_scale;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float theta = pf * f.inv[i];  // in float, cos and sin of it in double, as the host
    double sd, cd;
    sincos(double(theta), &sd, &cd);
    const float c = float(cd), s = inverse ? -float(sd) : float(sd);
    const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
    const float x0 = *reinterpret_cast<const float*>(x + ia * a.nb[0]);
    const float x1 = *reinterpret_cast<const float*>(x + ib * a.nb[0]);
    y[ia] = x0 * c - x1 * s;
    y[ib] = x0 * s + x1 * c;
  }
  for (int64_t i = n_dims + threadIdx.x; i < a.ne[0]; i += blockDim.x)
    y[i] = *reinterpret_cast<const float*>(x + i * a.nb[0]);
}

__global__ void k_soft_max(TD d, TD a, TD mask, int has_mask, float scale, int32_t n_past) {
  const int64_t r = blockIdx.x, n = a.ne[0];
  const int64_t i1 = r % a.ne[1];
  const char* x = row_of(a, r);
  float* y = reinterpret_cast<float*>(row_of(d, r));
  const int64_t visible = n_past >= 0 ? min(n, int64_t(n_past) + i1 + 1) : n;
  const char* m = has_mask ? mask.p + i1 * mask.nb[1] : nullptr;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    float v = *reinterpret_cast<const float*>(x + j * a.nb[0]) * scale;
    if (m) v += *reinterpret_cast<const float*>(m + j * mask.nb[0]);
    y[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = block_max(mx);
  if (mx == -INFINITY) {  // every column masked: no probability mass anywhere
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) y[j] = 0.0f;
    return;
  }
  float s = 0;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    const float e = expf(y[j] - mx);
    y[j] = e;
    s += e;
  }
  const float inv = 1.0f / block_sum(s);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) y[j] = j < visible ? y[j] * inv : 0.0f;
}

unsigned rows(const TD& t) { return unsigned(t.ne[1] * t.ne[2] * t.ne[3]); }

}  // namespace

void op_binary(const Tensor* n, TD d, TD a, TD b, cudaStream_t s) {
  const int64_t c = nel(d);
  switch (n->op) {
    case Op::ADD: launch(k_binary<Bin::Add>, grid_for(c), BLOCK, s, d, a, b, c); break;
    case Op::MUL: launch(k_binary<Bin::Mul>, grid_for(c), BLOCK, s, d, a, b, c); break;
    case Op::SILU_MUL: launch(k_binary<Bin::SiluMul>, grid_for(c), BLOCK, s, d, a, b, c); break;
    default: fail(std::string("cuda: no binary kernel for ") + op_name(n->op));
  }
}

void op_unary(const Tensor* n, TD d, TD a, cudaStream_t s) {
  const int64_t c = nel(d);
  switch (n->op) {
    case Op::SCALE: launch(k_unary<Un::Scale>, grid_for(c), BLOCK, s, d, a, c, op_param_f32(n, 0)); break;
    case Op::SILU: launch(k_unary<Un::Silu>, grid_for(c), BLOCK, s, d, a, c, 0.0f); break;
    case Op::GELU: launch(k_unary<Un::Gelu>, grid_for(c), BLOCK, s, d, a, c, 0.0f); break;
    case Op::GELU_ERF: launch(k_unary<Un::GeluErf>, grid_for(c), BLOCK, s, d, a, c, 0.0f); break;
    default: fail(std::string("cuda: no unary kernel for ") + op_name(n->op));
  }
}

void op_cpy(TD d, TD a, cudaStream_t s) {
  const int64_t c = nel(d);
  launch(k_cpy, grid_for(c), BLOCK, s, d, a, c);
}

void op_get_rows(TD d, TD a, TD ids, cudaStream_t s) {
  const unsigned g = unsigned(d.ne[1]);
  if (g == 0) return;
  with_type(a.type, [&](auto k) { launch(k_get_rows<decltype(k)::value>, g, BLOCK, s, d, a, ids); });
}

void op_rms_norm(TD d, TD a, const float* w, float eps, cudaStream_t s) {
  if (rows(a)) launch(k_rms_norm, rows(a), BLOCK, s, d, a, w, eps);
}
void op_norm(TD d, TD a, float eps, cudaStream_t s) {
  if (rows(a)) launch(k_norm, rows(a), BLOCK, s, d, a, eps);
}

void op_rope(const Tensor* n, TD d, TD a, TD pos, cudaStream_t s) {
  if (!rows(a)) return;
  const int n_dims = n->op_params[0];
  const float base = op_param_f32(n, 2);
  if (n_dims / 2 > 128) fail("cuda: rope over more than 256 dimensions");
  RopeFreqs f{};
  for (int i = 0; i < n_dims / 2; i++) f.inv[i] = 1.0f / std::pow(base, float(2 * i) / float(n_dims));
  launch(k_rope, rows(a), 64, s, d, a, pos, n_dims, RopeMode(n->op_params[1]) == RopeMode::Neox, op_param_f32(n, 3),
                                n->op_params[4] != 0, f);
}

void op_soft_max(TD d, TD a, const TD* mask, float scale, int32_t n_past, cudaStream_t s) {
  if (!rows(a)) return;
  TD none{};
  launch(k_soft_max, rows(a), BLOCK, s, d, a, mask ? *mask : none, mask != nullptr, scale, n_past);
}

}  // namespace ggml::cuda
