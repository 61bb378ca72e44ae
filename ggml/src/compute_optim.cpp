// Kernels of the optimizer ops: element-wise, each element by one thread,
// so any thread count gives the same floats.
#include <algorithm>
#include <cmath>

#include "compute.h"
#include "ggml/optim.h"

namespace ggml {

size_t sum_sq_work_size(const Tensor* dst, int, const cpu::KernelSet&) { return size_t(dst->src[0]->nrows()) * sizeof(double); }

void compute_sum_sq(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  double* per = static_cast<double*>(p.wdata);
  int64_t r0, r1;
  split_range(a->nrows(), p.ith, p.nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const int64_t i1 = r % a->ne[1], i2 = (r / a->ne[1]) % a->ne[2], i3 = r / (a->ne[1] * a->ne[2]);
    const float* x = reinterpret_cast<const float*>(a->row_ptr(i1, i2, i3));
    double s = 0;
    for (int64_t i = 0; i < a->ne[0]; i++) s += double(x[i]) * double(x[i]);
    per[r] = s;
  }
  p.barrier();
  if (p.ith != 0) return;
  double s = 0;
  for (int64_t r = 0; r < a->nrows(); r++) s += per[r];
  *static_cast<float*>(dst->data) = float(s);
}

void compute_opt_adamw(const ComputeParams& p, Tensor* dst) {
  float* w = static_cast<float*>(dst->data);
  const float* g = static_cast<const float*>(dst->src[1]->data);
  float* m = static_cast<float*>(dst->src[2]->data);
  float* v = static_cast<float*>(dst->src[3]->data);
  const float b2 = op_param_f32(dst, 0), w1 = op_param_f32(dst, 1), w2 = op_param_f32(dst, 2);
  const float eps = op_param_f32(dst, 3), decay = op_param_f32(dst, 4), step = op_param_f32(dst, 5);
  const float bc2 = op_param_f32(dst, 6), gs = op_param_f32(dst, 7);
  int64_t e0, e1;
  split_range(dst->nelements(), p.ith, p.nth, &e0, &e1);
  for (int64_t i = e0; i < e1; i++) {
    const float gi = g[i] * gs;
    w[i] *= decay;
    m[i] = w1 < 0.5f ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (1.0f - w1);  // torch's lerp
    v[i] = v[i] * b2 + w2 * gi * gi;
    w[i] -= step * (m[i] / (std::sqrt(v[i]) / bc2 + eps));
  }
}

void compute_opt_sgd(const ComputeParams& p, Tensor* dst) {
  float* w = static_cast<float*>(dst->data);
  const float* g = static_cast<const float*>(dst->src[1]->data);
  float* buf = static_cast<float*>(dst->src[2]->data);
  const float lr = op_param_f32(dst, 0), mom = op_param_f32(dst, 1), wd = op_param_f32(dst, 2);
  const float gs = op_param_f32(dst, 3);
  int64_t e0, e1;
  split_range(dst->nelements(), p.ith, p.nth, &e0, &e1);
  for (int64_t i = e0; i < e1; i++) {
    float d = g[i] * gs;
    if (wd != 0.0f) d += wd * w[i];
    if (mom != 0.0f) d = buf[i] = buf[i] * mom + d;
    w[i] -= lr * d;
  }
}

}  // namespace ggml

namespace ggml {

// Blocks of kDyn8Block split over the threads (each block by one thread):
// dequantize m and v, the opt_adamw update, new absmax, quantize again.
void compute_opt_adamw8(const ComputeParams& p, Tensor* dst) {
  float* w = static_cast<float*>(dst->data);
  const float* g = static_cast<const float*>(dst->src[1]->data);
  uint8_t* cm = static_cast<uint8_t*>(dst->src[2]->data);
  const int64_t n = dst->nelements(), blocks = (n + kDyn8Block - 1) / kDyn8Block;
  uint8_t* cv = cm + n;
  float* am = static_cast<float*>(dst->src[3]->data);
  float* av = am + blocks;
  const float b2 = op_param_f32(dst, 0), w1 = op_param_f32(dst, 1), w2 = op_param_f32(dst, 2);
  const float eps = op_param_f32(dst, 3), decay = op_param_f32(dst, 4), step = op_param_f32(dst, 5);
  const float bc2 = op_param_f32(dst, 6), gs = op_param_f32(dst, 7);
  const float* ms = dyn8_map(true);
  const float* vs = dyn8_map(false);
  int64_t k0, k1;
  split_range(blocks, p.ith, p.nth, &k0, &k1);
  float m[kDyn8Block], v[kDyn8Block];
  for (int64_t k = k0; k < k1; k++) {
    const int64_t i0 = k * kDyn8Block, len = std::min(kDyn8Block, n - i0);
    for (int64_t j = 0; j < len; j++) {
      const int64_t i = i0 + j;
      const float gi = g[i] * gs;
      float mi = ms[cm[i]] * am[k], vi = vs[cv[i]] * av[k];
      w[i] *= decay;
      mi = w1 < 0.5f ? mi + w1 * (gi - mi) : gi - (gi - mi) * (1.0f - w1);  // torch's lerp
      vi = vi * b2 + w2 * gi * gi;
      w[i] -= step * (mi / (std::sqrt(vi) / bc2 + eps));
      m[j] = mi;
      v[j] = vi;
    }
    dyn8_quantize(m, len, true, cm + i0, &am[k]);
    dyn8_quantize(v, len, false, cv + i0, &av[k]);
  }
}

}  // namespace ggml
