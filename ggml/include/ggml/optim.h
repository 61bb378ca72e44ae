#pragma once
// The training step: gradients of micro-batches summed into the step's,
// clipped by their global norm, applied by AdamW or SGD with momentum under a
// learning-rate schedule. Optimizer state is plain tensors (saved as any).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autodiff.h"
#include "backend.h"

namespace ggml {

// Sum of the squares of an F32 tensor's elements (accumulated in double), F32 [1].
Tensor* sum_sq(Context& ctx, Tensor* a);

// One AdamW update of p in place (PyTorch's torch.optim.AdamW, float for
// float): g' = g * grad_scale; p *= decay; m += lerp1 (g' - m); v = beta2 v +
// lerp2 g'^2; p -= step_size * m / (sqrt(v) / bias2_sqrt + eps), where the
// host works out in double what PyTorch's Python does: lerp1 = 1 - beta1,
// lerp2 = 1 - beta2, decay = 1 - lr * weight_decay, step_size = lr / (1 -
// beta1^t), bias2_sqrt = sqrt(1 - beta2^t). The values live in the node's
// op_params, so each step sets them (set_adamw) on the same planned graph.
// p, g, m, v: F32, one shape, contiguous. The result is p.
struct AdamWStep {
  float beta2 = 0.999f, lerp1 = 0.1f, lerp2 = 0.001f, eps = 1e-8f;
  float decay = 1.0f, step_size = 0.0f, bias2_sqrt = 1.0f, grad_scale = 1.0f;
};
Tensor* opt_adamw(Context& ctx, Tensor* p, Tensor* g, Tensor* m, Tensor* v, const AdamWStep& s);
void set_adamw(Tensor* node, const AdamWStep& s);  // opt_adamw's or opt_adamw8's

// 8-bit AdamW (bitsandbytes' AdamW8bit): both moments stored block-wise
// quantized, blocks of kDyn8Block elements, each a byte indexing a dynamic
// map (dyn8_map: signed for m, unsigned for v) times its block's absmax.
// Each step dequantizes a block, updates it as opt_adamw does, and quantizes
// it again to the nearest code of its new absmax. codes: I8 [n, 2] (m's codes,
// then v's), absmax: F32 [n_blocks, 2]; zeros to start (absmax 0 is 0).
constexpr int64_t kDyn8Block = 256;
Tensor* opt_adamw8(Context& ctx, Tensor* p, Tensor* g, Tensor* codes, Tensor* absmax, const AdamWStep& s);
// The 256 values of bitsandbytes' create_dynamic_map(signed), ascending:
// for exponents 10^-6 ... 10^0, the midpoints of a linear split of
// [0.1, 1] into 2^i (signed, each sign) or 2^(i+1) parts, with 0 and 1.
const float* dyn8_map(bool is_signed);
// x[0, n) to codes and one absmax per block (quantize_blockwise), and back.
void dyn8_quantize(const float* x, int64_t n, bool is_signed, uint8_t* codes, float* absmax);
void dyn8_dequantize(const uint8_t* codes, const float* absmax, int64_t n, bool is_signed, float* x);

// One SGD update (torch.optim.SGD, no dampening): d = g' + weight_decay p;
// buf = momentum buf + d (buf starts at zero); p -= lr buf (lr d without momentum).
struct SgdStep {
  float lr = 0.0f, momentum = 0.0f, weight_decay = 0.0f, grad_scale = 1.0f;
};
Tensor* opt_sgd(Context& ctx, Tensor* p, Tensor* g, Tensor* buf, const SgdStep& s);
void set_sgd(Tensor* node, const SgdStep& s);

// Learning rate at optimizer step `step` (0 for the first), as transformers'
// get_{constant,linear,cosine}_schedule_with_warmup: a linear warm-up from 0
// over `warmup` steps, then constant, linear down to 0 at `total`, or half a
// cosine down to 0 at `total`.
enum class LrSchedule { Constant, Linear, Cosine };
double schedule_lr(LrSchedule s, double lr, int64_t step, int64_t warmup, int64_t total);
LrSchedule parse_schedule(const std::string& name);  // constant, linear, cosine; throws otherwise
const char* schedule_name(LrSchedule s);

struct OptimizerConfig {
  // AdamW8bit: AdamW with 8-bit moments (opt_adamw8) for parameters of at
  // least min_8bit_size elements, F32 moments for smaller ones (as bitsandbytes).
  enum class Kind { AdamW, AdamW8bit, SGD } kind = Kind::AdamW;
  int64_t min_8bit_size = 4096;
  // doubles, as PyTorch's Python holds them: what reaches the kernels is
  // worked out from them in double, then rounded once
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;   // SGD
  double clip_norm = 0.0;  // global gradient norm limit; 0: none
  LrSchedule schedule = LrSchedule::Constant;
  int64_t warmup = 0, total = 0;
};

struct StepStats {
  int64_t step = 0;      // optimizer steps done, this one included
  double lr = 0;         // the rate this step used
  double grad_norm = 0;  // global norm of the step's gradients, before clipping
  double clip_scale = 1; // what the gradients were multiplied by
};

class Optimizer {
 public:
  // params: F32 leaves, contiguous. State and the step's gradients are
  // allocated here, zeroed; the step graphs run on backend.
  Optimizer(std::vector<Tensor*> params, const OptimizerConfig& cfg, Backend& backend);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Adds to g (after build_backward, before planning) the nodes that sum
  // this micro-batch's gradients into the step's.
  void accumulate(Context& ctx, Graph& g, const Gradients& grads);
  // The one place where a step's gradients are complete (every micro-batch
  // summed; a data-parallel all-reduce belongs here): clips them, applies the
  // update to every parameter, zeroes them for the next step.
  StepStats step();

  int64_t steps() const { return steps_; }
  void set_steps(int64_t n);  // resuming: the schedule and bias correction follow it
  const OptimizerConfig& config() const { return cfg_; }
  const std::vector<Tensor*>& params() const { return params_; }
  Tensor* grad(const Tensor* param) const;  // the step's gradient so far
  // The state tensors (AdamW: m and v of each parameter; SGD with momentum:
  // its buffer), named after the parameter, for checkpoints.
  std::vector<Tensor*> state() const;
  // Memory it holds: the step's gradient sums, the state, and the rest (the
  // norm and update graphs' results, its context's bookkeeping).
  struct Memory {
    size_t gradients = 0, state = 0, other = 0;
  };
  Memory memory() const;
  std::vector<Graph*> graphs() const { return {norm_g_.get(), opt_g_.get()}; }

 private:
  OptimizerConfig cfg_;
  Backend& backend_;
  std::vector<Tensor*> params_, grads_, m_, v_, updates_, norms_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<Graph> norm_g_, opt_g_;
  std::unique_ptr<GraphAllocator> norm_alloc_, opt_alloc_;
  int64_t steps_ = 0;
};

}  // namespace ggml
