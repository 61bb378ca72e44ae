#pragma once
// Backends: where graphs run. A backend says which nodes and weight types it
// computes, allocates the memory it computes in, holds weights in its own
// layouts (prepared once from the bytes a file stores), rewrites a built graph
// for its kernels (fusion) and computes planned graphs. The CPU backend
// (backend_cpu.cpp) wraps the executor and the kernel sets of cpu.h; the
// model layer (llm/) sees only this header, GGUF types and plain ops.
//
// A Scheduler runs a graph over the backends it is given. With one backend
// (today) it hands the graph over whole; a second backend (CUDA) will take
// the nodes whose weights live in its memory, with copies inserted where a
// value crosses between them, behind the same three calls.
#include <cstddef>
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

  virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;

  // A weight matrix held in a layout of the backend's own (rearranged blocks
  // for its kernels): the bytes that takes (0: the stored bytes are used as
  // they are), then prepare_weight() writes them from the stored bytes and
  // marks the tensor (Tensor::layout). Results equal the stored layout's.
  virtual size_t weight_layout_size(const Tensor* w) const = 0;
  virtual void prepare_weight(Tensor* w, const void* stored, void* dst) const = 0;

  // Rewrites a built graph for its kernels, once, before planning: new
  // tensors go to ctx, results stay bit for bit those of the plain graph.
  virtual void optimize(Graph& g, Context& ctx) const = 0;
  virtual void set_threads(int n) = 0;
  virtual int threads() const = 0;
  // Computes a planned graph; throws ggml::Error for bad runtime input, and
  // ggml::Cancelled when the abort check (set_abort) returned true.
  virtual void compute(Graph& g) = 0;
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

class Scheduler {
 public:
  // The first backend that supports a node runs it; the last must be one
  // that runs everything (the CPU).
  explicit Scheduler(std::vector<std::shared_ptr<Backend>> backends);
  // Checks every node has a backend and lets it rewrite the graph.
  void plan(Graph& g, Context& ctx);
  void compute(Graph& g);
  void set_abort(const std::function<bool()>& f);  // on every backend
  Backend& primary() { return *backends_.front(); }  // where graph memory is allocated

 private:
  std::vector<std::shared_ptr<Backend>> backends_;
};

}  // namespace ggml
