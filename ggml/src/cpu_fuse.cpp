// The CPU backend's fusion pass. Architectures build plain ops; for one
// token, where every node costs a barrier between threads and a one-row norm
// runs on one thread, this pass rewrites neighbours into the fused nodes the
// CPU kernels have, each giving the floats of the nodes it replaces:
//  - products of one activation row with weights that are adjacent row
//    ranges of one matrix (LLaMA's q, k and v as the loader holds them) into
//    one product, the parts views of it;
//  - silu_mul of two such products into one gated product (SwiGLU);
//  - an RMS norm into every product that reads it;
//  - a residual (or bias) add into the product it adds;
//  - the rope of q and of k, adjacent in one buffer, into one rope.
// Nodes are rewritten in place (their readers keep their pointers); nodes
// nothing reads any more fall out when the graph is ordered again.
#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

#include "ggml/cpu.h"
#include "ggml/graph.h"
#include "ggml/ops.h"

namespace ggml::cpu {

namespace {

using Uses = std::unordered_map<const Tensor*, std::vector<Tensor*>>;

Uses uses_of(const Graph& g) {
  Uses u;
  for (Tensor* n : g.nodes())
    for (Tensor* s : n->src)
      if (s) u[s].push_back(n);
  return u;
}

size_t n_uses(const Uses& u, const Tensor* t) {
  auto it = u.find(t);
  return it == u.end() ? 0 : it->second.size();
}

// n takes over r's computation (r is a tensor the pass just built); n keeps
// its name, flags and readers.
void become(Tensor* n, const Tensor* r) {
  n->type = r->type;
  n->layout = r->layout;
  for (int i = 0; i < MAX_DIMS; i++) n->ne[i] = r->ne[i], n->nb[i] = r->nb[i];
  n->op = r->op;
  std::copy(std::begin(r->op_params), std::end(r->op_params), std::begin(n->op_params));
  std::copy(std::begin(r->src), std::end(r->src), std::begin(n->src));
  n->view_src = r->view_src;
  n->view_offs = r->view_offs;
  n->data = nullptr;
}

// The nodes this pass may rewrite or absorb (all, unless the graph is split
// with a device: then the CPU's). Set by fuse() for its steps.
thread_local const std::function<bool(const Tensor*)>* g_mine = nullptr;
bool mine(const Tensor* t) { return !g_mine || !*g_mine || (*g_mine)(t); }

bool one_row(const Tensor* b) { return b->ne[1] == 1 && b->ne[2] == 1 && b->ne[3] == 1; }
bool matrix(const Tensor* a) { return a->ne[2] == 1 && a->ne[3] == 1 && a->rows_contiguous(); }
bool inner(const Tensor* t) { return !(t->flags & FLAG_OUTPUT) && mine(t); }
// A product of a 2-D weight matrix with one activation row, nothing fused yet.
bool plain_product(const Tensor* m) {
  return m->op == Op::MUL_MAT && m->op_params[0] == 0 && matrix(m->src[0]) && one_row(m->src[1]) &&
         m->src[1]->type == Type::F32;
}

// A view's root is never a view (the planner relies on it): views of nodes
// the pass turned into views move to the root.
void normalize_views(Graph& g) {
  for (Tensor* n : g.nodes()) {
    if (n->view_src && n->view_src->view_src) {
      n->view_offs += n->view_src->view_offs;
      n->view_src = n->view_src->view_src;
    }
  }
}

bool merge_adjacent_products(Graph& g, Context& ctx) {
  bool changed = false;
  // (activations, root, type, row length, row stride) -> products
  std::map<std::tuple<const Tensor*, const Tensor*, Type, int64_t, size_t>, std::vector<Tensor*>> groups;
  for (Tensor* m : g.nodes()) {
    if (!plain_product(m) || !inner(m)) continue;
    const Tensor* w = m->src[0];
    if (w->op != Op::VIEW || !w->view_src || w->view_src->op != Op::NONE) continue;
    if (w->nb[1] != row_size(w->type, w->ne[0])) continue;
    groups[{m->src[1], w->view_src, w->type, w->ne[0], w->nb[1]}].push_back(m);
  }
  for (auto& [key, ms] : groups) {
    if (ms.size() < 2) continue;
    std::sort(ms.begin(), ms.end(), [](Tensor* a, Tensor* b) { return a->src[0]->view_offs < b->src[0]->view_offs; });
    const size_t nb1 = std::get<4>(key);
    for (size_t i = 0; i < ms.size();) {
      size_t j = i + 1;
      int64_t rows = ms[i]->src[0]->ne[1];
      while (j < ms.size() && ms[j]->src[0]->view_offs == ms[i]->src[0]->view_offs + size_t(rows) * nb1)
        rows += ms[j++]->src[0]->ne[1];
      if (j - i >= 2) {
        Tensor* root = const_cast<Tensor*>(std::get<1>(key));
        Tensor* w = view_2d(ctx, root, std::get<3>(key), rows, nb1, ms[i]->src[0]->view_offs);
        Tensor* p = mul_mat(ctx, w, ms[i]->src[1]);
        int64_t at = 0;
        for (size_t k = i; k < j; k++) {
          become(ms[k], view_2d(ctx, p, ms[k]->ne[0], 1, p->nb[1], size_t(at) * sizeof(float)));
          changed = true;
          at += ms[k]->ne[0];
        }
      }
      i = j;
    }
  }
  return changed;
}

bool fuse_swiglu(Graph& g, Context& ctx) {
  bool changed = false;
  const Uses u = uses_of(g);
  for (Tensor* s : g.nodes()) {
    if (s->op != Op::SILU_MUL || !mine(s)) continue;
    Tensor *gate = s->src[0], *up = s->src[1];
    if (gate == up || !plain_product(gate) || !plain_product(up) || !inner(gate) || !inner(up)) continue;
    if (n_uses(u, gate) != 1 || n_uses(u, up) != 1 || gate->src[1] != up->src[1]) continue;
    const Tensor *a = gate->src[0], *b = up->src[0];
    if (a->type != b->type || a->layout != b->layout || a->ne[0] != b->ne[0] || a->ne[1] != b->ne[1]) continue;
    MatMulFusion f;
    f.up = up->src[0];
    become(s, mul_mat_fused(ctx, gate->src[0], gate->src[1], f));
    changed = true;
  }
  return changed;
}

bool fuse_norms(Graph& g, Context& ctx) {
  bool changed = false;
  const Uses u = uses_of(g);
  for (Tensor* r : g.nodes()) {
    if (r->op != Op::RMS_NORM || !inner(r) || !one_row(r) || r->src[0]->nb[0] != sizeof(float)) continue;
    auto it = u.find(r);
    if (it == u.end()) continue;
    bool all = true;
    for (const Tensor* c : it->second) {
      const int32_t fl = c->op == Op::MUL_MAT ? c->op_params[0] : -1;
      all = all && (fl == 0 || fl == MM_GLU) && c->src[1] == r && matrix(c->src[0]) && mine(c);
    }
    if (!all) continue;
    for (Tensor* c : it->second) {
      MatMulFusion f;
      f.norm = true;
      f.eps = op_param_f32(r, 0);
      f.norm_w = r->src[1];
      if (c->op_params[0] == MM_GLU) f.up = c->src[2];
      become(c, mul_mat_fused(ctx, c->src[0], r->src[0], f));
      changed = true;
    }
  }
  return changed;
}

bool fuse_adds(Graph& g, Context& ctx) {
  bool changed = false;
  const Uses u = uses_of(g);
  for (Tensor* d : g.nodes()) {
    if (d->op != Op::ADD || !mine(d)) continue;
    for (int side = 0; side < 2; side++) {
      Tensor *m = d->src[side], *o = d->src[1 - side];
      if (!plain_product(m) || !inner(m) || n_uses(u, m) != 1 || o == m) continue;
      if (o->type != Type::F32 || o->nb[0] != sizeof(float)) continue;
      if (!std::equal(std::begin(o->ne), std::end(o->ne), std::begin(m->ne))) continue;
      MatMulFusion f;
      f.add = o;
      become(d, mul_mat_fused(ctx, m->src[0], m->src[1], f));
      changed = true;
      break;
    }
  }
  return changed;
}

bool merge_ropes(Graph& g, Context& ctx) {
  bool changed = false;
  // (buffer, positions, parameters) -> ropes of one token's heads in that buffer
  using Key = std::tuple<const Tensor*, const Tensor*, int32_t, int32_t, int32_t, int32_t>;
  std::map<Key, std::vector<Tensor*>> groups;
  for (Tensor* r : g.nodes()) {
    if (r->op != Op::ROPE || !inner(r)) continue;
    const Tensor* v = r->src[0];
    if (!v->view_src || v->ne[2] != 1 || v->ne[3] != 1 || !v->is_contiguous()) continue;
    const Tensor* p = v->view_src;
    if (p->type != Type::F32 || !one_row(p)) continue;
    groups[{p, r->src[1], r->op_params[0], r->op_params[1], r->op_params[2], r->op_params[3]}].push_back(r);
  }
  for (auto& [key, rs] : groups) {
    if (rs.size() != 2) continue;
    std::sort(rs.begin(), rs.end(), [](Tensor* a, Tensor* b) { return a->src[0]->view_offs < b->src[0]->view_offs; });
    Tensor *a = rs[0], *b = rs[1];
    const int64_t hd = a->ne[0];
    if (b->ne[0] != hd || b->src[0]->view_offs != a->src[0]->view_offs + a->src[0]->nbytes()) continue;
    Tensor* p = const_cast<Tensor*>(std::get<0>(key));
    const size_t es = sizeof(float);
    Tensor* both = view_3d(ctx, p, hd, a->ne[1] + b->ne[1], 1, size_t(hd) * es, p->nb[1], a->src[0]->view_offs);
    Tensor* rot = rope(ctx, both, a->src[1], a->op_params[0], RopeMode(a->op_params[1]), op_param_f32(a, 2),
                       op_param_f32(a, 3));
    become(a, view_3d(ctx, rot, hd, a->ne[1], 1, size_t(hd) * es, rot->nb[2], 0));
    become(b, view_3d(ctx, rot, hd, b->ne[1], 1, size_t(hd) * es, rot->nb[2], size_t(a->ne[1] * hd) * es));
    changed = true;
  }
  return changed;
}

void reorder(Graph& g) {
  g.rebuild();
  normalize_views(g);
}

}  // namespace

void fuse(Graph& g, Context& ctx, const std::function<bool(const Tensor*)>& only) {
  g_mine = &only;
  struct Reset {
    ~Reset() { g_mine = nullptr; }
  } reset;
  // Each step sees the graph as the previous one left it: ordered again
  // (and its views at their roots) only where a step changed something, so
  // a prompt's graph, which has nothing to fuse, costs five scans.
  for (bool (*step)(Graph&, Context&) : {merge_adjacent_products, fuse_swiglu, fuse_norms, fuse_adds, merge_ropes})
    if (step(g, ctx)) reorder(g);
}

}  // namespace ggml::cpu
