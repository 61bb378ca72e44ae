#include "thread_pool.h"

#include <climits>
#include <exception>
#include <chrono>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ggml {

namespace {

// How a waiter waits: it spins first (barriers on a quiet machine take
// microseconds), then yields its core between looks (on a quiet machine a
// yield returns at once; on a busy core it lets the other program, or the
// thread it waits for, run), then sleeps on the futex (a thread that is not
// running takes milliseconds). A waiter that slept costs a wake-up on the
// critical path, which a prompt's uneven nodes measured as 5% with sleep
// after 50 microseconds of spinning.
constexpr auto kSpin = std::chrono::microseconds(20);
constexpr auto kYield = std::chrono::microseconds(2000);

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void futex_wait(std::atomic<uint32_t>* w, uint32_t seen) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
#else
  (void)w;
  (void)seen;
  std::this_thread::yield();
#endif
}

void futex_wake(std::atomic<uint32_t>* w) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)w;
#endif
}

}  // namespace

// Waits until word differs from seen. A sleeper counts itself before its
// last look at word and the waker changes word before it looks at the
// count (both sequentially consistent), so a wake-up is never lost; the
// kernel's own check of word closes the rest.
void ThreadPool::wait_change(std::atomic<uint32_t>& word, uint32_t seen, std::atomic<int>& sleepers) {
  const auto t0 = std::chrono::steady_clock::now();
  for (unsigned i = 1;; i++) {
    if (word.load(std::memory_order_acquire) != seen) return;
    relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - t0 > kSpin) break;
  }
  while (std::chrono::steady_clock::now() - t0 < kYield) {
    if (word.load(std::memory_order_acquire) != seen) return;
    std::this_thread::yield();
  }
  sleepers.fetch_add(1);
  while (word.load() == seen) futex_wait(&word, seen);
  sleepers.fetch_sub(1);
}

void ThreadPool::wake_all(std::atomic<uint32_t>& word, std::atomic<int>& sleepers) {
  if (sleepers.load() > 0) futex_wake(&word);
}

ThreadPool::~ThreadPool() {
  if (threads_.empty()) return;
  stop_ = true;
  job_gen_.fetch_add(1);
  futex_wake(&job_gen_);
  for (auto& t : threads_) t.join();
}

void ThreadPool::worker(int ith, uint32_t seen) {
  for (;;) {
    wait_change(job_gen_, seen, job_sleepers_);
    seen = job_gen_.load(std::memory_order_acquire);
    if (stop_) return;
    if (ith >= n_) continue;  // not in this run
    (*job_)(ith);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_ - 1) {
      done_gen_.fetch_add(1);
      wake_all(done_gen_, done_sleepers_);
    }
  }
}

void ThreadPool::run(int n, const std::function<void(int)>& f) {
  if (n <= 1) {
    n_ = 1;
    f(0);
    return;
  }
  while (int(threads_.size()) < n - 1) {
    // A new worker waits for the generation after the current one: this run's.
    const int ith = int(threads_.size()) + 1;
    const uint32_t gen = job_gen_.load();
    threads_.emplace_back([this, ith, gen] { worker(ith, gen); });
  }
  job_ = &f;
  n_ = n;
  done_.store(0, std::memory_order_relaxed);
  arrived_.store(0, std::memory_order_relaxed);
  const uint32_t done_seen = done_gen_.load();
  job_gen_.fetch_add(1);
  wake_all(job_gen_, job_sleepers_);
  // The workers use f and this run's state until they are done: wait for
  // them even when f(0) throws.
  std::exception_ptr error;
  try {
    f(0);
  } catch (...) {
    error = std::current_exception();
  }
  while (done_.load(std::memory_order_acquire) != n - 1) wait_change(done_gen_, done_seen, done_sleepers_);
  if (error) std::rethrow_exception(error);
}

void ThreadPool::barrier() {
  if (n_ <= 1) return;
  const uint32_t g = barrier_gen_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
    arrived_.store(0, std::memory_order_relaxed);
    barrier_gen_.fetch_add(1);
    wake_all(barrier_gen_, barrier_sleepers_);
    return;
  }
  wait_change(barrier_gen_, g, barrier_sleepers_);
}

}  // namespace ggml
