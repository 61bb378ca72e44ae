#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <algorithm>

#include "compute.h"
#include "ggml/graph.h"

namespace ggml {

void ComputeParams::barrier() const {
  if (nth > 1) {
#pragma omp barrier
  }
}

size_t work_size(const Tensor* node, int nth, const cpu::KernelSet& k) {
  switch (node->op) {
    case Op::MUL_MAT: return mul_mat_work_size(node, nth, k);
    case Op::CPY:
    case Op::CONT:
      // one F32 row per thread for conversions; flat copies convert 4096 at a time
      return size_t(nth) * (size_t(std::max<int64_t>(node->src[0]->ne[0], 4096)) + 64) * sizeof(float);
    default: return 0;
  }
}

void compute_forward(const ComputeParams& p, Tensor* node) {
  switch (node->op) {
    case Op::CPY:
    case Op::CONT: compute_copy(p, node); break;
    case Op::ADD: compute_add(p, node); break;
    case Op::MUL: compute_mul(p, node); break;
    case Op::SCALE: compute_scale(p, node); break;
    case Op::GET_ROWS: compute_get_rows(p, node); break;
    case Op::MUL_MAT: compute_mul_mat(p, node); break;
    case Op::RMS_NORM: compute_rms_norm(p, node); break;
    case Op::NORM: compute_norm(p, node); break;
    case Op::ROPE: compute_rope(p, node); break;
    case Op::SOFT_MAX: compute_soft_max(p, node); break;
    case Op::SILU:
    case Op::GELU:
    case Op::GELU_ERF:
    case Op::SILU_MUL: compute_unary(p, node); break;
    case Op::NONE:
    case Op::VIEW:
    case Op::RESHAPE:
    case Op::PERMUTE:
    case Op::TRANSPOSE:
    case Op::COUNT_: break;
  }
}

Executor::Executor(int n_threads, const cpu::KernelSet* kernels) : k_(kernels ? kernels : &cpu::best()) {
  set_threads(n_threads);
}

// GGML_PROFILE=1: wall time per op kind (including the barrier after it),
// printed to stderr at exit. Matrix products are split by weight type, by
// single-row (generation) versus multi-row (prompt) activations, and by shape.
namespace {
struct Profile {
  std::map<std::string, std::pair<double, long>> t;
  std::mutex mu;
  ~Profile() {
    if (t.empty()) return;
    double total = 0;
    for (const auto& [k, v] : t) total += v.first;
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [k, v] : t) rows.push_back({v.first, k});
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "ggml profile (%.3f s in graph nodes):\n", total);
    for (const auto& [sec, k] : rows)
      std::fprintf(stderr, "  %-28s %9.3f ms %5.1f%%  %8ld calls\n", k.c_str(), sec * 1e3, 100 * sec / total, t[k].second);
  }
};
Profile& profile() {
  static Profile p;
  return p;
}
}  // namespace

bool profiling() {
  static const bool on = [] {
    const char* e = std::getenv("GGML_PROFILE");
    return e && *e && *e != '0';
  }();
  return on;
}

void profile_add(const Tensor* n, double sec) {
  std::string k = op_name(n->op);
  if (n->op == Op::MUL_MAT) {
    // by weight type, generation or prompt, and weight shape K x M x batches
    const Tensor* a = n->src[0];
    k += std::string(" ") + type_name(a->type) + (n->src[1]->ne[1] == 1 ? " n=1 " : " n>1 ") +
         std::to_string(a->ne[0]) + "x" + std::to_string(a->ne[1]) + "x" + std::to_string(a->ne[2]);
    const int32_t f = n->op_params[0];
    if (f & MM_NORM) k += " +norm";
    if (f & MM_GLU) k += " +swiglu";
    if (f & MM_ADD) k += " +add";
  }
  profile_add_named(k, sec);
}

void profile_add_named(const std::string& k, double sec) {
  Profile& p = profile();
  std::lock_guard<std::mutex> lock(p.mu);
  auto& e = p.t[k];
  e.first += sec;
  e.second++;
}

void Executor::set_threads(int n) {
  if (n < 1 || n > 512) fail("thread count " + std::to_string(n) + " out of range (1 to 512)");
  n_threads_ = n;
}

void Executor::compute(Graph& g) {
  for (const Tensor* l : g.leafs()) GGML_CHECK(l->data != nullptr, l, "leaf has no data (set it or allocate it)");
  size_t ws = 0;
  for (Tensor* n : g.nodes()) {
    if (n->view_src) {
      GGML_CHECK(n->view_src->data != nullptr, n->view_src, "viewed tensor has no data");
      n->data = static_cast<char*>(n->view_src->data) + n->view_offs;
    }
    GGML_CHECK(n->data != nullptr, n, std::string(op_name(n->op)) + " result has no memory (run GraphAllocator first)");
    ws = std::max(ws, ggml::work_size(n, n_threads_, *k_));
  }
  if (ws > work_.size()) work_.resize(ws + 64);

  ErrorSink err;
  const auto& nodes = g.nodes();
  const int nth = n_threads_;
  // Two sets of work counters, nodes alternating between them: a thread
  // zeroes its counter of the next node's set once it is done with the
  // current node (nobody uses that set until the barrier).
  std::vector<Claim> claims(2 * size_t(nth));
#pragma omp parallel num_threads(nth)
  {
    ComputeParams p;
    p.ith = omp_get_thread_num();
    p.nth = omp_get_num_threads();  // the runtime may give fewer threads
    p.wdata = work_.data();
    p.wsize = work_.size();
    p.k = k_;
    p.err = &err;
    const bool prof = profiling() && p.ith == 0;
    int set = 0;
    for (Tensor* n : nodes) {
      if (op_is_view(n->op)) continue;
      const auto t0 = prof ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      p.claims = &claims[size_t(set) * size_t(p.nth)];
      compute_forward(p, n);
      set ^= 1;
      claims[size_t(set) * size_t(p.nth) + size_t(p.ith)].n.store(0, std::memory_order_relaxed);
      p.barrier();
      if (prof) profile_add(n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  if (err.set) fail(err.msg);
}

}  // namespace ggml
