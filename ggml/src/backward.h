#pragma once
// What a backward rule sees (internal: the rules and the op table).
#include <unordered_map>
#include <unordered_set>

#include "ggml/tensor.h"

namespace ggml {

// A tensor computed by the graph (or a view of one), not a leaf: an
// activation or a gradient rather than a weight or an input.
inline bool computed(const Tensor* t) {
  if (t && op_is_view(t->op) && t->view_src) t = t->view_src;  // (view_src is the root)
  return t && t->op != Op::NONE;
}

struct BackwardContext {
  Context& ctx;
  std::unordered_map<const Tensor*, Tensor*> grads;
  std::unordered_set<const Tensor*> needs;  // a trainable leaf flows into these
  bool bf16 = false;                        // BackwardOptions::bf16_products
  bool bf16_attention = false;              // BackwardOptions::bf16_attention
  bool int8 = false;                        // BackwardOptions::int8_products

  bool wants(const Tensor* t) const { return t && needs.count(t) != 0; }
  // A product of two such tensors is attention's (bf16_attention).
  bool both_computed(const Tensor* a, const Tensor* b) const { return bf16_attention && computed(a) && computed(b); }
  Tensor* grad(const Tensor* t) const {
    auto it = grads.find(t);
    return it == grads.end() ? nullptr : it->second;
  }
  // Adds g to t's gradient (ignored where t needs none).
  void add(Tensor* t, Tensor* g);
};

// The rules, one per differentiable op (autodiff_rules.cpp): each adds the
// gradients of node's sources from grad(node).
void backward_cpy(BackwardContext& c, Tensor* n);  // CPY and CONT
void backward_add(BackwardContext& c, Tensor* n);
void backward_mul(BackwardContext& c, Tensor* n);
void backward_scale(BackwardContext& c, Tensor* n);
void backward_get_rows(BackwardContext& c, Tensor* n);
void backward_mul_mat(BackwardContext& c, Tensor* n);
void backward_rms_norm(BackwardContext& c, Tensor* n);
void backward_norm(BackwardContext& c, Tensor* n);
void backward_rope(BackwardContext& c, Tensor* n);
void backward_soft_max(BackwardContext& c, Tensor* n);
void backward_silu(BackwardContext& c, Tensor* n);
void backward_gelu(BackwardContext& c, Tensor* n);  // GELU and GELU_ERF
void backward_silu_mul(BackwardContext& c, Tensor* n);
void backward_view(BackwardContext& c, Tensor* n);
void backward_reshape(BackwardContext& c, Tensor* n);
void backward_permute(BackwardContext& c, Tensor* n);  // PERMUTE and TRANSPOSE
void backward_cross_entropy(BackwardContext& c, Tensor* n);

}  // namespace ggml
