#pragma once
// Peak rates of a kernel set's product instructions (cpu.h's peak loops),
// the ceiling bench-ops' products are compared with.
#include <algorithm>
#include <chrono>
#include <cstdint>

#include "ggml/cpu.h"

// G operations per second of fn on n_threads threads at once (one thread in
// tools built without OpenMP): each call sized to `secs`, best of three. 0
// where the set has no such instruction.
inline double peak_rate(double (*fn)(int64_t), int n_threads, double secs = 0.05) {
  if (!fn) return 0;
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  int64_t n = 1 << 12;
  double dt = 0;
  while (true) {
    const auto t0 = Clock::now();
    fn(n);
    dt = since(t0);
    if (dt > 0.01 || n > (int64_t(1) << 40)) break;
    n *= 4;
  }
  n = std::max<int64_t>(1, int64_t(double(n) * secs / std::max(dt, 1e-9)));
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    const auto t0 = Clock::now();
    double ops = 0;
#if defined(_OPENMP)
#pragma omp parallel num_threads(n_threads) reduction(+ : ops)
#endif
    ops += fn(n);
    best = std::max(best, ops / since(t0) / 1e9);
  }
  return best;
}

struct Peaks {
  double fma = 0, bf16 = 0, int8 = 0;  // GFLOP/s, GFLOP/s, GOP/s
};

inline Peaks measure_peaks(const ggml::cpu::KernelSet& k, int n_threads) {
  return {peak_rate(k.peak_fma, n_threads), peak_rate(k.peak_bf16, n_threads), peak_rate(k.peak_int8, n_threads)};
}
