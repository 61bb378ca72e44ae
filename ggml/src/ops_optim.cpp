// Constructors of the optimizer ops (in place, like cpy).
#include <cstring>

#include "ggml/optim.h"

namespace ggml {

namespace {
void put(Tensor* t, int i, float v) { std::memcpy(&t->op_params[i], &v, 4); }

void check_state(const Tensor* p, const Tensor* s, const char* op) {
  GGML_CHECK(s->type == Type::F32 && s->is_contiguous(), s, std::string(op) + ": expects a contiguous F32 tensor");
  for (int i = 0; i < MAX_DIMS; i++)
    GGML_CHECK(s->ne[i] == p->ne[i], s, std::string(op) + ": shape differs from the parameter " + p->shape_str());
}

Tensor* in_place(Context& ctx, Op op, Tensor* p, std::initializer_list<Tensor*> srcs) {
  Tensor* t = ctx.new_result(Type::F32, p->ne);
  t->op = op;
  int i = 0;
  t->src[i++] = p;
  for (Tensor* s : srcs) t->src[i++] = s;
  t->view_src = p->view_src ? p->view_src : p;
  t->view_offs = p->view_offs;
  t->name = p->name + " (" + op_name(op) + ")";
  return t;
}
}  // namespace

Tensor* sum_sq(Context& ctx, Tensor* a) {
  GGML_CHECK(a->type == Type::F32 && a->nb[0] == sizeof(float), a, "sum_sq: expects F32 with contiguous rows");
  const int64_t ne[4] = {1, 1, 1, 1};
  Tensor* t = ctx.new_result(Type::F32, ne);
  t->op = Op::SUM_SQ;
  t->src[0] = a;
  return t;
}

void set_adamw(Tensor* n, const AdamWStep& s) {
  GGML_CHECK(n->op == Op::OPT_ADAMW || n->op == Op::OPT_ADAMW8, n, "set_adamw: not an AdamW node");
  const float v[8] = {s.beta2, s.lerp1, s.lerp2, s.eps, s.decay, s.step_size, s.bias2_sqrt, s.grad_scale};
  for (int i = 0; i < 8; i++) put(n, i, v[i]);
}

Tensor* opt_adamw(Context& ctx, Tensor* p, Tensor* g, Tensor* m, Tensor* v, const AdamWStep& s) {
  check_state(p, p, "opt_adamw");
  for (Tensor* x : {g, m, v}) check_state(p, x, "opt_adamw");
  Tensor* t = in_place(ctx, Op::OPT_ADAMW, p, {g, m, v});
  set_adamw(t, s);
  return t;
}

Tensor* opt_adamw8(Context& ctx, Tensor* p, Tensor* g, Tensor* codes, Tensor* absmax, const AdamWStep& s) {
  check_state(p, p, "opt_adamw8");
  check_state(p, g, "opt_adamw8");
  const int64_t n = p->nelements(), blocks = (n + kDyn8Block - 1) / kDyn8Block;
  GGML_CHECK(codes->type == Type::I8 && codes->is_contiguous() && codes->nelements() == 2 * n, codes,
             "opt_adamw8: codes must be contiguous I8 [n, 2]");
  GGML_CHECK(absmax->type == Type::F32 && absmax->is_contiguous() && absmax->nelements() == 2 * blocks, absmax,
             "opt_adamw8: absmax must be contiguous F32 [n_blocks, 2]");
  Tensor* t = in_place(ctx, Op::OPT_ADAMW8, p, {g, codes, absmax});
  set_adamw(t, s);
  return t;
}

void set_sgd(Tensor* n, const SgdStep& s) {
  GGML_CHECK(n->op == Op::OPT_SGD, n, "set_sgd: not an SGD node");
  const float v[4] = {s.lr, s.momentum, s.weight_decay, s.grad_scale};
  for (int i = 0; i < 4; i++) put(n, i, v[i]);
}

Tensor* opt_sgd(Context& ctx, Tensor* p, Tensor* g, Tensor* buf, const SgdStep& s) {
  check_state(p, p, "opt_sgd");
  for (Tensor* x : {g, buf}) check_state(p, x, "opt_sgd");
  Tensor* t = in_place(ctx, Op::OPT_SGD, p, {g, buf});
  set_sgd(t, s);
  return t;
}

}  // namespace ggml
