#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "compute.h"
#include "thread_pool.h"
#include "ggml/graph.h"

namespace ggml {

void ComputeParams::barrier() const {
  if (nth > 1) pool->barrier();
}

namespace {
// The CPU backend's entry for each op: its kernel and the shared work memory
// it needs with nth threads (none where null). Views compute nothing. One
// row per op, in Op's order (checked below), so a new op is one line here.
struct CpuOp {
  Op op;
  void (*forward)(const ComputeParams&, Tensor*);
  size_t (*work)(const Tensor*, int nth, const cpu::KernelSet&);
};

size_t copy_work(const Tensor* node, int nth, const cpu::KernelSet&) {
  // one F32 row per thread for conversions; flat copies convert 4096 at a time
  return size_t(nth) * (size_t(std::max<int64_t>(node->src[0]->ne[0], 4096)) + 64) * sizeof(float);
}

constexpr CpuOp kCpuOps[] = {
    {Op::NONE, nullptr, nullptr},
    {Op::CPY, compute_copy, copy_work},
    {Op::CONT, compute_copy, copy_work},
    {Op::ADD, compute_add, nullptr},
    {Op::MUL, compute_mul, nullptr},
    {Op::SCALE, compute_scale, nullptr},
    {Op::GET_ROWS, compute_get_rows, nullptr},
    {Op::MUL_MAT, compute_mul_mat, mul_mat_work_size},
    {Op::RMS_NORM, compute_rms_norm, nullptr},
    {Op::NORM, compute_norm, nullptr},
    {Op::ROPE, compute_rope, nullptr},
    {Op::SOFT_MAX, compute_soft_max, nullptr},
    {Op::SILU, compute_unary, nullptr},
    {Op::GELU, compute_unary, nullptr},
    {Op::GELU_ERF, compute_unary, nullptr},
    {Op::SILU_MUL, compute_unary, nullptr},
    {Op::VIEW, nullptr, nullptr},
    {Op::RESHAPE, nullptr, nullptr},
    {Op::PERMUTE, nullptr, nullptr},
    {Op::TRANSPOSE, nullptr, nullptr},
    {Op::SUM_TO, compute_sum_to, nullptr},
    {Op::ACC, compute_acc, nullptr},
    {Op::MUL_MAT_T, compute_mul_mat_t, mul_mat_t_work_size},
    {Op::GET_ROWS_BACK, compute_get_rows_back, nullptr},
    {Op::RMS_NORM_BACK, compute_rms_norm_back, nullptr},
    {Op::NORM_BACK, compute_norm_back, nullptr},
    {Op::SOFT_MAX_BACK, compute_soft_max_back, nullptr},
    {Op::SILU_BACK, compute_act_back, nullptr},
    {Op::GELU_BACK, compute_act_back, nullptr},
    {Op::CROSS_ENTROPY, compute_cross_entropy, cross_entropy_work_size},
    {Op::CROSS_ENTROPY_BACK, compute_cross_entropy_back, nullptr},
    {Op::SUM_SQ, compute_sum_sq, sum_sq_work_size},
    {Op::OPT_ADAMW, compute_opt_adamw, nullptr},
    {Op::OPT_ADAMW8, compute_opt_adamw8, nullptr},
    {Op::OPT_SGD, compute_opt_sgd, nullptr},
};
static_assert(sizeof(kCpuOps) / sizeof(kCpuOps[0]) == size_t(Op::COUNT_), "a CPU entry for every op");
constexpr bool in_order() {
  for (size_t i = 0; i < size_t(Op::COUNT_); i++)
    if (size_t(kCpuOps[i].op) != i) return false;
  return true;
}
static_assert(in_order(), "kCpuOps rows in Op's order");
}  // namespace

size_t work_size(const Tensor* node, int nth, const cpu::KernelSet& k) {
  const CpuOp& c = kCpuOps[size_t(node->op)];
  return c.work ? c.work(node, nth, k) : 0;
}

void compute_forward(const ComputeParams& p, Tensor* node) {
  if (const auto f = kCpuOps[size_t(node->op)].forward) f(p, node);
}

// The team size, adapted to the machine: no more threads than the cores
// other programs leave free. Every 100 ms the executor reads how much CPU
// the rest of the machine used (/proc/stat's busy time, niced processes
// left out since they yield to us anyway, less this process's own time) and
// runs a compute on min(threads, cores - that, rounded), at least one. A
// team of two on a machine where another program holds a core waits at each
// of a token's hundreds of barriers for the thread that is not running (one
// thread was 1.5x faster); timing probes of the other team size cost a whole
// slow compute each, which this measurement does not. Results never depend
// on the team size. GGML_ADAPT_THREADS=0 turns it off.
struct Executor::Adapt {
  using Clock = std::chrono::steady_clock;
  Clock::time_point last{};
  uint64_t last_busy = 0;
  double last_self = 0, others = 0;
  int cores = 0;
  bool have = false;

  static bool enabled() {
    static const bool on = [] {
      const char* e = std::getenv("GGML_ADAPT_THREADS");
      return !(e && *e == '0');
    }();
    return on;
  }
  // Busy jiffies of all CPUs but niced time; false without /proc/stat.
  static bool read_busy(uint64_t* busy) {
    std::FILE* f = std::fopen("/proc/stat", "r");
    if (!f) return false;
    unsigned long long v[8] = {};
    const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                              &v[5], &v[6], &v[7]);
    std::fclose(f);
    if (n < 8) return false;
    *busy = v[0] + v[2] + v[5] + v[6] + v[7];  // user, system, irq, softirq, steal
    return true;
  }
  static double self_cpu() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
  }
  void sample() {
    const auto now = Clock::now();
    if (have && now - last < std::chrono::milliseconds(100)) return;
    uint64_t busy;
    if (!read_busy(&busy)) return;
    const double self = self_cpu();
    if (have) {
      const double wall = std::chrono::duration<double>(now - last).count();
      const double jiffy = 1.0 / double(sysconf(_SC_CLK_TCK));
      others = std::max(0.0, (double(busy - last_busy) * jiffy - (self - last_self)) / wall);
    } else {
      cores = int(sysconf(_SC_NPROCESSORS_ONLN));
    }
    have = true;
    last = now;
    last_busy = busy;
    last_self = self;
  }
  int team(int n) {
    if (n == 1 || !enabled()) return n;
    sample();
    if (!have || cores <= 0) return n;
    return std::max(1, std::min(n, cores - int(std::lround(others))));
  }
};

Executor::Executor(int n_threads, const cpu::KernelSet* kernels)
    : k_(kernels ? kernels : &cpu::best()), pool_(std::make_unique<ThreadPool>()), adapt_(std::make_unique<Adapt>()) {
  set_threads(n_threads);
}

Executor::~Executor() = default;

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
    k += std::string(" ") + type_name(cpu::format_of(a->type, a->layout)) + (n->src[1]->ne[1] == 1 ? " n=1 " : " n>1 ") +
         std::to_string(a->ne[0]) + "x" + std::to_string(a->ne[1]) + "x" + std::to_string(a->ne[2]);
    const int32_t f = n->op_params[0];
    if (f & MM_NORM) k += " +norm";
    if (f & MM_GLU) k += " +swiglu";
    if (f & MM_ADD) k += " +add";
  }
  if (n->op == Op::MUL_MAT_T) {
    const Tensor* a = n->src[0];
    k += std::string(" ") + type_name(cpu::format_of(a->type, a->layout)) + " " + std::to_string(a->ne[0]) + "x" +
         std::to_string(a->ne[1]) + "x" + std::to_string(a->ne[2]) + " n=" + std::to_string(n->src[1]->ne[1]);
  }
  if (n->op == Op::CONT) {
    // by conversion, and whether the source is a plain copy or a strided gather
    const Tensor* a = n->src[0];
    k += std::string(" ") + type_name(a->type) + "->" + type_name(n->type) + (a->is_contiguous() ? " contiguous" : " strided");
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

size_t Executor::work_size(const Graph& g) const {
  size_t ws = 0;
  for (const Tensor* n : g.nodes()) ws = std::max(ws, ggml::work_size(n, n_threads_, *k_));
  return std::max(work_.size(), ws + 64);
}

void Executor::compute(Graph& g, const std::function<bool()>* abort, const std::vector<Tensor*>* part) {
  for (const Tensor* l : g.leafs()) GGML_CHECK(l->data != nullptr, l, "leaf has no data (set it or allocate it)");
  for (Tensor* n : g.nodes()) {
    if (n->view_src) {
      GGML_CHECK(n->view_src->data != nullptr, n->view_src, "viewed tensor has no data");
      n->data = static_cast<char*>(n->view_src->data) + n->view_offs;
    }
    GGML_CHECK(n->data != nullptr, n, std::string(op_name(n->op)) + " result has no memory (run GraphAllocator first)");
  }
  const size_t ws = work_size(g);
  if (ws > work_.size()) work_.resize(ws);

  ErrorSink err;
  const auto& nodes = part ? *part : g.nodes();
  const int nth = adapt_->team(n_threads_);
  last_team_ = nth;
  // Two sets of work counters, nodes alternating between them: a thread
  // zeroes its counter of the next node's set once it is done with the
  // current node (nobody uses that set until the barrier).
  std::vector<Claim> claims(2 * size_t(nth));
  // Written by thread 0 before a node's barrier, read by all after it; two,
  // alternating with the nodes, so that thread 0 deciding at the next node
  // cannot be seen by a thread still reading after this one's barrier.
  std::atomic<bool> stop[2] = {false, false};
  pool_->run(nth, [&](int ith) {
    ComputeParams p;
    p.ith = ith;
    p.nth = nth;
    p.pool = pool_.get();
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
      const int cur = set;
      set ^= 1;
      claims[size_t(set) * size_t(p.nth) + size_t(p.ith)].n.store(0, std::memory_order_relaxed);
      if (abort && p.ith == 0 && (*abort)()) stop[cur].store(true, std::memory_order_relaxed);
      p.barrier();
      if (prof) profile_add(n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (stop[cur].load(std::memory_order_relaxed)) break;
    }
  });
  if (err.set) fail(err.msg);
  if (stop[0].load() || stop[1].load()) throw Cancelled();
}

}  // namespace ggml
