#pragma once
// Backends: where graphs run. A backend says which nodes and weight types it
// computes, allocates the memory it computes in, holds weights in its own
// layouts (prepared once from the bytes a file stores), rewrites a built graph
// for its kernels (fusion) and computes planned graphs. The CPU backend
// (backend_cpu.cpp) wraps the executor and the kernel sets of cpu.h; the
// model layer (llm/) sees only this header, GGUF types and plain ops.
//
// A Scheduler runs a graph over the backends it is given. With one backend
// it hands the graph over whole. With a device backend (CUDA) first, the
// device takes the nodes that read its memory (weights and KV cache of the
// offloaded layers) and the nodes fed by those it supports; the CPU takes
// the rest; values are copied where they cross between the two (docs/cuda.md).
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graph.h"
#include "tensor.h"

namespace ggml {

// A block of memory a backend computes in.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* base() = 0;  // where the tensors placed in it start
  virtual size_t size() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu (avx512)"
  // Its memory is the host's: weights may be computed with straight from a
  // file map, and results read without a copy.
  virtual bool host_memory() const = 0;

  // Weight types (GGUF's) it computes with, and whether it computes a node.
  virtual bool supports_type(Type t) const = 0;
  virtual bool supports(const Tensor* node) const = 0;

  // Memory of the backend (a device's is zeroed).
  virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;
  // Memory for a graph's planned results, which either side may compute: host
  // memory, and for a device backend a device copy of the same size beside it
  // (a result at offset o of the one is at offset o of the other).
  virtual std::unique_ptr<Buffer> alloc_graph(size_t bytes) { return alloc(bytes); }
  // Writes host bytes into its memory (weights at load), waiting for the copy.
  virtual void write(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }

  // A weight matrix held in a layout of the backend's own (rearranged blocks
  // for its kernels): the bytes that takes (0: the stored bytes are used as
  // they are), then prepare_weight() writes them from the stored bytes and
  // marks the tensor (Tensor::layout). Results equal the stored layout's.
  virtual size_t weight_layout_size(const Tensor* w) const = 0;
  virtual void prepare_weight(Tensor* w, const void* stored, void* dst) const = 0;

  // Rewrites a built graph for its kernels, once, before planning: new
  // tensors go to ctx, results stay bit for bit those of the plain graph.
  virtual void optimize(Graph& g, Context& ctx) const = 0;
  // The same for the part of a split graph it computes (nodes mine accepts).
  virtual void optimize_part(Graph& g, Context& ctx, const std::function<bool(const Tensor*)>& mine) const {
    (void)g, (void)ctx, (void)mine;
  }
  virtual void set_threads(int n) = 0;
  virtual int threads() const = 0;
  // Computes a planned graph; throws ggml::Error for bad runtime input, and
  // ggml::Cancelled when the abort check (set_abort) returned true.
  virtual void compute(Graph& g) = 0;
  // Computes only these nodes of g (in g's order): a scheduler's part.
  virtual void compute_nodes(Graph& g, const std::vector<Tensor*>& nodes) = 0;
  // A device backend's copies between a tensor's host memory and its own
  // (both whole roots: a leaf or a planned result), in its stream order;
  // synchronize() waits for all of them and its computes. No-ops on the host.
  virtual void to_device(const Tensor*) {}
  virtual void to_host(const Tensor*) {}
  virtual void synchronize() {}
  // A new compute of a graph starts: copies made in the last one are stale.
  virtual void begin_compute() {}
  // Called by one thread after every node of a compute (cheap, may come from
  // any thread of the compute); true stops it before the next node. Empty: none.
  void set_abort(std::function<bool()> f) { abort_ = std::move(f); }
  // The work memory compute(g) uses beside the planned buffer (kept, and
  // grown to the largest graph computed): for memory predictions.
  virtual size_t work_size(const Graph& g) const = 0;

 protected:
  std::function<bool()> abort_;
};

// Physical cores this process may run on (hyperthreads of one core count
// once): the CPU backend's default thread count.
int physical_cores();

// Host memory, aligned for tensors (what the CPU backend's alloc() returns).
std::unique_ptr<Buffer> host_buffer(size_t bytes);

// The CPU backend with the fastest kernel set this CPU runs (cpu::best()).
std::unique_ptr<Backend> cpu_backend(int n_threads = 1);
// The backend weights are prepared for when a model is loaded: one CPU
// backend for the process (it keeps no state a load could disturb).
const Backend& default_backend();

// The device backend layers are offloaded to (-ngl): the CUDA backend on GPU
// `device`; with GGML_DEVICE=emulated in the environment, a device emulated
// in host memory (CPU kernels on copies of their own, copies as a GPU's: for
// tests on machines without one). Throws ggml::Error saying why there is none.
std::shared_ptr<Backend> device_backend(int device = 0);
std::shared_ptr<Backend> emulated_device_backend();
// Whether device_backend() can give one; why not otherwise.
bool device_available(std::string* why = nullptr);

class Scheduler {
 public:
  // The first backend that supports a node runs it; the last must be one
  // that runs everything (the CPU).
  explicit Scheduler(std::vector<std::shared_ptr<Backend>> backends);
  // Places every node on a backend (Tensor::backend), checking each has one,
  // and lets the CPU rewrite the graph (its fusion pass), on a split graph
  // only its own part.
  void plan(Graph& g, Context& ctx);
  void compute(Graph& g);
  void set_abort(const std::function<bool()>& f);  // on every backend
  Backend& primary() { return *backends_.front(); }
  Backend& host() { return *backends_.back(); }  // the CPU: work memory, host leaves
  // The backend whose alloc_graph() gives a graph's planned memory.
  Backend& graph_memory() { return *backends_.front(); }
  size_t n_backends() const { return backends_.size(); }
  // Nodes (views not counted) of the last plan() on each backend, and values
  // copied between them in the last compute(): for tests and --verbose.
  std::vector<size_t> last_placement() const { return placed_; }
  size_t last_copies() const { return copies_; }

 private:
  size_t place(Graph& g);  // sets Tensor::backend; returns the device's node count
  std::vector<std::shared_ptr<Backend>> backends_;
  std::vector<size_t> placed_;
  size_t copies_ = 0;
};

}  // namespace ggml
