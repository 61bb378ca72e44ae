#pragma once
// Internal interface between the executor and the CPU kernels of each op.
#include <atomic>
#include <mutex>
#include <string>

#include "ggml/cpu.h"
#include "ggml/ops.h"
#include "ggml/tensor.h"

namespace ggml {

class ThreadPool;

// The format a tensor's bytes are in for the kernels: its type, or the
// rearranged format a backend layout holds it in.
inline Type fmt(const Tensor* t) { return cpu::format_of(t->type, t->layout); }

// First runtime error raised by any thread during a compute.
struct ErrorSink {
  std::atomic<bool> set{false};
  std::mutex mu;
  std::string msg;
  void raise(const std::string& m) {
    std::lock_guard<std::mutex> lock(mu);
    if (!set.exchange(true)) msg = m;
  }
};

// Items taken so far from one thread's share of the current node's work
// (for_each_item); a cache line each, so owners count without sharing.
struct alignas(64) Claim {
  std::atomic<int64_t> n{0};
};

struct ComputeParams {
  int ith = 0, nth = 1;           // this thread, thread count
  void* wdata = nullptr;          // shared work buffer
  size_t wsize = 0;
  const cpu::KernelSet* k = nullptr;
  ErrorSink* err = nullptr;
  Claim* claims = nullptr;        // nth counters, zero when the node starts (null: fixed shares)
  ThreadPool* pool = nullptr;     // the team's (null: one thread)
  void barrier() const;           // all nth threads meet here
};

// [begin, end) of n items for thread ith, in contiguous ranges.
inline void split_range(int64_t n, int ith, int nth, int64_t* begin, int64_t* end) {
  *begin = n * ith / nth;
  *end = n * (ith + 1) / nth;
}

// Runs f(w) for every w in [0, n) exactly once across the team. Each thread
// works through its own contiguous share (split_range) in order, then takes
// the next unclaimed items of the others' shares: the streams stay
// sequential, and a thread slowed down (a busy host, a later start) no longer
// holds the rest at the barrier. Which thread runs an item never changes its
// result. One shared counter for all items measured slower (interleaved
// streams); fixed shares left ~10% of thread time waiting at matrix-vector
// barriers (TinyLlama Q8_0 generation, 2 threads).
template <class F>
void for_each_item(const ComputeParams& p, int64_t n, F&& f) {
  if (p.claims == nullptr || p.nth == 1) {
    int64_t b, e;
    split_range(n, p.ith, p.nth, &b, &e);
    for (int64_t w = b; w < e; w++) f(w);
    return;
  }
  for (int d = 0; d < p.nth; d++) {
    const int t = (p.ith + d) % p.nth;
    int64_t b, e;
    split_range(n, t, p.nth, &b, &e);
    while (true) {
      const int64_t w = b + p.claims[t].n.fetch_add(1, std::memory_order_relaxed);
      if (w >= e) break;
      f(w);
    }
  }
}

// Bytes of shared work memory node needs with nth threads.
size_t work_size(const Tensor* node, int nth, const cpu::KernelSet& k);
void compute_forward(const ComputeParams& p, Tensor* node);

// Per-op kernels (compute_*.cpp).
void compute_copy(const ComputeParams& p, Tensor* dst);  // CPY and CONT
void compute_add(const ComputeParams& p, Tensor* dst);
void compute_mul(const ComputeParams& p, Tensor* dst);
void compute_scale(const ComputeParams& p, Tensor* dst);
void compute_unary(const ComputeParams& p, Tensor* dst);  // SILU, GELU, GELU_ERF
void compute_get_rows(const ComputeParams& p, Tensor* dst);
void compute_mul_mat(const ComputeParams& p, Tensor* dst);
size_t mul_mat_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
// Float-weight prompt products on the kernel set's GEMM microkernel (compute_gemm.cpp).
bool gemm_applies(const Tensor* dst, const cpu::KernelSet& k);
size_t gemm_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
void compute_gemm(const ComputeParams& p, Tensor* dst);
// Whether a weight format is one of the int8 GEMM's (Q8_0, Q4_0, Q4_1 and their rearranged layouts).
bool gemm_q_format(Type f);
// One panel of a bf16 GEMM's activations: rows jj < valid (F32, `ld` floats
// apart from `first`) as bf16 pairs along k, out[q * nr + jj] for q < units;
// pairs past the row's end and rows past `valid` are zeros. tmp holds
// PANEL_TMP_PAIRS pairs of each of the nr rows.
constexpr int64_t PANEL_TMP_PAIRS = 64;
void pack_bf16_panel(const cpu::KernelSet& k, const float* first, size_t ld, int64_t valid, int64_t nr, int64_t K,
                     int64_t units, uint32_t* out, uint32_t* tmp);
void compute_rms_norm(const ComputeParams& p, Tensor* dst);
// One row of rms_norm (y may be x): shared by the node and the matrix
// product that fuses it, so the two give the same floats.
void rms_norm_row(const float* x, float* y, int64_t n, float eps, const float* w);
// y = silu(x) * b for one row (y may be x; b contiguous): shared by the
// silu_mul node and the SwiGLU product that fuses it, likewise.
inline void silu_mul_row(const cpu::KernelSet& k, const float* x, float* y, const float* b, int64_t n) {
  k.silu(x, y, n);
  for (int64_t j = 0; j < n; j++) y[j] *= b[j];
}
void compute_norm(const ComputeParams& p, Tensor* dst);
void compute_rope(const ComputeParams& p, Tensor* dst);
void compute_soft_max(const ComputeParams& p, Tensor* dst);

// The loss and the ops of backward rules (compute_backward.cpp).
void compute_sum_to(const ComputeParams& p, Tensor* dst);
void compute_acc(const ComputeParams& p, Tensor* dst);
void compute_mul_mat_t(const ComputeParams& p, Tensor* dst);
size_t mul_mat_t_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
// Its mixed-precision path on the BF16 GEMM microkernel (compute_mmt_bf16.cpp).
bool mmt_bf16_applies(const Tensor* dst, const cpu::KernelSet& k);
size_t mmt_bf16_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
void compute_mmt_bf16(const ComputeParams& p, Tensor* dst);
// Its int8 path through block-quantized weights (compute_mmt_q8.cpp).
bool mmt_q8_applies(const Tensor* dst, const cpu::KernelSet& k);
size_t mmt_q8_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
void compute_mmt_q8(const ComputeParams& p, Tensor* dst);
void compute_get_rows_back(const ComputeParams& p, Tensor* dst);
void compute_rms_norm_back(const ComputeParams& p, Tensor* dst);
void compute_norm_back(const ComputeParams& p, Tensor* dst);
void compute_soft_max_back(const ComputeParams& p, Tensor* dst);
void compute_act_back(const ComputeParams& p, Tensor* dst);  // SILU_BACK, GELU_BACK
void compute_cross_entropy(const ComputeParams& p, Tensor* dst);
size_t cross_entropy_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
void compute_cross_entropy_back(const ComputeParams& p, Tensor* dst);
// Optimizer steps (compute_optim.cpp).
void compute_sum_sq(const ComputeParams& p, Tensor* dst);
size_t sum_sq_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k);
void compute_opt_adamw(const ComputeParams& p, Tensor* dst);
void compute_opt_sgd(const ComputeParams& p, Tensor* dst);
void compute_opt_adamw8(const ComputeParams& p, Tensor* dst);

// Reads row (i1, i2, i3) of t, any layout, as F32 into out (ne0 floats).
void load_row_f32(const cpu::KernelSet& k, const Tensor* t, int64_t i1, int64_t i2, int64_t i3, float* out);

// Per-op timing when GGML_PROFILE is set (exec.cpp).
void profile_add(const Tensor* n, double sec);

}  // namespace ggml
