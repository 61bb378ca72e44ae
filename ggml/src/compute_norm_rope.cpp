// RMS norm, layer norm and rotary position embeddings.
#include <cmath>
#include <cstring>
#include <vector>

#include "compute.h"

namespace ggml {

namespace {
template <class F>
void for_rows(const ComputeParams& p, Tensor* dst, F f) {
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const int64_t i1 = r % dst->ne[1], i2 = (r / dst->ne[1]) % dst->ne[2], i3 = r / (dst->ne[1] * dst->ne[2]);
    float* y = reinterpret_cast<float*>(dst->row_ptr(i1, i2, i3));
    // The source row is read into the output row, then transformed in place.
    load_row_f32(*p.k, dst->src[0], i1, i2, i3, y);
    f(y, dst->ne[0]);
  }
}
}  // namespace

void rms_norm_row(const float* x, float* y, int64_t n, float eps, const float* w) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += double(x[i]) * double(x[i]);
  const float s = float(1.0 / std::sqrt(sum / double(n) + double(eps)));
  if (w) {
    // the product rounded first, as a separate mul node would see it
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * s) * w[i];
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s;
  }
}

void compute_rms_norm(const ComputeParams& p, Tensor* dst) {
  const float eps = op_param_f32(dst, 0);
  const float* w = dst->src[1] ? static_cast<const float*>(dst->src[1]->data) : nullptr;
  for_rows(p, dst, [eps, w](float* y, int64_t n) { rms_norm_row(y, y, n, eps, w); });
}

void compute_norm(const ComputeParams& p, Tensor* dst) {
  const float eps = op_param_f32(dst, 0);
  for_rows(p, dst, [eps](float* y, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += y[i];
    const double mean = sum / double(n);
    double var = 0;
    for (int64_t i = 0; i < n; i++) var += (y[i] - mean) * (y[i] - mean);
    const double s = 1.0 / std::sqrt(var / double(n) + double(eps));
    for (int64_t i = 0; i < n; i++) y[i] = float((y[i] - mean) * s);
  });
}

void compute_rope(const ComputeParams& p, Tensor* dst) {
  const Tensor* src = dst->src[0];
  const Tensor* pos = dst->src[1];
  const int n_dims = dst->op_params[0];
  const auto mode = RopeMode(dst->op_params[1]);
  const float base = op_param_f32(dst, 2), freq_scale = op_param_f32(dst, 3);
  const int half = n_dims / 2;
  const bool inverse = dst->op_params[4] != 0;  // rope_back: the transpose of the rotation
  // The angles follow Hugging Face: inv_freq_i = 1 / base^(2i/n_dims) in F32,
  // theta = (pos * freq_scale) * inv_freq_i in F32, cos and sin of that.
  std::vector<float> cs(size_t(2 * half)), inv(static_cast<size_t>(half));
  for (int i = 0; i < half; i++) inv[size_t(i)] = 1.0f / std::pow(base, float(2 * i) / float(n_dims));
  const int64_t n_tok = dst->ne[2] * dst->ne[3];
  int64_t t0, t1;
  split_range(n_tok, p.ith, p.nth, &t0, &t1);
  for (int64_t t = t0; t < t1; t++) {
    const int64_t i2 = t % dst->ne[2], i3 = t / dst->ne[2];
    int32_t ps;
    std::memcpy(&ps, static_cast<const char*>(pos->data) + size_t(i2) * pos->nb[0], 4);
    const float pf = float(ps) * freq_scale;
    for (int i = 0; i < half; i++) {
      const float theta = pf * inv[size_t(i)];
      cs[size_t(2 * i)] = float(std::cos(double(theta)));
      cs[size_t(2 * i + 1)] = inverse ? -float(std::sin(double(theta))) : float(std::sin(double(theta)));
    }
    for (int64_t i1 = 0; i1 < dst->ne[1]; i1++) {
      float* y = reinterpret_cast<float*>(dst->row_ptr(i1, i2, i3));
      load_row_f32(*p.k, src, i1, i2, i3, y);
      for (int i = 0; i < half; i++) {
        const float c = cs[size_t(2 * i)], s = cs[size_t(2 * i + 1)];
        const int a = mode == RopeMode::Neox ? i : 2 * i;
        const int b = mode == RopeMode::Neox ? i + half : 2 * i + 1;
        const float x0 = y[a], x1 = y[b];
        y[a] = x0 * c - x1 * s;
        y[b] = x0 * s + x1 * c;
      }
    }
  }
}

}  // namespace ggml
