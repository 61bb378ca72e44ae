#pragma once
// Reverse-mode automatic differentiation: the gradient nodes of a loss are
// added to the graph that computes it, so one plan and one compute give the
// loss and every gradient. Each op's rule sits beside its forward in the op
// table (OpInfo::backward, autodiff_rules.cpp).
#include <utility>
#include <vector>

#include "graph.h"

namespace ggml {

// Marks a leaf trainable (F32 only): build_backward makes its gradient.
inline void set_trainable(Tensor* t) { t->flags |= FLAG_PARAM; }

struct Gradients {
  // (trainable leaf, its gradient) in the graph's leaf order; a leaf the
  // loss does not depend on has none.
  std::vector<std::pair<Tensor*, Tensor*>> grads;
  Tensor* seed = nullptr;  // dL/dloss, a leaf holding 1 (scale it to weight a micro-batch)
  Tensor* of(const Tensor* t) const {
    for (const auto& [p, gr] : grads)
      if (p == t) return gr;
    return nullptr;
  }
};

// Adds to g (which must contain loss, an F32 scalar node) the gradient of
// loss with respect to every leaf marked trainable, each an output of g.
// Nothing is built for tensors no trainable leaf flows into; a tensor read
// by several nodes sums their contributions. Call it before the backend's
// optimize pass (its fused nodes have no rules). Throws for an op without a
// rule, or a trainable leaf that is not F32.
struct BackwardOptions {
  // Gradient checkpointing: the forward tensors kept for the backward pass
  // (each layer's input, say). Every other forward result a gradient needs is
  // computed again from them, just before it is needed, by clones of its
  // nodes (FLAG_RECOMPUTE): memory for one segment's activations instead of
  // all of them, for a second forward pass. The gradients are the same floats.
  std::vector<Tensor*> checkpoints;
  // Mixed precision: the products through frozen weights (dX = W^T dY, the
  // bulk of the backward pass) on the backend's BF16 product where it has
  // one: weights and gradients rounded to bf16, sums in float. Trainable
  // tensors, their gradients and the optimizer stay F32.
  bool bf16_products = false;
  // Mixed precision: the products of two computed tensors (attention's
  // scores and weighted values, forward and backward) in bf16 the same way,
  // as PyTorch's autocast does; products with trainable tensors stay F32.
  bool bf16_attention = false;
  // Mixed precision: every forward result the backward pass reads (other
  // than the checkpoints) is kept as a bf16 copy made right after it is
  // computed, and widened again just before its first backward use: half the
  // memory for the activations kept, at the cost of their rounding.
  bool bf16_activations = false;
  // The products through frozen block-quantized weights (Q8_0, Q4_0, Q4_1)
  // on the backend's int8 product, as their forward products run: W^T
  // requantized to Q8_0 along W's columns, dY rounded to 8 bits per block of
  // 32, integer sums. Faster than bf16 where both exist (and than float
  // everywhere here); before bf16_products for such weights.
  bool int8_products = false;
};
Gradients build_backward(Context& ctx, Graph& g, Tensor* loss, const BackwardOptions& opt = {});

// Where a forward+backward graph's memory goes, from the lifetimes of its
// results in execution order (what the planner packs into its buffer):
// the gradients (outputs other than the loss), the forward results still
// alive when the loss is computed (kept for the backward pass), and the most
// recomputed results (checkpointing) alive at once.
struct BackwardMemory {
  size_t gradients = 0, kept = 0, recompute = 0;
};
BackwardMemory backward_memory(const Graph& g, const Tensor* loss);

}  // namespace ggml
