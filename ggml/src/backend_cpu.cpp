// The CPU backend: the executor, the kernel set chosen for this CPU, host
// memory, the fusion pass (cpu_fuse.cpp), and Q8_0/Q4_0/Q4_1 matrices
// rearranged into the 256-value blocks of its matrix-vector kernels.
#include <cstdlib>
#include <cstring>

#include "ggml/backend.h"
#include "ggml/cpu.h"
#include "ggml/quants.h"

namespace ggml {

namespace {

class HostBuffer : public Buffer {
 public:
  explicit HostBuffer(size_t n) : size_(n) {
    p_ = std::aligned_alloc(TENSOR_ALIGN, (std::max<size_t>(n, 1) + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN);
    if (!p_) fail("out of memory allocating a " + std::to_string(n) + "-byte buffer");
  }
  ~HostBuffer() override { std::free(p_); }
  void* base() override { return p_; }
  size_t size() const override { return size_; }

 private:
  void* p_;
  size_t size_;
};

class CpuBackend : public Backend {
 public:
  CpuBackend(int n_threads, const cpu::KernelSet& k) : k_(k), exec_(n_threads, &k) {}

  std::string name() const override { return std::string("cpu (") + k_.name + ")"; }
  bool host_memory() const override { return true; }
  bool supports_type(Type t) const override {
    return type_known(uint32_t(t)) && traits(t).to_float != nullptr;
  }
  bool supports(const Tensor*) const override { return true; }  // the reference: every op in every type
  std::unique_ptr<Buffer> alloc(size_t bytes) override { return host_buffer(bytes); }

  // Whether the kernel set has faster kernels for w rearranged (rows of
  // whole groups of 256; cpu::rearranged names the format).
  bool rearranges(const Tensor* w) const {
    if (w->layout != 0 || w->ne[0] % 256 != 0 || w->ne[2] != 1 || w->ne[3] != 1 || !w->is_contiguous()) return false;
    if (w->type == Type::Q8_0) return k_.prefers_q8_0r;
    return (w->type == Type::Q4_0 || w->type == Type::Q4_1) && k_.prefers_q4r;
  }
  size_t weight_layout_size(const Tensor* w) const override {
    return rearranges(w) ? w->nbytes() : 0;  // the same bytes, in another order
  }
  void prepare_weight(Tensor* w, const void* stored, void* dst) const override {
    GGML_CHECK(rearranges(w), w, "cpu backend: no layout of its own for this weight");
    const Type to = cpu::rearranged(w->type);
    auto repack = to == cpu::Q8_0R ? ref::repack_q8_0r : to == cpu::Q4_0R ? ref::repack_q4_0r : ref::repack_q4_1r;
    const size_t rb = row_size(w->type, w->ne[0]);
    const auto* src = static_cast<const char*>(stored);
    auto* out = static_cast<char*>(dst);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < w->ne[1]; r++) repack(src + size_t(r) * rb, out + size_t(r) * rb, w->ne[0]);
    w->layout = cpu::LAYOUT_R256;
    w->data = dst;
  }

  void optimize(Graph& g, Context& ctx) const override { cpu::fuse(g, ctx); }
  void optimize_part(Graph& g, Context& ctx, const std::function<bool(const Tensor*)>& mine) const override {
    cpu::fuse(g, ctx, mine);
  }
  void set_threads(int n) override { exec_.set_threads(n); }
  int threads() const override { return exec_.threads(); }
  void compute(Graph& g) override { exec_.compute(g, abort_ ? &abort_ : nullptr); }
  void compute_nodes(Graph& g, const std::vector<Tensor*>& nodes) override {
    exec_.compute(g, abort_ ? &abort_ : nullptr, &nodes);
  }
  size_t work_size(const Graph& g) const override { return exec_.work_size(g); }

 private:
  const cpu::KernelSet& k_;
  Executor exec_;
};

}  // namespace

std::unique_ptr<Buffer> host_buffer(size_t bytes) { return std::make_unique<HostBuffer>(bytes); }

std::unique_ptr<Backend> cpu_backend(int n_threads) { return std::make_unique<CpuBackend>(n_threads, cpu::best()); }

const Backend& default_backend() {
  static const CpuBackend b(1, cpu::best());
  return b;
}

}  // namespace ggml
