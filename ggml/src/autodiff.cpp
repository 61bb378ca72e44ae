// build_backward: the reverse sweep over a graph's nodes.
#include "ggml/autodiff.h"

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <unordered_set>

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

namespace {
// The backward nodes: everything the roots reach outside the forward graph.
std::vector<Tensor*> backward_nodes(const std::unordered_set<const Tensor*>& fwd, const std::vector<Tensor*>& roots) {
  std::vector<Tensor*> todo(roots.begin(), roots.end()), back;
  std::unordered_set<const Tensor*> seen;
  while (!todo.empty()) {
    Tensor* t = todo.back();
    todo.pop_back();
    if (!t || t->op == Op::NONE || fwd.count(t) || !seen.insert(t).second) continue;
    back.push_back(t);
    for (Tensor* s : t->src) todo.push_back(s);
  }
  return back;
}

// Rewires the backward nodes (reachable from roots, outside forward) to read
// clones of the forward results they need, recomputed from keep.
void recompute_from(Context& ctx, const std::vector<Tensor*>& forward, const std::unordered_set<const Tensor*>& keep,
                    const std::vector<Tensor*>& roots) {
  const std::unordered_set<const Tensor*> fwd(forward.begin(), forward.end());
  std::unordered_map<const Tensor*, Tensor*> clones;
  std::function<Tensor*(Tensor*)> map = [&](Tensor* t) -> Tensor* {
    if (!t || t->op == Op::NONE || !fwd.count(t) || keep.count(t) || (t->flags & FLAG_OUTPUT)) return t;
    auto it = clones.find(t);
    if (it != clones.end()) return it->second;
    Tensor* c = ctx.new_result(t->type, t->ne);
    *c = *t;
    c->data = nullptr;
    c->flags = FLAG_RECOMPUTE;
    c->name = t->name.empty() ? std::string(op_name(t->op)) + " (recomputed)" : t->name + " (recomputed)";
    for (Tensor*& s : c->src) s = map(s);
    if (t->view_src) c->view_src = map(t->view_src);
    clones[t] = c;
    return c;
  };
  for (Tensor* b : backward_nodes(fwd, roots)) {
    bool moved = false;
    for (Tensor*& s : b->src) {
      Tensor* m = map(s);
      moved |= m != s;
      s = m;
    }
    // A view made by a rule of a forward result now views the clone's memory.
    if (moved && b->view_src && op_is_view(b->op)) b->view_src = b->src[0]->view_src ? b->src[0]->view_src : b->src[0];
  }
}
// bf16_activations: the backward nodes read widened bf16 copies of the
// forward results they need, made right after them (Graph::follow) so the
// F32 originals are freed when the forward pass is done with them.
void store_bf16(Context& ctx, Graph& g, const std::vector<Tensor*>& forward, const std::unordered_set<const Tensor*>& keep,
                const std::vector<Tensor*>& roots) {
  const std::unordered_set<const Tensor*> fwd(forward.begin(), forward.end());
  std::unordered_map<const Tensor*, Tensor*> widened;
  auto widen = [&](Tensor* s) {
    Tensor*& w = widened[s];
    if (!w) {
      Tensor* packed = cast(ctx, s, Type::BF16);
      packed->name = (s->name.empty() ? std::string(op_name(s->op)) : s->name) + " (bf16)";
      g.follow(s, packed);
      w = cast(ctx, packed, Type::F32);
      w->flags |= FLAG_RECOMPUTE;  // made just before it is read
      w->name = packed->name + " (widened)";
    }
    return w;
  };
  for (Tensor* b : backward_nodes(fwd, roots)) {
    for (Tensor*& s : b->src) {
      if (!s || !fwd.count(s) || s->type != Type::F32 || keep.count(s) || (s->flags & (FLAG_OUTPUT | FLAG_INPUT))) continue;
      if (op_is_view(b->op)) {
        // A rule's view (a transpose for a weight's gradient) keeps its strides
        // on the widened copy only when that has the original's layout.
        if (s != b->src[0] || !s->is_contiguous()) continue;
        if (s->view_src) b->view_offs -= s->view_offs;
        s = b->view_src = widen(s);
        continue;
      }
      s = widen(s);
    }
  }
}

// Backward nodes that no gradient flows into (a weight transposed for its
// product with a gradient, say) are ordered late, like recomputed ones: the
// graph's depth-first order would otherwise make them where they are first
// reached, before the backward pass of every later layer, and keep them
// alive all that time.
void mark_late(const std::vector<Tensor*>& forward, const std::vector<Tensor*>& roots, const Tensor* seed) {
  const std::unordered_set<const Tensor*> fwd(forward.begin(), forward.end());
  std::unordered_map<const Tensor*, bool> dep;  // depends on the seed
  struct Frame { Tensor* t; int next; };
  for (Tensor* r : roots) {
    std::vector<Frame> st{{r, 0}};
    while (!st.empty()) {
      Frame& f = st.back();
      if (f.t == seed || f.t->op == Op::NONE || fwd.count(f.t)) {
        dep[f.t] = f.t == seed;
        st.pop_back();
        continue;
      }
      if (dep.count(f.t) && f.next == 0) {
        st.pop_back();
        continue;
      }
      if (f.next < MAX_SRC) {
        Tensor* s = f.t->src[f.next++];
        if (s && !dep.count(s)) st.push_back({s, 0});
        continue;
      }
      bool d = false;
      for (const Tensor* s : f.t->src) d |= s && dep[s];
      dep[f.t] = d;
      if (!d) f.t->flags |= FLAG_RECOMPUTE;
      st.pop_back();
    }
  }
}
}  // namespace

Gradients build_backward(Context& ctx, Graph& g, Tensor* loss, const BackwardOptions& opt) {
  GGML_CHECK(loss && loss->op != Op::NONE && loss->type == Type::F32 && loss->nelements() == 1, loss,
             "autodiff: the loss must be an F32 scalar computed by the graph");
  const std::vector<Tensor*> nodes = g.nodes();  // the forward part; expanding below appends
  const auto at = std::find(nodes.begin(), nodes.end(), loss);
  GGML_CHECK(at != nodes.end(), loss, "autodiff: the loss is not a node of the graph (expand it first)");

  BackwardContext c{ctx, {}, {}, opt.bf16_products, opt.bf16_attention, opt.int8_products};
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
  for (Tensor* n : nodes)  // the forward's products as the backward's
    if (n->op == Op::MUL_MAT && n->src[0]->type == Type::F32 &&
        ((opt.bf16_products && !c.wants(n->src[0])) || (opt.bf16_attention && computed(n->src[0]) && computed(n->src[1]))))
      n->op_params[MM_BF16_PARAM] = 1;

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
    out.grads.push_back({p, gr});
  }
  std::vector<Tensor*> roots;
  for (const auto& pg : out.grads) roots.push_back(pg.second);
  const std::unordered_set<const Tensor*> keep(opt.checkpoints.begin(), opt.checkpoints.end());
  if (!keep.empty()) recompute_from(ctx, nodes, keep, roots);
  if (opt.bf16_activations) store_bf16(ctx, g, nodes, keep, roots);
  mark_late(nodes, roots, out.seed);
  // Expanded in the order their gradients complete (the parameter read last
  // by the forward pass first): each weight's gradient is then made as soon
  // as its layer's backward pass has run, and what it reads is freed, not
  // kept to the end for a parameter expanded later.
  std::unordered_map<const Tensor*, size_t> last_read;
  for (size_t i = 0; i < nodes.size(); i++)
    for (const Tensor* s : nodes[i]->src)
      if (s && (s->flags & FLAG_PARAM)) last_read[s] = i;
  std::vector<std::pair<Tensor*, Tensor*>> order = out.grads;
  std::stable_sort(order.begin(), order.end(),
                   [&](const auto& a, const auto& b) { return last_read[a.first] > last_read[b.first]; });
  for (const auto& pg : order) g.expand(pg.second);
  if (opt.bf16_activations) g.rebuild();  // the forward was ordered before its bf16 copies followed it
  return out;
}

BackwardMemory backward_memory(const Graph& g, const Tensor* loss) {
  const auto& nodes = g.nodes();
  std::unordered_map<const Tensor*, size_t> at, last;
  auto base = [](const Tensor* t) { return t->view_src ? t->view_src : t; };
  for (size_t i = 0; i < nodes.size(); i++) {
    at[nodes[i]] = i;
    for (const Tensor* s : nodes[i]->src)
      if (s) last[base(s)] = i;
  }
  BackwardMemory m;
  const auto li = at.find(loss);
  const size_t end = li == at.end() ? nodes.size() : li->second;
  std::vector<std::pair<size_t, int64_t>> events;  // (position, +-bytes) of recomputed results
  for (size_t i = 0; i < nodes.size(); i++) {
    const Tensor* t = nodes[i];
    if (t->view_src || op_is_view(t->op)) continue;
    const size_t bytes = t->nbytes();
    if (t->flags & FLAG_OUTPUT) {
      if (t != loss) m.gradients += bytes;
      continue;
    }
    const auto lu = last.find(t);
    const size_t until = lu == last.end() ? i : lu->second;
    if (i < end && until > end) m.kept += bytes;
    if (t->flags & FLAG_RECOMPUTE) {
      events.push_back({i, int64_t(bytes)});
      events.push_back({until + 1, -int64_t(bytes)});
    }
  }
  std::sort(events.begin(), events.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second < b.second;  // frees before allocations
  });
  int64_t live = 0;
  for (const auto& [pos, d] : events) m.recompute = size_t(std::max<int64_t>(int64_t(m.recompute), live += d));
  return m;
}

}  // namespace ggml
