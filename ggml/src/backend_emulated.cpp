// A device backend emulated in host memory: its buffers are separate host
// allocations the CPU treats as device memory, graph memory has a shadow
// copy as a GPU's mirror does, host leaves are staged per compute, and its
// nodes are computed by the CPU kernels on the shadow copies. It places and
// copies exactly as the CUDA backend does (device_ops.h), so the scheduler's
// splits, the offload of layers and every copy between the sides are tested
// on machines without a GPU: a missing copy computes on stale memory and the
// results differ from the CPU's.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "device_mirror.h"
#include "device_ops.h"
#include "ggml/backend.h"
#include "ggml/cpu.h"
#include "ggml/cuda.h"

namespace ggml {

namespace {

const Tensor* root_of(const Tensor* t) { return t->view_src ? t->view_src : t; }
using Mirror = MirrorTable::Mirror;

void* zeroed(size_t n) {
  const size_t sz = (std::max<size_t>(n, 1) + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN;
  void* p = std::aligned_alloc(TENSOR_ALIGN, sz);
  if (!p) fail("emulated device: out of memory allocating " + std::to_string(n) + " bytes");
  std::memset(p, 0, sz);
  return p;
}

class EmuBuffer : public Buffer {
 public:
  explicit EmuBuffer(size_t n) : p_(zeroed(n)), size_(n) {}
  ~EmuBuffer() override { std::free(p_); }
  void* base() override { return p_; }
  size_t size() const override { return size_; }

 private:
  void* p_;
  size_t size_;
};

class EmulatedDevice;

class EmuGraphBuffer : public Buffer {
 public:
  EmuGraphBuffer(EmulatedDevice* be, size_t n);
  ~EmuGraphBuffer() override;
  void* base() override { return m_.host; }
  size_t size() const override { return m_.size; }

 private:
  EmulatedDevice* be_;
  Mirror m_;
};

class EmulatedDevice : public Backend {
 public:
  EmulatedDevice() : exec_(1, &cpu::best()) {}
  std::string name() const override { return "emulated device"; }
  bool host_memory() const override { return false; }
  bool supports_type(Type t) const override { return device_supports_type(t); }
  bool supports(const Tensor* n) const override { return device_supports(n); }
  std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<EmuBuffer>(bytes); }
  std::unique_ptr<Buffer> alloc_graph(size_t bytes) override { return std::make_unique<EmuGraphBuffer>(this, bytes); }
  size_t weight_layout_size(const Tensor*) const override { return 0; }
  void prepare_weight(Tensor* w, const void*, void*) const override {
    GGML_CHECK(false, w, "emulated device: weights are used in their stored layout");
  }
  void optimize(Graph&, Context&) const override {}
  void set_threads(int) override {}
  int threads() const override { return 1; }
  size_t work_size(const Graph& g) const override { return exec_.work_size(g); }

  // The whole graph on the device (as the CUDA backend's, for op tests).
  void compute(Graph& g) override {
    for (Tensor* n : g.nodes())
      if (n->view_src) n->data = static_cast<char*>(n->view_src->data) + n->view_offs;
    begin_compute();
    std::vector<Tensor*> part;
    for (Tensor* n : g.nodes())
      if (!op_is_view(n->op)) part.push_back(n);
    for (const Tensor* l : g.leafs()) to_device(l);
    compute_nodes(g, part);
    for (Tensor* n : part)
      if ((n->flags & FLAG_OUTPUT) && !(n->view_src && (n->view_src->flags & FLAG_DEVICE))) to_host(root_of(n));
  }

  void compute_nodes(Graph& g, const std::vector<Tensor*>& nodes) override {
    if (abort_ && abort_()) throw Cancelled();
    // Every root these nodes touch points at its device copy while they run.
    std::vector<std::pair<Tensor*, void*>> saved;
    std::unordered_set<const Tensor*> seen;
    auto swap = [&](const Tensor* t) {
      Tensor* r = const_cast<Tensor*>(root_of(t));
      if ((r->flags & FLAG_DEVICE) || !seen.insert(r).second) return;
      saved.emplace_back(r, r->data);
      r->data = dev_ptr(r);
    };
    for (const Tensor* n : nodes) {
      GGML_CHECK(device_supports(n), n, "emulated device: not a device op");
      swap(n);
      for (const Tensor* s : n->src)
        if (s) swap(s);
    }
    auto views = [&] {
      for (Tensor* n : g.nodes())
        if (n->view_src) n->data = static_cast<char*>(n->view_src->data) + n->view_offs;
    };
    try {
      exec_.compute(g, nullptr, &nodes);
    } catch (...) {
      for (auto& [r, p] : saved) r->data = p;
      views();
      throw;
    }
    for (auto& [r, p] : saved) r->data = p;
    views();
  }

  void to_device(const Tensor* r) override {
    if (r->flags & FLAG_DEVICE) return;
    const char* p = static_cast<const char*>(r->data);
    if (const Mirror* m = mirror_of(p)) {
      std::memcpy(m->dev + (p - m->host), p, r->nbytes());
      return;
    }
    auto& st = staged_[r];
    st.assign(p, p + r->nbytes() + TENSOR_ALIGN);  // room for views that end at the tensor's end
  }
  void to_host(const Tensor* r) override {
    char* p = static_cast<char*>(r->data);
    const Mirror* m = mirror_of(p);
    GGML_CHECK(m != nullptr, r, "emulated device: a result to copy back is not in graph memory");
    std::memcpy(p, m->dev + (p - m->host), r->nbytes());
  }
  void begin_compute() override { staged_.clear(); }

  MirrorTable& mirrors() { return mirrors_; }

 private:
  const Mirror* mirror_of(const char* p) const { return mirrors_.find(p); }
  char* dev_ptr(const Tensor* r) {
    char* p = static_cast<char*>(r->data);
    if (const Mirror* m = mirror_of(p)) return m->dev + (p - m->host);
    auto it = staged_.find(r);
    GGML_CHECK(it != staged_.end(), r, "emulated device: '" + r->name + "' is not in device memory");
    return it->second.data();
  }

  Executor exec_;
  std::unordered_map<const Tensor*, std::vector<char>> staged_;
  MirrorTable mirrors_;
};

EmuGraphBuffer::EmuGraphBuffer(EmulatedDevice* be, size_t n) : be_(be) {
  m_.host = static_cast<char*>(zeroed(n));
  m_.dev = static_cast<char*>(zeroed(n));
  m_.size = n;
  be_->mirrors().add(m_);
}
EmuGraphBuffer::~EmuGraphBuffer() {
  be_->mirrors().remove(m_.host);
  std::free(m_.host);
  std::free(m_.dev);
}

bool emulating() {
  const char* e = std::getenv("GGML_DEVICE");
  return e && std::strcmp(e, "emulated") == 0;
}

}  // namespace

std::shared_ptr<Backend> emulated_device_backend() { return std::make_shared<EmulatedDevice>(); }

std::shared_ptr<Backend> device_backend(int device) {
  if (emulating()) return emulated_device_backend();
  return cuda_backend(device);
}

bool device_available(std::string* why) {
  if (emulating() || cuda_device_count() > 0) return true;
  if (why) *why = cuda_describe(0);
  return false;
}

}  // namespace ggml
