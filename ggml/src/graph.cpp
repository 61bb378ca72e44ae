#include <sstream>

#include "ggml/graph.h"

namespace ggml {

void Graph::visit(Tensor* t) {
  // Iterative post-order DFS: deep graphs (many layers) must not overflow the stack.
  struct Frame { Tensor* t; int next; };
  std::vector<Frame> stack{{t, 0}};
  if (!seen_.insert(t).second) return;
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < MAX_SRC) {
      Tensor* s = f.t->src[f.next++];
      if (s && seen_.insert(s).second) stack.push_back({s, 0});
      continue;
    }
    Tensor* done = f.t;
    stack.pop_back();
    (done->op == Op::NONE ? leafs_ : nodes_).push_back(done);
  }
}

void Graph::expand(Tensor* t) {
  GGML_CHECK(t != nullptr, nullptr, "graph: null tensor");
  t->flags |= FLAG_OUTPUT;
  visit(t);
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
