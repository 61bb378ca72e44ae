// Kernels of the optimizer ops: element-wise, each element by one thread,
// so any thread count gives the same floats.
#include <cmath>

#include "compute.h"

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
