// The scheduler: which backend computes each node, and the copies between
// them. With the CPU alone every node is its; with a device backend first
// (CUDA), placement follows memory: a node that reads a device tensor (a
// weight or KV cache of an offloaded layer) runs there, a node fed by device
// results runs there too where the device computes it, and a product with a
// host weight stays on the host (its weight is never copied per compute).
#include <unordered_set>

#include "ggml/backend.h"
#include "ggml/graph.h"

namespace ggml {

namespace {
const Tensor* root_of(const Tensor* t) { return t->view_src ? t->view_src : t; }
bool device_leaf(const Tensor* r) { return r->op == Op::NONE && (r->flags & FLAG_DEVICE); }
bool host_leaf(const Tensor* r) { return r->op == Op::NONE && !(r->flags & FLAG_DEVICE); }
// Ops whose first source is a weight matrix (or a cache): they run where it is.
bool weight_op(Op op) { return op == Op::MUL_MAT || op == Op::MUL_MAT_T || op == Op::GET_ROWS; }
}  // namespace

Scheduler::Scheduler(std::vector<std::shared_ptr<Backend>> backends) : backends_(std::move(backends)) {
  if (backends_.empty()) fail("scheduler: no backend");
  if (!backends_.back()->host_memory()) fail("scheduler: the last backend must be the host's (the CPU)");
  if (backends_.size() > 2) fail("scheduler: one device backend at most");
}

void Scheduler::plan(Graph& g, Context& ctx) {
  const uint8_t cpu = uint8_t(backends_.size() - 1);
  placed_.assign(backends_.size(), 0);
  if (backends_.size() == 1) {
    for (Tensor* n : g.nodes()) {
      GGML_CHECK(backends_.front()->supports(n), n, "no backend computes " + std::string(op_name(n->op)) + " here");
      n->backend = 0;
    }
    backends_.front()->optimize(g, ctx);
    for (const Tensor* n : g.nodes()) placed_[0] += !op_is_view(n->op);
    return;
  }
  size_t on_dev = place(g);
  // The CPU's fusion pass rewrites nodes for its kernels, which a device
  // would then have to compute: on a split graph it rewrites the CPU's part
  // alone, and the rewritten graph is placed again.
  if (on_dev == 0) {
    backends_.back()->optimize(g, ctx);
    for (Tensor* n : g.nodes()) n->backend = cpu;  // its new nodes too
  } else {
    // The device's nodes as placed now; what the pass makes is the CPU's.
    std::unordered_set<const Tensor*> device;
    for (const Tensor* n : g.nodes())
      if (n->backend != cpu) device.insert(n);
    backends_.back()->optimize_part(g, ctx, [&device](const Tensor* t) { return device.count(t) == 0; });
    on_dev = place(g);
  }
  size_t computed = 0;
  for (const Tensor* n : g.nodes()) computed += !op_is_view(n->op);
  placed_[0] = on_dev;
  placed_[cpu] = computed - on_dev;
}

size_t Scheduler::place(Graph& g) {
  const uint8_t cpu = uint8_t(backends_.size() - 1);
  Backend& dev = *backends_.front();
  size_t on_dev = 0;
  for (Tensor* n : g.nodes()) {
    if (op_is_view(n->op)) {  // computes nothing: goes with its memory
      const Tensor* r = root_of(n);
      n->backend = r->op == Op::NONE ? (device_leaf(r) ? 0 : cpu) : r->backend;
      continue;
    }
    bool want = false, pinned = false;  // pinned: reads or writes device memory
    for (const Tensor* s : n->src) {
      if (!s) continue;
      const Tensor* r = root_of(s);
      if (device_leaf(r)) want = pinned = true;
      else if (r->op != Op::NONE && r->backend != cpu) want = true;
    }
    if (n->view_src) {  // writes into its root (CPY into a cache)
      if (device_leaf(n->view_src)) want = pinned = true;
      else if (host_leaf(n->view_src)) want = false;
    }
    if (!pinned && weight_op(n->op) && host_leaf(root_of(n->src[0]))) want = false;
    if (want && !dev.supports(n)) {
      GGML_CHECK(!pinned, n,
                 "reads " + dev.name() + " memory, but that backend does not compute " + op_name(n->op) + " " +
                     n->shape_str() + (n->src[0] ? " of " + n->src[0]->shape_str() : std::string()));
      want = false;
    }
    n->backend = want ? 0 : cpu;
    on_dev += want;
  }
  return on_dev;
}

void Scheduler::compute(Graph& g) {
  copies_ = 0;
  const uint8_t cpu = uint8_t(backends_.size() - 1);
  const auto& nodes = g.nodes();
  bool split = false;  // decided per graph: the last plan() may have been another's
  if (backends_.size() > 1)
    for (const Tensor* n : nodes)
      if (!op_is_view(n->op) && n->backend != cpu) {
        split = true;
        break;
      }
  if (!split) {
    backends_.back()->compute(g);
    return;
  }
  for (Tensor* n : nodes) {
    if (n->view_src) {
      GGML_CHECK(n->view_src->data != nullptr, n->view_src, "viewed tensor has no data");
      n->data = static_cast<char*>(n->view_src->data) + n->view_offs;
    }
  }
  for (auto& b : backends_) b->begin_compute();
  std::unordered_set<const Tensor*> moved;  // roots copied to the other side in this compute
  moved.reserve(64);
  std::vector<Tensor*> part;
  bool device_busy = false;  // device work (or copies) queued since the last wait
  size_t i = 0;
  while (i < nodes.size()) {
    while (i < nodes.size() && op_is_view(nodes[i]->op)) i++;
    if (i == nodes.size()) break;
    const uint8_t b = nodes[i]->backend;
    part.clear();
    for (; i < nodes.size(); i++) {
      if (op_is_view(nodes[i]->op)) continue;
      if (nodes[i]->backend != b) break;
      part.push_back(nodes[i]);
    }
    for (const Tensor* n : part) {
      for (const Tensor* s : n->src) {
        if (!s) continue;
        const Tensor* r = root_of(s);
        if (b != cpu) {
          const bool elsewhere = r->op == Op::NONE ? !(r->flags & FLAG_DEVICE) : r->backend != b;
          if (elsewhere && moved.insert(r).second) backends_[b]->to_device(r), copies_++;
        } else if (r->op != Op::NONE && r->backend != cpu && moved.insert(r).second) {
          backends_[r->backend]->to_host(r);
          copies_++;
        }
      }
    }
    // The host computes only once the device is done: with what it copies
    // back, and with host memory a queued copy to the device still reads.
    if (b == cpu && device_busy) {
      for (size_t d = 0; d < cpu; d++) backends_[d]->synchronize();
      device_busy = false;
    }
    backends_[b]->compute_nodes(g, part);
    device_busy = device_busy || b != cpu;
  }
  for (const Tensor* n : nodes) {
    if (op_is_view(n->op) || n->backend == cpu || !(n->flags & FLAG_OUTPUT)) continue;
    if (n->view_src && (n->view_src->flags & FLAG_DEVICE)) continue;  // written into device memory
    if (moved.insert(n).second) backends_[n->backend]->to_host(n), copies_++;
  }
  for (size_t d = 0; d < cpu; d++) backends_[d]->synchronize();
  if (profiling())
    for (size_t c = 0; c < copies_; c++) profile_add_named("scheduler: a value copied between backends", 0.0);
}

void Scheduler::set_abort(const std::function<bool()>& f) {
  for (auto& b : backends_) b->set_abort(f);
}

}  // namespace ggml
