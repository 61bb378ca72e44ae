#include <algorithm>
#include <cmath>
#include <cstring>

#include "compute.h"

namespace ggml {

void compute_soft_max(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const Tensor* mask = dst->src[1];
  const float scale = op_param_f32(dst, 0);
  const int32_t n_past = dst->op_params[1];
  const int64_t n = dst->ne[0];
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const int64_t i1 = r % dst->ne[1], i2 = (r / dst->ne[1]) % dst->ne[2], i3 = r / (dst->ne[1] * dst->ne[2]);
    float* y = reinterpret_cast<float*>(dst->row_ptr(i1, i2, i3));
    load_row_f32(*p.k, a, i1, i2, i3, y);
    const float* m = mask ? reinterpret_cast<const float*>(mask->row_ptr(i1)) : nullptr;
    // Columns past the row's own position are masked: j > n_past + i1.
    const int64_t visible = n_past >= 0 ? std::min<int64_t>(n, int64_t(n_past) + i1 + 1) : n;
    // The running maximum in 16 independent lanes: one std::max chain over
    // the row ran ~1 ns a column (a generation step's 32 x 520 scores: 15 us).
    constexpr int L = 16;
    float lanes[L];
    for (int t = 0; t < L; t++) lanes[t] = -INFINITY;
    int64_t j = 0;
    if (!m) {
      for (; j + L <= visible; j += L)
        for (int t = 0; t < L; t++) {
          const float v = y[j + t] * scale;
          y[j + t] = v;
          lanes[t] = std::max(lanes[t], v);
        }
    }
    for (; j < visible; j++) {
      float v = y[j] * scale;
      if (m) {
        float mv;
        std::memcpy(&mv, reinterpret_cast<const char*>(m) + size_t(j) * mask->nb[0], 4);
        v += mv;
      }
      y[j] = v;
      lanes[j % L] = std::max(lanes[j % L], v);
    }
    float mx = -INFINITY;
    for (int t = 0; t < L; t++) mx = std::max(mx, lanes[t]);
    if (mx == -INFINITY) {  // every column masked: no probability mass anywhere
      for (int64_t j = 0; j < n; j++) y[j] = 0.0f;
      continue;
    }
    const double sum = p.k->exp_sum(y, visible, mx);
    const float inv = float(1.0 / sum);
    for (int64_t j = 0; j < visible; j++) y[j] *= inv;
    for (int64_t j = visible; j < n; j++) y[j] = 0.0f;
  }
}

}  // namespace ggml
