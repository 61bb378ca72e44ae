#pragma once
// The machine's memory read bandwidth, measured the way bench-ops and bench
// compare kernels against it.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>

// Read bandwidth of n_threads streaming a buffer far larger than the caches:
// each thread sums its own contiguous half with independent accumulators and
// software prefetch, the best plain read loop we have.
inline double measure_read_bandwidth(int n_threads, size_t bytes) {
  const size_t n = bytes / sizeof(uint64_t) / 256 * 256;
  // One buffer for every call: allocating anew would measure page faults.
  static std::unique_ptr<uint64_t[]> buf;
  static size_t have = 0;
  if (have < n) {
    buf.reset(new uint64_t[n]);
    have = n;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9e3779b97f4a7c15ULL;  // first touch by the reader
  }
  double best = 0;
  uint64_t sink = 0;
  for (int rep = 0; rep < 5; rep++) {
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t total = 0;
#pragma omp parallel num_threads(n_threads) reduction(+ : total)
    {
      const int nt = omp_get_num_threads(), it = omp_get_thread_num();
      const size_t lo = n / 256 * size_t(it) / size_t(nt) * 256, hi = n / 256 * size_t(it + 1) / size_t(nt) * 256;
      // 64-byte vectors (GCC vector extension: the widest loads the target
      // has), four independent sums, 256 bytes a step.
      typedef uint64_t v8 __attribute__((vector_size(64)));
      v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (size_t i = lo; i < hi; i += 32) {
        __builtin_prefetch(&buf[i] + 256);
        v8 x0, x1, x2, x3;
        std::memcpy(&x0, &buf[i], 64);
        std::memcpy(&x1, &buf[i + 8], 64);
        std::memcpy(&x2, &buf[i + 16], 64);
        std::memcpy(&x3, &buf[i + 24], 64);
        a0 += x0; a1 += x1; a2 += x2; a3 += x3;
      }
      const v8 a = a0 + a1 + a2 + a3;
      for (int k = 0; k < 8; k++) total += a[k];
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink += total;
    best = std::max(best, double(n * sizeof(uint64_t)) / s / 1e9);
  }
  if (sink == 42) std::puts("");  // keep the loads
  return best;
}

