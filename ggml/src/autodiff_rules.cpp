// Backward rules: for node n = op(src...), given dL/dn, add dL/dsrc for each
// source that needs one. Each uses forward ops or the backward ops of
// ops.h; none keeps more of the forward pass than the nodes it reads.
#include <string>

#include "backward.h"
#include "ggml/ops.h"

namespace ggml {

namespace {
Tensor* contiguous(Context& ctx, Tensor* t) { return t->is_contiguous() ? t : cont(ctx, t); }
Tensor* dense_rows(Context& ctx, Tensor* t) { return t->nb[0] == sizeof(float) ? t : cont(ctx, t); }
bool same_shape(const Tensor* a, const Tensor* b) {
  for (int i = 0; i < MAX_DIMS; i++)
    if (a->ne[i] != b->ne[i]) return false;
  return true;
}
// g summed down to like's shape where like was broadcast.
Tensor* reduce_to(Context& ctx, Tensor* g, const Tensor* like) { return same_shape(g, like) ? g : sum_to(ctx, g, like->ne); }
Tensor* reshape_like(Context& ctx, Tensor* g, const Tensor* like) {
  return same_shape(g, like) ? g : reshape_4d(ctx, contiguous(ctx, g), like->ne[0], like->ne[1], like->ne[2], like->ne[3]);
}
}  // namespace

void backward_cpy(BackwardContext& c, Tensor* n) {
  // cont/cast keep the shape; cpy's source may have another (same count). The
  // destination's old contents are overwritten: they get no gradient.
  Tensor* a = n->src[0];
  GGML_CHECK(!c.wants(a) || a->type == Type::F32, a, "autodiff: a copy of a non-F32 tensor that needs a gradient");
  c.add(a, reshape_like(c.ctx, c.grad(n), a));
}

void backward_add(BackwardContext& c, Tensor* n) {
  Tensor* g = c.grad(n);
  c.add(n->src[0], g);
  if (c.wants(n->src[1])) c.add(n->src[1], reduce_to(c.ctx, g, n->src[1]));
}

void backward_mul(BackwardContext& c, Tensor* n) {
  Tensor *g = c.grad(n), *a = n->src[0], *b = n->src[1];
  if (c.wants(a)) c.add(a, mul(c.ctx, g, b));
  if (c.wants(b)) c.add(b, reduce_to(c.ctx, mul(c.ctx, g, a), b));
}

void backward_scale(BackwardContext& c, Tensor* n) { c.add(n->src[0], scale(c.ctx, c.grad(n), op_param_f32(n, 0))); }

void backward_get_rows(BackwardContext& c, Tensor* n) {
  Tensor* a = n->src[0];
  if (c.wants(a)) c.add(a, get_rows_back(c.ctx, dense_rows(c.ctx, c.grad(n)), n->src[1], a->ne[1]));
}

// The ranks LoRA is used with (PEFT's configurations reach 128): the sides of
// a product counted as "a few rows" below.
constexpr int64_t FEW = 128;

void backward_mul_mat(BackwardContext& c, Tensor* n) {
  // n[i, j] = sum_k a[k, i] b[k, j]:  db = a^T g (any weight type, never
  // dequantized whole), da[k, i] = sum_j b[k, j] g[i, j].
  GGML_CHECK(n->op_params[0] == 0 && !n->src[2] && !n->src[3], n,
             "autodiff: a fused matrix product (build the backward pass before the backend's optimize pass)");
  Tensor *a = n->src[0], *b = n->src[1];
  Tensor* g = dense_rows(c.ctx, c.grad(n));
  // (in mixed precision only through frozen weights: a trained one's products are small)
  if (c.wants(b)) {
    if (c.wants(a) && a->type == Type::F32 && a->ne[0] <= FEW && a->ne[0] < a->ne[1] && a->ne[2] == 1 &&
        a->ne[3] == 1) {
      // A trained matrix of a few rows (LoRA's B: rank r): the update of
      // mul_mat_t would be r floats wide (rank 32: 6 GFLOP/s); as dot products
      // over M instead, on a transposed copy (r x M floats) in the plain
      // product. (Not a frozen weight: a copy each step, and in F32.)
      c.add(b, mul_mat(c.ctx, cont(c.ctx, transpose(c.ctx, a)), g));
    } else {
      c.add(b, mul_mat_t(c.ctx, a, g, (c.bf16 && !c.wants(a)) || c.both_computed(a, b), c.int8 && !c.wants(a)));
    }
  }
  if (!c.wants(a)) return;
  Tensor* da;  // [K, M, C2, C3]
  if (a->ne[2] * a->ne[3] * b->ne[2] * b->ne[3] == 1 && std::min(a->ne[0], a->ne[1]) <= FEW) {
    // One side of a few rows (LoRA's A: M = r; its B: K = r): a sum over the
    // tokens of outer products as mul_mat_t's updates, along the long side,
    // transposing only small tensors (g for A; b and the result for B)
    // instead of the layer's input or output gradient.
    const int64_t K = a->ne[0], M = a->ne[1];
    da = M <= K ? mul_mat_t(c.ctx, b, cont(c.ctx, transpose(c.ctx, g)), false)
                : cont(c.ctx, transpose(c.ctx, mul_mat_t(c.ctx, g, cont(c.ctx, transpose(c.ctx, b)), false)));
  } else {
    da = mul_mat(c.ctx, cont(c.ctx, transpose(c.ctx, b)), cont(c.ctx, transpose(c.ctx, g)));
    if (c.both_computed(a, b)) da->op_params[MM_BF16_PARAM] = 1;
  }
  if (!same_shape(da, a)) {
    // b's batch i used a's batch i / r: sum each run of r batches.
    const int64_t r2 = b->ne[2] / a->ne[2];
    GGML_CHECK(b->ne[3] == a->ne[3], a, "autodiff: a weight broadcast over dimension 3 of a product");
    Tensor* grouped = reshape_4d(c.ctx, da, a->ne[0] * a->ne[1], r2, a->ne[2], a->ne[3]);
    const int64_t ne[4] = {a->ne[0] * a->ne[1], 1, a->ne[2], a->ne[3]};
    da = reshape_4d(c.ctx, sum_to(c.ctx, grouped, ne), a->ne[0], a->ne[1], a->ne[2], a->ne[3]);
  }
  c.add(a, da);
}

void backward_rms_norm(BackwardContext& c, Tensor* n) {
  Tensor *a = n->src[0], *w = n->src[1], *g = c.grad(n);
  const float eps = op_param_f32(n, 0);
  if (w && c.wants(w)) c.add(w, reduce_to(c.ctx, mul(c.ctx, g, rms_norm(c.ctx, a, eps)), w));
  if (c.wants(a)) c.add(a, rms_norm_back(c.ctx, dense_rows(c.ctx, a), dense_rows(c.ctx, w ? mul(c.ctx, g, w) : g), eps));
}

void backward_norm(BackwardContext& c, Tensor* n) {
  c.add(n->src[0], norm_back(c.ctx, dense_rows(c.ctx, n->src[0]), dense_rows(c.ctx, c.grad(n)), op_param_f32(n, 0)));
}

void backward_rope(BackwardContext& c, Tensor* n) {
  GGML_CHECK(!c.wants(n->src[1]), n, "autodiff: positions cannot be trained");
  c.add(n->src[0], rope_back(c.ctx, c.grad(n), n->src[1], n->op_params[0], RopeMode(n->op_params[1]),
                             op_param_f32(n, 2), op_param_f32(n, 3)));
}

void backward_soft_max(BackwardContext& c, Tensor* n) {
  GGML_CHECK(!c.wants(n->src[1]), n, "autodiff: a soft_max mask that needs a gradient");
  c.add(n->src[0], soft_max_back(c.ctx, n, dense_rows(c.ctx, c.grad(n)), op_param_f32(n, 0)));
}

void backward_silu(BackwardContext& c, Tensor* n) {
  c.add(n->src[0], silu_back(c.ctx, dense_rows(c.ctx, n->src[0]), dense_rows(c.ctx, c.grad(n))));
}

void backward_gelu(BackwardContext& c, Tensor* n) {
  c.add(n->src[0], gelu_back(c.ctx, dense_rows(c.ctx, n->src[0]), dense_rows(c.ctx, c.grad(n)), n->op == Op::GELU_ERF));
}

void backward_silu_mul(BackwardContext& c, Tensor* n) {
  Tensor *a = n->src[0], *b = n->src[1], *g = c.grad(n);
  if (c.wants(a)) c.add(a, silu_back(c.ctx, dense_rows(c.ctx, a), mul(c.ctx, g, b)));
  if (c.wants(b)) c.add(b, mul(c.ctx, g, silu(c.ctx, a)));
}

void backward_view(BackwardContext& c, Tensor* n) {
  // The gradient of the viewed tensor: g added into the viewed region of the
  // gradient so far (zeros when none).
  Tensor* a = n->src[0];
  if (!c.wants(a)) return;
  GGML_CHECK(a->is_contiguous() && n->nb[0] == sizeof(float), n,
             "autodiff: a view of a non-contiguous tensor (cont it first)");
  const size_t offs = n->view_offs - (a->view_src ? a->view_offs : 0);
  Tensor*& slot = c.grads[a];
  slot = acc(c.ctx, c.grad(n), slot, a->ne, n->nb[1], n->nb[2], n->nb[3], offs);
}

void backward_reshape(BackwardContext& c, Tensor* n) { c.add(n->src[0], reshape_like(c.ctx, c.grad(n), n->src[0])); }

void backward_permute(BackwardContext& c, Tensor* n) {
  Tensor* g = c.grad(n);
  if (n->op == Op::TRANSPOSE) {
    c.add(n->src[0], cont(c.ctx, transpose(c.ctx, g)));
    return;
  }
  // Dimension i of the source became dimension axes[i]; undo it.
  int inv[4];
  for (int i = 0; i < 4; i++) inv[n->op_params[i]] = i;
  c.add(n->src[0], cont(c.ctx, permute(c.ctx, g, inv[0], inv[1], inv[2], inv[3])));
}

void backward_cross_entropy(BackwardContext& c, Tensor* n) {
  GGML_CHECK(!c.wants(n->src[2]), n, "autodiff: the token count of a loss cannot be trained");
  c.add(n->src[0], cross_entropy_back(c.ctx, n->src[0], n->src[1], c.grad(n), n->src[2]));
}

}  // namespace ggml
