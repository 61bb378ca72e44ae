#pragma once
// The CPU executor's own threads, in place of an OpenMP team: waiting is
// ours to decide. A waiter (for the next compute, or at a barrier between
// nodes) spins for a few microseconds, then sleeps on a futex, so that on a
// machine whose other programs hold a core a waiting thread gives that core
// back instead of spinning on it while the thread it waits for is not
// running (with both cores busy an OpenMP team's spinning barrier made a
// chat turn 60x slower than one thread).
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace ggml {

class ThreadPool {
 public:
  ThreadPool() = default;
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // f(0) on the calling thread and f(1) ... f(n - 1) on the pool's, returning
  // when every call has returned. Workers are started on first use. f must
  // not throw on a worker (it would end the program); f(0)'s exception is
  // rethrown once the workers are done. A thread that waits at barrier()
  // for one that threw never returns: kernels report errors (ErrorSink)
  // instead of throwing.
  void run(int n, const std::function<void(int)>& f);
  // All n threads of the current run meet here.
  void barrier();

 private:
  void worker(int ith, uint32_t seen);
  static void wait_change(std::atomic<uint32_t>& word, uint32_t seen, std::atomic<int>& sleepers);
  static void wake_all(std::atomic<uint32_t>& word, std::atomic<int>& sleepers);

  std::vector<std::thread> threads_;
  const std::function<void(int)>* job_ = nullptr;
  int n_ = 1;  // threads in the current run
  bool stop_ = false;
  alignas(64) std::atomic<uint32_t> job_gen_{0};
  std::atomic<int> job_sleepers_{0};
  alignas(64) std::atomic<int> done_{0};
  std::atomic<uint32_t> done_gen_{0};
  std::atomic<int> done_sleepers_{0};
  alignas(64) std::atomic<int> arrived_{0};
  std::atomic<uint32_t> barrier_gen_{0};
  std::atomic<int> barrier_sleepers_{0};
};

}  // namespace ggml
