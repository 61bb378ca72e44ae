// build_backward: the reverse sweep over a graph's nodes.
#include "ggml/autodiff.h"

#include <algorithm>

#include "backward.h"
#include "ggml/ops.h"

namespace ggml {

void BackwardContext::add(Tensor* t, Tensor* g) {
  if (!wants(t)) return;
  for (int i = 0; i < MAX_DIMS; i++)
    GGML_CHECK(g->ne[i] == t->ne[i], t, "autodiff: a gradient of shape " + g->shape_str() + " for it (a rule's bug)");
  Tensor*& slot = grads[t];
  slot = slot ? ggml::add(ctx, slot, g) : g;
}

Gradients build_backward(Context& ctx, Graph& g, Tensor* loss) {
  GGML_CHECK(loss && loss->op != Op::NONE && loss->type == Type::F32 && loss->nelements() == 1, loss,
             "autodiff: the loss must be an F32 scalar computed by the graph");
  const std::vector<Tensor*> nodes = g.nodes();  // the forward part; expanding below appends
  const auto at = std::find(nodes.begin(), nodes.end(), loss);
  GGML_CHECK(at != nodes.end(), loss, "autodiff: the loss is not a node of the graph (expand it first)");

  BackwardContext c{ctx, {}, {}};
  std::vector<Tensor*> params;
  for (Tensor* l : g.leafs()) {
    if (!(l->flags & FLAG_PARAM)) continue;
    GGML_CHECK(l->type == Type::F32, l, "autodiff: a trainable tensor must be F32");
    c.needs.insert(l);
    params.push_back(l);
  }
  for (Tensor* n : nodes)
    for (const Tensor* s : n->src)
      if (c.wants(s)) {
        c.needs.insert(n);
        break;
      }
  GGML_CHECK(c.wants(loss), loss, "autodiff: no trainable tensor flows into the loss");

  Gradients out;
  out.seed = ctx.new_tensor(Type::F32, {1}, "dloss");
  *out.seed->as<float>() = 1.0f;
  c.grads[loss] = out.seed;
  for (auto it = std::make_reverse_iterator(at + 1); it != nodes.rend(); ++it) {
    Tensor* n = *it;
    if (!c.wants(n) || !c.grad(n)) continue;
    const OpInfo& info = op_info(n->op);
    GGML_CHECK(info.backward != nullptr, n, std::string("autodiff: no backward rule for ") + info.name);
    info.backward(c, n);
  }
  for (Tensor* p : params) {
    Tensor* gr = c.grad(p);
    if (!gr) continue;
    if (gr->op == Op::NONE || op_is_view(gr->op)) gr = cont(ctx, gr);  // its own memory, kept as an output
    gr->name = p->name + " (grad)";
    g.expand(gr);
    out.grads.push_back({p, gr});
  }
  return out;
}

}  // namespace ggml
