#pragma once
// Kernel launches of the CUDA backend: run at once, or recorded (function,
// grid, block and argument bytes) so that a run of them becomes a CUDA graph
// whose next replay changes only the nodes whose arguments changed (a token
// at the next position: its attention sizes and cache offsets), without
// capturing the stream again.
#include <cuda_runtime.h>

#include <cstring>
#include <utility>
#include <vector>

namespace ggml::cuda {

class Recorder {
 public:
  struct Call {
    const void* fn;
    dim3 grid, block;
    size_t at, len;      // its argument bytes in bytes_
    size_t offs_at, n;   // its arguments' offsets in offs_
  };
  template <class... P>
  void add(const void* fn, dim3 g, dim3 b, const P&... p) {
    Call c{fn, g, b, bytes_.size(), 0, offs_.size(), sizeof...(P)};
    (put(p), ...);
    c.len = bytes_.size() - c.at;
    calls_.push_back(c);
  }
  void clear() {
    calls_.clear();
    bytes_.clear();
    offs_.clear();
  }
  size_t size() const { return calls_.size(); }
  // Whether call i here and call j of o launch the same work.
  bool same(size_t i, const Recorder& o, size_t j) const {
    const Call &a = calls_[i], &b = o.calls_[j];
    return a.fn == b.fn && a.grid.x == b.grid.x && a.grid.y == b.grid.y && a.grid.z == b.grid.z &&
           a.block.x == b.block.x && a.block.y == b.block.y && a.block.z == b.block.z && a.len == b.len &&
           std::memcmp(bytes_.data() + a.at, o.bytes_.data() + b.at, a.len) == 0;
  }
  // The kernel node parameters of call i (ptrs: room for its argument pointers).
  cudaKernelNodeParams params(size_t i, std::vector<void*>& ptrs) const {
    const Call& c = calls_[i];
    ptrs.resize(c.n);
    for (size_t k = 0; k < c.n; k++) ptrs[k] = const_cast<unsigned char*>(bytes_.data()) + offs_[c.offs_at + k];
    cudaKernelNodeParams p{};
    p.func = const_cast<void*>(c.fn);
    p.gridDim = c.grid;
    p.blockDim = c.block;
    p.sharedMemBytes = 0;
    p.kernelParams = ptrs.data();
    p.extra = nullptr;
    return p;
  }

 private:
  template <class T>
  void put(const T& v) {
    const size_t at = (bytes_.size() + alignof(T) - 1) / alignof(T) * alignof(T);
    bytes_.resize(at + sizeof(T), 0);  // the gaps zero: equal arguments compare equal
    std::memcpy(bytes_.data() + at, &v, sizeof(T));
    offs_.push_back(at);
  }
  std::vector<Call> calls_;
  std::vector<unsigned char> bytes_;
  std::vector<size_t> offs_;
};

// The recorder launches go to on this thread (nullptr: launched at once).
Recorder*& recording();

template <class... P, class... A>
void launch(void (*k)(P...), dim3 grid, dim3 block, cudaStream_t s, A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: argument count");
  if (Recorder* r = recording()) {
    r->add(reinterpret_cast<const void*>(k), grid, block, P(std::forward<A>(a))...);
    return;
  }
  k<<<grid, block, 0, s>>>(P(std::forward<A>(a))...);
}

}  // namespace ggml::cuda
