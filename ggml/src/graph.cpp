#include <climits>
#include <sstream>

#include "ggml/graph.h"

namespace ggml {

void Graph::visit(Tensor* t) {
  // Iterative post-order DFS: deep graphs (many layers) must not overflow the
  // stack. Sources are visited in order, those marked FLAG_RECOMPUTE last.
  struct Frame { Tensor* t; int next; };
  std::vector<Frame> stack{{t, 0}};
  if (!seen_.insert(t).second) return;
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < 2 * MAX_SRC) {
      const int i = f.next++;
      Tensor* s = f.t->src[i % MAX_SRC];
      const bool late = s && (s->flags & FLAG_RECOMPUTE);
      if (s && late == (i >= MAX_SRC) && seen_.insert(s).second) stack.push_back({s, 0});
      continue;
    }
    Tensor* done = f.t;
    stack.pop_back();
    (done->op == Op::NONE ? leafs_ : nodes_).push_back(done);
    const auto [from, to] = followers_.equal_range(done);
    for (auto it = from; it != to; ++it)
      if (seen_.insert(it->second).second) stack.push_back({it->second, 0});
  }
}

void Graph::expand(Tensor* t) {
  GGML_CHECK(t != nullptr, nullptr, "graph: null tensor");
  t->flags |= FLAG_OUTPUT;
  roots_.push_back(t);
  visit(t);
}

void Graph::rebuild() {
  nodes_.clear();
  leafs_.clear();
  seen_.clear();
  for (Tensor* t : roots_) visit(t);
}

namespace {
int64_t& field_ref(Tensor* t, Field f, int64_t& scratch) {
  switch (f) {
    case Field::NE0: case Field::NE1: case Field::NE2: case Field::NE3: return t->ne[int(f)];
    case Field::VIEW_OFFS: scratch = int64_t(t->view_offs); return scratch;
    default: scratch = t->op_params[int(f) - int(Field::OP_PARAM0)]; return scratch;
  }
}
}  // namespace

int Graph::new_param(const std::string& name) {
  param_names_.push_back(name);
  param_values_.push_back(0);
  return int(param_names_.size()) - 1;
}

int64_t Graph::param(int id) const {
  GGML_CHECK(id >= 0 && size_t(id) < param_values_.size(), nullptr, "graph: no parameter " + std::to_string(id));
  return param_values_[size_t(id)];
}

void Graph::bind(int param, Tensor* t, Field f, int64_t scale, int64_t bias) {
  GGML_CHECK(param >= 0 && size_t(param) < param_names_.size(), t, "graph: bind to an unknown parameter");
  GGML_CHECK(f == Field::VIEW_OFFS ? t->view_src != nullptr : f < Field::VIEW_OFFS ? !op_is_view(t->op) || t->op == Op::VIEW : true,
             t, "graph: this field cannot follow a parameter");
  int64_t scratch;
  bindings_.push_back({param, t, f, scale, bias, field_ref(t, f, scratch)});
}

void Graph::set_param(int param, int64_t value) {
  GGML_CHECK(param >= 0 && size_t(param) < param_names_.size(), nullptr, "graph: no parameter " + std::to_string(param));
  // Checked in full before anything changes: a refused value leaves the graph as it was.
  for (const Binding& b : bindings_) {
    if (b.param != param) continue;
    const int64_t v = value * b.scale + b.bias;
    const bool ok = b.f >= Field::OP_PARAM0 ? v >= INT32_MIN && v <= INT32_MAX
                    : b.f == Field::VIEW_OFFS ? v >= 0 && v <= b.max
                                              : v >= 1 && v <= b.max;
    GGML_CHECK(ok, b.t, "graph: " + param_names_[size_t(param)] + " = " + std::to_string(value) +
                            " is outside what the graph was planned for");
  }
  param_values_[size_t(param)] = value;
  for (const Binding& b : bindings_) {
    if (b.param != param) continue;
    const int64_t v = value * b.scale + b.bias;
    if (b.f < Field::VIEW_OFFS) {
      b.t->ne[int(b.f)] = v;
      if (!b.t->view_src) set_contiguous_strides(b.t);
    } else if (b.f == Field::VIEW_OFFS) {
      b.t->view_offs = size_t(v);
    } else {
      b.t->op_params[int(b.f) - int(Field::OP_PARAM0)] = int32_t(v);
    }
  }
}

std::string Graph::dump() const {
  std::ostringstream s;
  for (size_t i = 0; i < nodes_.size(); i++) {
    const Tensor* n = nodes_[i];
    s << i << " " << op_name(n->op) << " " << n->shape_str();
    if (!n->name.empty()) s << " '" << n->name << "'";
    for (const Tensor* src : n->src) if (src) s << " <- " << (src->name.empty() ? op_name(src->op) : src->name.c_str());
    s << "\n";
  }
  return s.str();
}

}  // namespace ggml
