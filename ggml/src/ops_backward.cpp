// Constructors of the loss and of the ops backward rules build: shapes and
// types checked here, the kernels in compute_backward.cpp.
#include <cstring>

#include "ggml/ops.h"

namespace ggml {

namespace {
void set_f32(Tensor* t, int i, float v) { std::memcpy(&t->op_params[i], &v, 4); }

Tensor* node(Context& ctx, Op op, const int64_t* ne, Tensor* a, Tensor* b = nullptr, Tensor* c = nullptr,
             Tensor* d = nullptr) {
  Tensor* t = ctx.new_result(Type::F32, ne);
  t->op = op;
  t->src[0] = a;
  t->src[1] = b;
  t->src[2] = c;
  t->src[3] = d;
  return t;
}

void f32(const Tensor* a, const char* op) {
  GGML_CHECK(a->type == Type::F32, a, std::string(op) + ": expects an F32 tensor");
}
void f32_rows(const Tensor* a, const char* op) {
  f32(a, op);
  GGML_CHECK(a->nb[0] == sizeof(float), a, std::string(op) + ": rows must be contiguous");
}
void same_shape(const Tensor* a, const Tensor* b, const char* op) {
  for (int i = 0; i < MAX_DIMS; i++)
    GGML_CHECK(a->ne[i] == b->ne[i], b, std::string(op) + ": shape differs from " + a->shape_str());
}
void check_targets(const Tensor* logits, const Tensor* targets, const Tensor* norm, const char* op) {
  f32_rows(logits, op);
  GGML_CHECK(logits->ne[2] == 1 && logits->ne[3] == 1, logits, std::string(op) + ": logits must be 2-D [vocab, tokens]");
  GGML_CHECK(targets->type == Type::I32 && targets->nelements() == logits->ne[1] && targets->ne[0] == logits->ne[1], targets,
             std::string(op) + ": targets must be I32 with one id per token (" + std::to_string(logits->ne[1]) + ")");
  if (norm) {
    f32(norm, op);
    GGML_CHECK(norm->nelements() == 1, norm, std::string(op) + ": the count must be one F32 value");
  }
}
}  // namespace

Tensor* reshape_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
  return reshape(ctx, a, {ne0, ne1, ne2, ne3});
}

Tensor* cross_entropy(Context& ctx, Tensor* logits, Tensor* targets, Tensor* norm) {
  check_targets(logits, targets, norm, "cross_entropy");
  const int64_t ne[4] = {1, 1, 1, 1};
  return node(ctx, Op::CROSS_ENTROPY, ne, logits, targets, norm);
}

Tensor* cross_entropy_back(Context& ctx, Tensor* logits, Tensor* targets, Tensor* dloss, Tensor* norm) {
  check_targets(logits, targets, norm, "cross_entropy_back");
  f32(dloss, "cross_entropy_back");
  GGML_CHECK(dloss->nelements() == 1, dloss, "cross_entropy_back: dloss must be one value");
  return node(ctx, Op::CROSS_ENTROPY_BACK, logits->ne, logits, targets, dloss, norm);
}

Tensor* sum_to(Context& ctx, Tensor* a, const int64_t* ne) {
  f32(a, "sum_to");
  for (int i = 0; i < MAX_DIMS; i++)
    GGML_CHECK(ne[i] >= 1 && a->ne[i] % ne[i] == 0, a, "sum_to: dimension " + std::to_string(i) + " (" +
                                                           std::to_string(ne[i]) + ") does not divide the source's");
  return node(ctx, Op::SUM_TO, ne, a);
}

Tensor* acc(Context& ctx, Tensor* b, Tensor* base, const int64_t* ne, size_t nb1, size_t nb2, size_t nb3, size_t offs) {
  f32(b, "acc");
  Tensor* t = node(ctx, Op::ACC, ne, b, base);
  if (base) {
    f32(base, "acc base");
    same_shape(t, base, "acc");
  }
  GGML_CHECK(offs % sizeof(float) == 0 && nb1 % sizeof(float) == 0 && nb2 % sizeof(float) == 0 &&
                 nb3 % sizeof(float) == 0,
             b, "acc: offset and strides must be whole floats");
  const size_t last = offs + sizeof(float) * size_t(b->ne[0] - 1) + nb1 * size_t(b->ne[1] - 1) +
                      nb2 * size_t(b->ne[2] - 1) + nb3 * size_t(b->ne[3] - 1);
  GGML_CHECK(last + sizeof(float) <= t->nbytes(), b, "acc: the view reaches past the end of " + t->shape_str());
  t->op_params[0] = int32_t(nb1);
  t->op_params[1] = int32_t(nb2);
  t->op_params[2] = int32_t(nb3);
  t->op_params[3] = int32_t(offs);
  GGML_CHECK(size_t(t->op_params[0]) == nb1 && size_t(t->op_params[1]) == nb2 && size_t(t->op_params[2]) == nb3 &&
                 size_t(t->op_params[3]) == offs,
             b, "acc: strides or offset too large");
  return t;
}

Tensor* mul_mat_t(Context& ctx, Tensor* a, Tensor* d, bool bf16, bool int8) {
  GGML_CHECK(traits(a->type).to_float != nullptr, a, std::string("mul_mat_t: no conversion from ") + type_name(a->type));
  GGML_CHECK(a->rows_contiguous(), a, "mul_mat_t: weight rows must be contiguous");
  f32_rows(d, "mul_mat_t");
  GGML_CHECK(d->ne[0] == a->ne[1], d, "mul_mat_t: length " + std::to_string(d->ne[0]) + " differs from the rows of " +
                                          a->shape_str());
  GGML_CHECK(d->ne[2] % a->ne[2] == 0 && d->ne[3] % a->ne[3] == 0, a, "mul_mat_t: cannot broadcast over " + d->shape_str());
  const int64_t ne[4] = {a->ne[0], d->ne[1], d->ne[2], d->ne[3]};
  Tensor* t = node(ctx, Op::MUL_MAT_T, ne, a, d);
  t->op_params[0] = (bf16 ? 1 : 0) | (int8 ? 2 : 0);
  return t;
}

Tensor* get_rows_back(Context& ctx, Tensor* g, Tensor* ids, int64_t n_rows) {
  f32_rows(g, "get_rows_back");
  GGML_CHECK(g->ne[2] == 1 && g->ne[3] == 1, g, "get_rows_back: expects 2-D rows");
  GGML_CHECK(ids->type == Type::I32 && ids->ne[0] == g->ne[1] && ids->nelements() == g->ne[1], ids,
             "get_rows_back: ids must be I32 with one id per row");
  GGML_CHECK(n_rows >= 1, g, "get_rows_back: the table needs rows");
  const int64_t ne[4] = {g->ne[0], n_rows, 1, 1};
  return node(ctx, Op::GET_ROWS_BACK, ne, g, ids);
}

namespace {
Tensor* pair_back(Context& ctx, Op op, Tensor* x, Tensor* g, const char* name) {
  f32_rows(x, name);
  f32_rows(g, name);
  same_shape(x, g, name);
  return node(ctx, op, x->ne, x, g);
}
}  // namespace

Tensor* rms_norm_back(Context& ctx, Tensor* x, Tensor* g, float eps) {
  Tensor* t = pair_back(ctx, Op::RMS_NORM_BACK, x, g, "rms_norm_back");
  set_f32(t, 0, eps);
  return t;
}
Tensor* norm_back(Context& ctx, Tensor* x, Tensor* g, float eps) {
  Tensor* t = pair_back(ctx, Op::NORM_BACK, x, g, "norm_back");
  set_f32(t, 0, eps);
  return t;
}
Tensor* soft_max_back(Context& ctx, Tensor* y, Tensor* g, float scale) {
  Tensor* t = pair_back(ctx, Op::SOFT_MAX_BACK, y, g, "soft_max_back");
  set_f32(t, 0, scale);
  return t;
}
Tensor* silu_back(Context& ctx, Tensor* x, Tensor* g) { return pair_back(ctx, Op::SILU_BACK, x, g, "silu_back"); }
Tensor* gelu_back(Context& ctx, Tensor* x, Tensor* g, bool erf) {
  Tensor* t = pair_back(ctx, Op::GELU_BACK, x, g, "gelu_back");
  t->op_params[0] = erf ? 1 : 0;
  return t;
}

Tensor* rope_back(Context& ctx, Tensor* g, Tensor* pos, int n_dims, RopeMode mode, float freq_base, float freq_scale) {
  Tensor* t = rope(ctx, g, pos, n_dims, mode, freq_base, freq_scale);
  t->op_params[4] = 1;  // the angle negated
  return t;
}

}  // namespace ggml
