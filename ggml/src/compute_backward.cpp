// Kernels of the loss and of the ops backward rules build. Every one gives
// the same floats for any thread count: each output element is summed by one
// thread in an order fixed by the shapes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "compute.h"

namespace ggml {

namespace {
struct Row { int64_t i1, i2, i3; };
inline Row row_of(const Tensor* t, int64_t r) { return {r % t->ne[1], (r / t->ne[1]) % t->ne[2], r / (t->ne[1] * t->ne[2])}; }
inline float* frow(const Tensor* t, int64_t r) {
  const Row i = row_of(t, r);
  return reinterpret_cast<float*>(t->row_ptr(i.i1, i.i2, i.i3));
}
inline float felem(const Tensor* t, const char* row, int64_t j) {
  float v;
  std::memcpy(&v, row + size_t(j) * t->nb[0], 4);
  return v;
}
int32_t id_at(const Tensor* ids, int64_t i) {
  int32_t v;
  std::memcpy(&v, static_cast<const char*>(ids->data) + size_t(i) * ids->nb[0], 4);
  return v;
}
}  // namespace

void compute_sum_to(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  const int64_t n = dst->ne[0];
  for (int64_t r = r0; r < r1; r++) {
    const Row d = row_of(dst, r);
    float* y = frow(dst, r);
    std::fill(y, y + n, 0.0f);
    for (int64_t s3 = d.i3; s3 < a->ne[3]; s3 += dst->ne[3])
      for (int64_t s2 = d.i2; s2 < a->ne[2]; s2 += dst->ne[2])
        for (int64_t s1 = d.i1; s1 < a->ne[1]; s1 += dst->ne[1]) {
          const char* x = a->row_ptr(s1, s2, s3);
          if (a->ne[0] == n && a->nb[0] == sizeof(float)) {  // (a norm's weight gradient: rows summed)
            const float* xf = reinterpret_cast<const float*>(x);
            for (int64_t j = 0; j < n; j++) y[j] += xf[j];
          } else {
            for (int64_t j = 0; j < a->ne[0]; j++) y[j % n] += felem(a, x, j);
          }
        }
  }
}

void compute_acc(const ComputeParams& p, Tensor* dst) {
  const Tensor* b = dst->src[0];
  const Tensor* base = dst->src[1];
  const size_t nb1 = size_t(dst->op_params[0]), nb2 = size_t(dst->op_params[1]), nb3 = size_t(dst->op_params[2]);
  const size_t offs = size_t(dst->op_params[3]);
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  const int64_t n = dst->ne[0];
  for (int64_t r = r0; r < r1; r++) {
    float* y = frow(dst, r);
    if (!base) {
      std::fill(y, y + n, 0.0f);
    } else {
      const Row i = row_of(base, r);
      const char* x = base->row_ptr(i.i1, i.i2, i.i3);
      for (int64_t j = 0; j < n; j++) y[j] = felem(base, x, j);
    }
  }
  p.barrier();
  // Rows of the view are added in parallel only where no two can overlap.
  const bool disjoint = (b->ne[1] == 1 || nb1 >= size_t(b->ne[0]) * 4) && (b->ne[2] == 1 || nb2 >= nb1 * size_t(b->ne[1])) &&
                        (b->ne[3] == 1 || nb3 >= nb2 * size_t(b->ne[2]));
  if (!disjoint && p.ith != 0) return;
  int64_t b0 = 0, b1 = b->nrows();
  if (disjoint) split_range(b->nrows(), p.ith, p.nth, &b0, &b1);
  char* out = static_cast<char*>(dst->data) + offs;
  for (int64_t r = b0; r < b1; r++) {
    const Row i = row_of(b, r);
    const char* x = b->row_ptr(i.i1, i.i2, i.i3);
    float* y = reinterpret_cast<float*>(out + size_t(i.i1) * nb1 + size_t(i.i2) * nb2 + size_t(i.i3) * nb3);
    for (int64_t j = 0; j < b->ne[0]; j++) y[j] += felem(b, x, j);
  }
}

namespace {
constexpr int64_t MT_ROWS = 64;  // weight rows per tile (converted to F32 once per thread and tile)
constexpr int64_t MT_TOK = 4;    // output rows (tokens) updated together
}  // namespace

size_t mul_mat_t_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k) {
  if (mmt_q8_applies(dst, k)) return mmt_q8_work_size(dst, nth, k);
  if (mmt_bf16_applies(dst, k)) return mmt_bf16_work_size(dst, nth, k);
  const Tensor* a = dst->src[0];
  return a->type == Type::F32 ? 0 : size_t(nth) * (size_t(MT_ROWS) * size_t(a->ne[0]) * sizeof(float) + 64) + 64;
}

void compute_mul_mat_t(const ComputeParams& p, Tensor* dst) {
  // Each thread owns a run of (batch, block of MT_TOK tokens) items and
  // sweeps the weight rows tile by tile, every tile (in cache) serving all its
  // tokens: the sums run over the rows in the same order for any thread
  // count, with no barrier. A non-F32 tile is converted by each thread that
  // uses it (a 64th of its multiply-adds at 256 tokens).
  if (mmt_q8_applies(dst, *p.k)) return compute_mmt_q8(p, dst);
  if (mmt_bf16_applies(dst, *p.k)) return compute_mmt_bf16(p, dst);
  const Tensor* a = dst->src[0];
  const Tensor* d = dst->src[1];
  const int64_t K = a->ne[0], M = a->ne[1], N = d->ne[1];
  const int64_t r2 = d->ne[2] / a->ne[2], r3 = d->ne[3] / a->ne[3];
  const int64_t n_blocks = (N + MT_TOK - 1) / MT_TOK;
  const bool direct = a->type == Type::F32;
  // 64-byte aligned: a vector load that straddles two cache lines costs two
  float* tile = nullptr;
  if (!direct) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(p.wdata) + size_t(p.ith) * (size_t(MT_ROWS) * size_t(K) * sizeof(float) + 64);
    tile = reinterpret_cast<float*>((at + 63) / 64 * 64);
  }
  int64_t w0, w1;
  split_range(d->ne[2] * d->ne[3] * n_blocks, p.ith, p.nth, &w0, &w1);
  while (w0 < w1) {
    const int64_t b = w0 / n_blocks, jb0 = w0 % n_blocks, jb1 = std::min(n_blocks, jb0 + (w1 - w0));
    const int64_t i2 = b % d->ne[2], i3 = b / d->ne[2];
    for (int64_t i0 = 0; i0 < M; i0 += MT_ROWS) {
      const int64_t rows = std::min(MT_ROWS, M - i0);
      const float* w;
      size_t ldw;
      if (direct) {
        w = reinterpret_cast<const float*>(a->row_ptr(i0, i2 / r2, i3 / r3));
        ldw = a->nb[1] / sizeof(float);
      } else {
        for (int64_t i = 0; i < rows; i++) load_row_f32(*p.k, a, i0 + i, i2 / r2, i3 / r3, tile + size_t(i) * size_t(K));
        w = tile;
        ldw = size_t(K);
      }
      for (int64_t jb = jb0; jb < jb1; jb++) {
        const int64_t j0 = jb * MT_TOK, nq = std::min(MT_TOK, N - j0);
        const float* dr[MT_TOK];
        float* yr[MT_TOK];
        for (int q = 0; q < nq; q++) {
          dr[q] = reinterpret_cast<const float*>(d->row_ptr(j0 + q, i2, i3));
          yr[q] = reinterpret_cast<float*>(dst->row_ptr(j0 + q, i2, i3));
          if (i0 == 0) std::fill(yr[q], yr[q] + K, 0.0f);
        }
        p.k->mmt(w, rows, K, ldw, dr, i0, yr, int(nq));
      }
    }
    w0 += jb1 - jb0;
  }
}

void compute_get_rows_back(const ComputeParams& p, Tensor* dst) {
  const Tensor* g = dst->src[0];
  const Tensor* ids = dst->src[1];
  // Threads own column ranges, so each row's sums run in the ids' order.
  int64_t c0, c1;
  split_range(dst->ne[0], p.ith, p.nth, &c0, &c1);
  for (int64_t r = 0; r < dst->ne[1]; r++) {
    float* y = reinterpret_cast<float*>(dst->row_ptr(r));
    std::fill(y + c0, y + c1, 0.0f);
  }
  for (int64_t i = 0; i < g->ne[1]; i++) {
    const int32_t id = id_at(ids, i);
    if (id < 0 || id >= dst->ne[1]) {
      if (p.ith == 0)
        p.err->raise("get_rows_back: id " + std::to_string(id) + " out of range [0, " + std::to_string(dst->ne[1]) + ")");
      continue;
    }
    const float* x = reinterpret_cast<const float*>(g->row_ptr(i));
    float* y = reinterpret_cast<float*>(dst->row_ptr(id));
    for (int64_t j = c0; j < c1; j++) y[j] += x[j];
  }
}

namespace {
// f(x row, g row, out row, n) for every row of dst (x = src0, g = src1).
template <class F>
void pair_rows(const ComputeParams& p, Tensor* dst, F f) {
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) f(frow(dst->src[0], r), frow(dst->src[1], r), frow(dst, r), dst->ne[0]);
}
}  // namespace

void compute_rms_norm_back(const ComputeParams& p, Tensor* dst) {
  const double eps = op_param_f32(dst, 0);
  pair_rows(p, dst, [eps](const float* x, const float* g, float* y, int64_t n) {
    // y = x r, r = (mean(x^2) + eps)^-1/2: dx = r (g - x r^2 mean(g x))
    double xx = 0, gx = 0;
    for (int64_t i = 0; i < n; i++) xx += double(x[i]) * x[i], gx += double(g[i]) * x[i];
    const double r = 1.0 / std::sqrt(xx / double(n) + eps);
    const double c = r * r * gx / double(n);
    for (int64_t i = 0; i < n; i++) y[i] = float(r * (g[i] - x[i] * c));
  });
}

void compute_norm_back(const ComputeParams& p, Tensor* dst) {
  const double eps = op_param_f32(dst, 0);
  pair_rows(p, dst, [eps](const float* x, const float* g, float* y, int64_t n) {
    // y = (x - mean) r: dx = r (g - mean(g) - y mean(g y))
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const double mean = sum / double(n);
    double var = 0;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    const double r = 1.0 / std::sqrt(var / double(n) + eps);
    double mg = 0, mgy = 0;
    for (int64_t i = 0; i < n; i++) mg += g[i], mgy += double(g[i]) * (x[i] - mean) * r;
    mg /= double(n);
    mgy /= double(n);
    for (int64_t i = 0; i < n; i++) y[i] = float(r * (g[i] - mg - (x[i] - mean) * r * mgy));
  });
}

void compute_soft_max_back(const ComputeParams& p, Tensor* dst) {
  const double scale = op_param_f32(dst, 0);
  pair_rows(p, dst, [scale](const float* s, const float* g, float* y, int64_t n) {
    double dot = 0;
    for (int64_t i = 0; i < n; i++) dot += double(g[i]) * s[i];
    for (int64_t i = 0; i < n; i++) y[i] = float(scale * s[i] * (g[i] - dot));
  });
}

void compute_act_back(const ComputeParams& p, Tensor* dst) {
  if (dst->op == Op::SILU_BACK) {
    const cpu::KernelSet& k = *p.k;
    pair_rows(p, dst, [&k](const float* x, const float* g, float* y, int64_t n) { k.silu_back(x, g, y, n); });
  } else if (dst->op_params[0] == 0) {
    pair_rows(p, dst, [](const float* x, const float* g, float* y, int64_t n) {
      constexpr float c = 0.7978845608028654f, k = 0.044715f;  // sqrt(2/pi)
      for (int64_t i = 0; i < n; i++) {
        const float v = x[i], t = std::tanh(c * (v + k * v * v * v));
        y[i] = g[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * c * (1.0f + 3.0f * k * v * v));
      }
    });
  } else {
    pair_rows(p, dst, [](const float* x, const float* g, float* y, int64_t n) {
      constexpr float r2 = 0.7071067811865476f, rpi = 0.3989422804014327f;  // 1/sqrt(2), 1/sqrt(2 pi)
      for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = g[i] * (0.5f * (1.0f + std::erf(v * r2)) + v * rpi * std::exp(-0.5f * v * v));
      }
    });
  }
}

namespace {
// The count a cross-entropy divides by: norm's value, else this batch's.
double ce_count(const Tensor* targets, const Tensor* norm, int64_t V) {
  if (norm) return double(*static_cast<const float*>(norm->data));
  int64_t c = 0;
  for (int64_t t = 0; t < targets->ne[0]; t++) {
    const int32_t id = id_at(targets, t);
    c += id >= 0 && id < V;
  }
  return double(c);
}
// y = exp(x - max x) on the kernel set's vector exp (the vocabulary's
// softmax: scalar double exps were 8% of a SmolLM2 fine-tune); returns the
// sum (in double) and sets *mx.
double exp_row(const cpu::KernelSet& k, const float* x, int64_t n, float* y, float* mx) {
  *mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) *mx = std::max(*mx, x[i]);
  std::copy(x, x + n, y);
  return k.exp_sum(y, n, *mx);
}
bool ce_target(const ComputeParams& p, const Tensor* targets, int64_t t, int64_t V, int32_t* id) {
  *id = id_at(targets, t);
  if (*id >= V) {
    p.err->raise("cross_entropy: target " + std::to_string(*id) + " at position " + std::to_string(t) +
                 " is outside the vocabulary of " + std::to_string(V));
    return false;
  }
  return *id >= 0;
}
}  // namespace

size_t cross_entropy_work_size(const Tensor* dst, int nth, const cpu::KernelSet&) {
  return size_t(dst->src[0]->ne[1]) * sizeof(double) + size_t(nth) * (size_t(dst->src[0]->ne[0]) * sizeof(float) + 64) + 64;
}

void compute_cross_entropy(const ComputeParams& p, Tensor* dst) {
  const Tensor* logits = dst->src[0];
  const Tensor* targets = dst->src[1];
  const int64_t V = logits->ne[0], T = logits->ne[1];
  double* per = static_cast<double*>(p.wdata);
  const uintptr_t at = reinterpret_cast<uintptr_t>(per + T) + size_t(p.ith) * (size_t(V) * sizeof(float) + 64);
  float* tmp = reinterpret_cast<float*>((at + 63) / 64 * 64);
  int64_t t0, t1;
  split_range(T, p.ith, p.nth, &t0, &t1);
  for (int64_t t = t0; t < t1; t++) {
    int32_t id;
    per[t] = 0;
    if (!ce_target(p, targets, t, V, &id)) continue;
    const float* x = reinterpret_cast<const float*>(logits->row_ptr(t));
    float mx;
    const double s = exp_row(*p.k, x, V, tmp, &mx);
    per[t] = std::log(s) + double(mx) - double(x[id]);
  }
  p.barrier();
  if (p.ith != 0) return;
  double sum = 0;
  for (int64_t t = 0; t < T; t++) sum += per[t];  // in position order, for any thread count
  const double count = ce_count(targets, dst->src[2], V);
  *static_cast<float*>(dst->data) = count > 0 ? float(sum / count) : 0.0f;
}

void compute_cross_entropy_back(const ComputeParams& p, Tensor* dst) {
  const Tensor* logits = dst->src[0];
  const Tensor* targets = dst->src[1];
  const int64_t V = logits->ne[0], T = logits->ne[1];
  const double count = ce_count(targets, dst->src[3], V);
  const double f = count > 0 ? double(*static_cast<const float*>(dst->src[2]->data)) / count : 0.0;
  int64_t t0, t1;
  split_range(T, p.ith, p.nth, &t0, &t1);
  for (int64_t t = t0; t < t1; t++) {
    float* y = reinterpret_cast<float*>(dst->row_ptr(t));
    int32_t id;
    if (!ce_target(p, targets, t, V, &id) || f == 0.0) {
      std::fill(y, y + V, 0.0f);
      continue;
    }
    const float* x = reinterpret_cast<const float*>(logits->row_ptr(t));
    float mx;
    const double s = exp_row(*p.k, x, V, y, &mx);  // y = exp(x - max)
    const float scale = float(f / s);
    for (int64_t i = 0; i < V; i++) y[i] *= scale;
    y[id] -= float(f);
  }
}

}  // namespace ggml
