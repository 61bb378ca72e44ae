// The CUDA backend: device buffers, graph memory mirrored on the device (a
// result at offset o of the host plan lives at offset o of its device copy,
// so one plan serves both sides), host leaves staged per compute, and the
// nodes the scheduler gives it launched on one stream, or, when they are all
// kernels of ours (generation: hundreds of small launches a token), recorded
// into a CUDA graph that later computes update where their arguments changed.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.cuh"
#include "launch.cuh"
#include "device_mirror.h"
#include "device_ops.h"
#include "ggml/cuda.h"
#include "ggml/graph.h"
#include "ggml/ops.h"

namespace ggml {

namespace cuda {
Recorder*& recording() {
  static thread_local Recorder* r = nullptr;
  return r;
}
void fail_cuda(const char* what, cudaError_t e) { fail(std::string("cuda: ") + what + ": " + cudaGetErrorString(e)); }
void fail_cublas(const char* what, cublasStatus_t s) {
  fail(std::string("cublas: ") + what + ": " + cublasGetStatusString(s));
}
TD td(const Tensor* t, void* dev) {
  TD d{};
  d.p = static_cast<char*>(dev);
  for (int i = 0; i < 4; i++) d.ne[i] = t->ne[i], d.nb[i] = int64_t(t->nb[i]);
  d.type = uint32_t(t->type);
  return d;
}
}  // namespace cuda

namespace {

using namespace cuda;
using Mirror = MirrorTable::Mirror;

const Tensor* root_of(const Tensor* t) { return t->view_src ? t->view_src : t; }

class DeviceBuffer : public Buffer {
 public:
  DeviceBuffer(int dev, size_t n) : size_(n) {
    CUDA_CHECK(cudaSetDevice(dev));
    if (cudaMalloc(&p_, std::max<size_t>(n, 1)) != cudaSuccess) {
      cudaGetLastError();
      fail("cuda: out of GPU memory allocating " + std::to_string(n >> 20) + " MiB");
    }
    CUDA_CHECK(cudaMemset(p_, 0, n));
    // Done before any stream of ours uses it (theirs do not wait for the default one).
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  ~DeviceBuffer() override { cudaFree(p_); }
  void* base() override { return p_; }
  size_t size() const override { return size_; }

 private:
  void* p_ = nullptr;
  size_t size_;
};

class CudaBackend;

// A graph's planned memory: pinned host memory (copies run at full speed
// and asynchronously) and its device copy.
class GraphBuffer : public Buffer {
 public:
  GraphBuffer(CudaBackend* be, int dev, size_t n);
  ~GraphBuffer() override;
  void* base() override { return m_.host; }
  size_t size() const override { return m_.size; }

 private:
  CudaBackend* be_;
  Mirror m_{};
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int dev) : dev_(dev) {
    CUDA_CHECK(cudaSetDevice(dev));
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
    name_ = "cuda" + std::to_string(dev) + " (" + p.name + ")";
    CUDA_CHECK(cudaStreamCreateWithFlags(&st_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&blas_));
    CUBLAS_CHECK(cublasSetStream(blas_, st_));
    const char* e = std::getenv("GGML_CUDA_GRAPHS");
    use_graphs_ = !(e && std::strcmp(e, "0") == 0);
  }
  ~CudaBackend() override {
    cudaSetDevice(dev_);
    graphs_.clear();
    for (auto& c : stage_) cudaFree(c.p);
    cudaFree(scratch_.p);
    cublasDestroy(blas_);
    cudaStreamDestroy(st_);
  }

  std::string name() const override { return name_; }
  bool host_memory() const override { return false; }
  bool supports_type(Type t) const override { return device_supports_type(t); }
  bool supports(const Tensor* n) const override { return device_supports(n); }

  std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<DeviceBuffer>(dev_, bytes); }
  std::unique_ptr<Buffer> alloc_graph(size_t bytes) override { return std::make_unique<GraphBuffer>(this, dev_, bytes); }
  void write(void* dst, const void* src, size_t n) override {
    CUDA_CHECK(cudaSetDevice(dev_));
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
  }
  size_t weight_layout_size(const Tensor*) const override { return 0; }
  void prepare_weight(Tensor* w, const void*, void*) const override {
    GGML_CHECK(false, w, "cuda backend: weights are used in their stored layout");
  }
  void optimize(Graph&, Context&) const override {}
  void set_threads(int n) override { threads_ = n; }
  int threads() const override { return threads_; }
  size_t work_size(const Graph&) const override { return 0; }

  // The whole graph on the GPU (op tests): inputs copied in, outputs out.
  void compute(Graph& g) override {
    for (Tensor* n : g.nodes())
      if (n->view_src) n->data = static_cast<char*>(n->view_src->data) + n->view_offs;
    begin_compute();
    std::vector<Tensor*> part;
    for (Tensor* n : g.nodes()) {
      if (op_is_view(n->op)) continue;
      GGML_CHECK(supports(n), n, name_ + " does not compute " + std::string(op_name(n->op)));
      part.push_back(n);
    }
    for (const Tensor* l : g.leafs())
      if (!(l->flags & FLAG_DEVICE)) to_device(l);
    compute_nodes(g, part);
    for (Tensor* n : part)
      if ((n->flags & FLAG_OUTPUT) && !(n->view_src && (n->view_src->flags & FLAG_DEVICE))) to_host(root_of(n));
    synchronize();
  }

  void compute_nodes(Graph& g, const std::vector<Tensor*>& nodes) override {
    if (abort_ && abort_()) throw Cancelled();
    // GGML_PROFILE: the host's time launching (the GPU's own runs behind it)
    // and how CUDA graphs were made, under "cuda: ..." in the profile.
    const bool prof = profiling();
    const auto t0 = prof ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    struct Timed {
      bool on;
      std::chrono::steady_clock::time_point t0;
      ~Timed() {
        if (on) profile_add_named("cuda: host side of launches", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    } timed{prof, t0};
    CUDA_CHECK(cudaSetDevice(dev_));
    size_t need = 0;
    bool capture = use_graphs_ && nodes.size() >= 4;
    for (const Tensor* n : nodes) {
      if (n->op != Op::MUL_MAT) continue;
      need = std::max(need, scratch_mul_mat(n));
      if (mul_mat_uses_cublas(n)) capture = false;
    }
    if (need > scratch_.size) {
      CUDA_CHECK(cudaStreamSynchronize(st_));
      cudaFree(scratch_.p);
      scratch_ = {};
      if (cudaMalloc(&scratch_.p, need) != cudaSuccess) {
        cudaGetLastError();
        fail("cuda: out of GPU memory for " + std::to_string(need >> 20) + " MiB of product scratch");
      }
      scratch_.size = need;
    }
    if (!capture) {
      for (const Tensor* n : nodes) launch_node(n);
      CUDA_CHECK(cudaGetLastError());
      return;
    }
    // The launches recorded, then replayed as a CUDA graph: built when the
    // sequence is new (or its length changed), else updated node by node
    // where the arguments differ (a token at the next position: its
    // attention's sizes, the cache row it writes), then launched.
    Recorder rec;
    std::swap(rec, spare_);
    rec.clear();
    {
      struct Recording {
        explicit Recording(Recorder* r) { recording() = r; }
        ~Recording() { recording() = nullptr; }
      } on(&rec);
      for (const Tensor* n : nodes) launch_node(n);
    }
    if (rec.size() == 0) return;
    if (graphs_.size() > 32) graphs_.clear();
    Replay& rp = graphs_[{&g, nodes.front()}];
    std::vector<void*> ptrs;
    if (!rp.exec || rp.nodes.size() != rec.size()) {
      rp.reset();
      CUDA_CHECK(cudaGraphCreate(&rp.graph, 0));
      cudaGraphNode_t prev = nullptr;
      for (size_t i = 0; i < rec.size(); i++) {
        const cudaKernelNodeParams kp = rec.params(i, ptrs);
        cudaGraphNode_t node;
        CUDA_CHECK(cudaGraphAddKernelNode(&node, rp.graph, prev ? &prev : nullptr, prev ? 1 : 0, &kp));
        rp.nodes.push_back(node);
        prev = node;
      }
      CUDA_CHECK(cudaGraphInstantiate(&rp.exec, rp.graph, 0));
      if (prof)
        for (size_t i = 0; i < rec.size(); i++) profile_add_named("cuda: graph built (calls: its nodes)", 0.0);
    } else {
      for (size_t i = 0; i < rec.size(); i++) {
        if (rec.same(i, rp.rec, i)) continue;
        const cudaKernelNodeParams kp = rec.params(i, ptrs);
        CUDA_CHECK(cudaGraphExecKernelNodeSetParams(rp.exec, rp.nodes[i], &kp));
        if (prof) profile_add_named("cuda: graph node updated", 0.0);
      }
    }
    std::swap(rp.rec, rec);
    std::swap(rec, spare_);  // the old calls' buffers serve the next record
    CUDA_CHECK(cudaGraphLaunch(rp.exec, st_));
    if (prof) profile_add_named("cuda: graph replayed", 0.0);
  }

  void to_device(const Tensor* r) override {
    if (r->flags & FLAG_DEVICE) return;
    const size_t n = r->nbytes();
    if (n == 0) return;
    const char* p = static_cast<const char*>(r->data);
    if (const Mirror* m = mirror_of(p)) {
      CUDA_CHECK(cudaMemcpyAsync(m->dev + (p - m->host), p, n, cudaMemcpyHostToDevice, st_));
      return;
    }
    char* d = stage(n);
    CUDA_CHECK(cudaMemcpyAsync(d, p, n, cudaMemcpyHostToDevice, st_));
    staged_[r] = d;
  }
  void to_host(const Tensor* r) override {
    const size_t n = r->nbytes();
    if (n == 0) return;
    char* p = static_cast<char*>(r->data);
    const Mirror* m = mirror_of(p);
    GGML_CHECK(m != nullptr, r, "cuda: a result to copy back is not in graph memory");
    CUDA_CHECK(cudaMemcpyAsync(p, m->dev + (p - m->host), n, cudaMemcpyDeviceToHost, st_));
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(st_)); }
  void begin_compute() override {
    staged_.clear();
    for (auto& c : stage_) c.used = 0;
  }

  MirrorTable& mirrors() { return mirrors_; }

 private:
  struct Chunk {
    char* p;
    size_t size, used;
  };

  const Mirror* mirror_of(const char* p) const { return mirrors_.find(p); }
  char* stage(size_t n) {
    n = (n + 255) / 256 * 256;
    for (Chunk& c : stage_) {
      if (c.size - c.used >= n) {
        char* p = c.p + c.used;
        c.used += n;
        return p;
      }
    }
    Chunk c{nullptr, std::max<size_t>(n, size_t(4) << 20), n};
    CUDA_CHECK(cudaMalloc(&c.p, c.size));
    stage_.push_back(c);
    return c.p;
  }
  char* dev_ptr(const Tensor* t) const {
    const Tensor* r = root_of(t);
    char* p = static_cast<char*>(t->data);
    if (r->flags & FLAG_DEVICE) return p;
    if (const Mirror* m = mirror_of(p)) return m->dev + (p - m->host);
    auto it = staged_.find(r);
    if (it != staged_.end()) return it->second + (p - static_cast<char*>(r->data));
    GGML_CHECK(false, t, "cuda: '" + t->name + "' is not in GPU memory");
    return nullptr;
  }
  TD in(const Tensor* n, int i) const { return td(n->src[i], dev_ptr(n->src[i])); }

  void launch_node(const Tensor* n) {
    const TD d = td(n, dev_ptr(n));
    switch (n->op) {
      case Op::CPY: case Op::CONT: op_cpy(d, in(n, 0), st_); break;
      case Op::ADD: case Op::MUL: case Op::SILU_MUL: op_binary(n, d, in(n, 0), in(n, 1), st_); break;
      case Op::SCALE: case Op::SILU: case Op::GELU: case Op::GELU_ERF: op_unary(n, d, in(n, 0), st_); break;
      case Op::GET_ROWS: op_get_rows(d, in(n, 0), in(n, 1), st_); break;
      case Op::MUL_MAT: op_mul_mat(d, in(n, 0), in(n, 1), scratch_, blas_, st_); break;
      case Op::RMS_NORM:
        op_rms_norm(d, in(n, 0), n->src[1] ? reinterpret_cast<const float*>(dev_ptr(n->src[1])) : nullptr,
                    op_param_f32(n, 0), st_);
        break;
      case Op::NORM: op_norm(d, in(n, 0), op_param_f32(n, 0), st_); break;
      case Op::ROPE: op_rope(n, d, in(n, 0), in(n, 1), st_); break;
      case Op::SOFT_MAX: {
        TD mask{};
        if (n->src[1]) mask = in(n, 1);
        op_soft_max(d, in(n, 0), n->src[1] ? &mask : nullptr, op_param_f32(n, 0), n->op_params[1], st_);
        break;
      }
      default: GGML_CHECK(false, n, name_ + " has no kernel for " + op_name(n->op));
    }
  }

  int dev_;
  std::string name_;
  int threads_ = 1;
  bool use_graphs_ = true;
  cudaStream_t st_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  Scratch scratch_;
  std::vector<Chunk> stage_;
  std::unordered_map<const Tensor*, char*> staged_;
  MirrorTable mirrors_;
  // A CUDA graph of a run of launches, per (graph, first node) computed.
  struct Replay {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::vector<cudaGraphNode_t> nodes;
    Recorder rec;  // what its nodes launch now
    Replay() = default;
    Replay(const Replay&) = delete;
    Replay& operator=(const Replay&) = delete;
    ~Replay() { reset(); }
    void reset() {
      if (exec) cudaGraphExecDestroy(exec);
      if (graph) cudaGraphDestroy(graph);
      exec = nullptr, graph = nullptr;
      nodes.clear();
    }
  };
  std::map<std::pair<const void*, const void*>, Replay> graphs_;
  Recorder spare_;
};

GraphBuffer::GraphBuffer(CudaBackend* be, int dev, size_t n) : be_(be) {
  CUDA_CHECK(cudaSetDevice(dev));
  m_.size = n;
  const size_t bytes = std::max<size_t>(n, 1);
  if (cudaMallocHost(&m_.host, bytes) != cudaSuccess || cudaMalloc(&m_.dev, bytes) != cudaSuccess) {
    cudaGetLastError();
    if (m_.host) cudaFreeHost(m_.host);
    fail("cuda: out of memory allocating " + std::to_string(n >> 20) + " MiB of graph memory");
  }
  be_->mirrors().add(m_);
}
GraphBuffer::~GraphBuffer() {
  be_->mirrors().remove(m_.host);
  cudaFreeHost(m_.host);
  cudaFree(m_.dev);
}

}  // namespace

namespace {
__global__ void k_read(const float4* p, size_t n, float* out) {
  float s = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float4 v = p[i];
    s += v.x + v.y + v.z + v.w;
  }
  if (s == 1.2345f) *out = s;  // never true on zeros: the reads cannot be dropped
}
}  // namespace

double cuda_read_bandwidth(int device) {
  if (cuda_device_count() <= device) return 0;
  CUDA_CHECK(cudaSetDevice(device));
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer buf(device, bytes + 256);
  float* out = reinterpret_cast<float*>(static_cast<char*>(buf.base()) + bytes);
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  const unsigned blocks = unsigned(p.multiProcessorCount) * 8;
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  double best = 0;
  for (int rep = 0; rep < 6; rep++) {  // the first warms up
    CUDA_CHECK(cudaEventRecord(a));
    k_read<<<blocks, 256>>>(static_cast<const float4*>(buf.base()), bytes / 16, out);
    CUDA_CHECK(cudaEventRecord(b));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    if (rep > 0 && ms > 0) best = std::max(best, double(bytes) / (double(ms) * 1e6));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best;
}

bool cuda_built() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_describe(int device) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA GPU: ") + cudaGetErrorString(e);
  }
  if (device < 0 || device >= n) return "no CUDA GPU " + std::to_string(device) + " (" + std::to_string(n) + " found)";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return "CUDA GPU " + std::to_string(device) + ": unreadable";
  char mem[32];
  std::snprintf(mem, sizeof mem, "%.1f GiB", double(p.totalGlobalMem) / double(1ull << 30));
  return std::string(p.name) + ", sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " + mem;
}

std::shared_ptr<Backend> cuda_backend(int device) {
  if (cuda_device_count() <= device || device < 0) fail("GPU offload: " + cuda_describe(device));
  return std::make_shared<CudaBackend>(device);
}

}  // namespace ggml
