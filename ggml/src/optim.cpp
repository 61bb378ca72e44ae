// The Optimizer: the step's gradients, its norm and update graphs, schedules.
#include "ggml/optim.h"

#include <cmath>
#include <cstring>

#include "ggml/ops.h"

namespace ggml {

double schedule_lr(LrSchedule s, double lr, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return lr * double(step) / double(std::max<int64_t>(1, warmup));
  switch (s) {
    case LrSchedule::Constant: return lr;
    case LrSchedule::Linear:
      return lr * std::max(0.0, double(total - step) / double(std::max<int64_t>(1, total - warmup)));
    case LrSchedule::Cosine: {
      const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
      return lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
    }
  }
  return lr;
}

LrSchedule parse_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::Constant;
  if (name == "linear") return LrSchedule::Linear;
  if (name == "cosine") return LrSchedule::Cosine;
  fail("unknown learning-rate schedule '" + name + "' (constant, linear or cosine)");
}

const char* schedule_name(LrSchedule s) {
  return s == LrSchedule::Linear ? "linear" : s == LrSchedule::Cosine ? "cosine" : "constant";
}

Optimizer::Optimizer(std::vector<Tensor*> params, const OptimizerConfig& cfg, Backend& backend)
    : cfg_(cfg), backend_(backend), params_(std::move(params)), ctx_(std::make_unique<Context>()) {
  if (!(cfg.lr >= 0) || !(cfg.beta1 >= 0 && cfg.beta1 < 1) || !(cfg.beta2 >= 0 && cfg.beta2 < 1) || !(cfg.eps > 0) ||
      !(cfg.weight_decay >= 0) || !(cfg.momentum >= 0 && cfg.momentum < 1) || !(cfg.clip_norm >= 0) || cfg.warmup < 0 ||
      cfg.total < 0)
    fail("optimizer: a hyperparameter is out of range (lr, weight decay, clip norm >= 0; betas, momentum in [0, 1); eps > 0)");
  if (cfg.schedule != LrSchedule::Constant && cfg.total <= cfg.warmup)
    fail("optimizer: a " + std::string(schedule_name(cfg.schedule)) + " schedule needs more total steps than warm-up steps");
  GGML_CHECK(!params_.empty(), nullptr, "optimizer: no parameters to train");
  norm_g_ = std::make_unique<Graph>();
  opt_g_ = std::make_unique<Graph>();
  const bool adamw = cfg.kind != OptimizerConfig::Kind::SGD;
  const bool eight = cfg.kind == OptimizerConfig::Kind::AdamW8bit;
  for (Tensor* p : params_) {
    GGML_CHECK(p->op == Op::NONE && p->type == Type::F32 && p->is_contiguous() && p->data, p,
               "optimizer: a parameter must be a contiguous F32 leaf with data");
    auto state = [&](const char* what) { return ctx_->new_tensor(Type::F32, p->ne, 4, p->name + what); };
    Tensor* g = state(" (step grad)");
    grads_.push_back(g);
    Tensor* n = sum_sq(*ctx_, g);
    norm_g_->expand(n);
    norms_.push_back(n);
    Tensor* u;
    if (eight && p->nelements() >= cfg.min_8bit_size) {
      const int64_t n = p->nelements(), blocks = (n + kDyn8Block - 1) / kDyn8Block;
      m_.push_back(ctx_->new_tensor(Type::I8, {n, 2}, p->name + ".codes8"));
      v_.push_back(ctx_->new_tensor(Type::F32, {blocks, 2}, p->name + ".absmax8"));
      u = opt_adamw8(*ctx_, p, g, m_.back(), v_.back(), AdamWStep{});
    } else if (adamw) {
      m_.push_back(state(".m"));
      v_.push_back(state(".v"));
      u = opt_adamw(*ctx_, p, g, m_.back(), v_.back(), AdamWStep{});
    } else {
      m_.push_back(cfg.momentum > 0 ? state(".momentum") : g);  // without momentum the buffer is never written
      u = opt_sgd(*ctx_, p, g, m_.back(), SgdStep{});
    }
    opt_g_->expand(u);
    updates_.push_back(u);
  }
  norm_alloc_ = std::make_unique<GraphAllocator>(GraphAllocator::Mode::Reuse, &backend_);
  opt_alloc_ = std::make_unique<GraphAllocator>(GraphAllocator::Mode::Reuse, &backend_);
  norm_alloc_->allocate(*norm_g_);
  opt_alloc_->allocate(*opt_g_);
}

Optimizer::~Optimizer() = default;

void Optimizer::set_steps(int64_t n) {
  GGML_CHECK(n >= 0, nullptr, "optimizer: a negative step count");
  steps_ = n;
}

Tensor* Optimizer::grad(const Tensor* param) const {
  for (size_t i = 0; i < params_.size(); i++)
    if (params_[i] == param) return grads_[i];
  return nullptr;
}

std::vector<Tensor*> Optimizer::state() const {
  std::vector<Tensor*> s;
  if (cfg_.kind != OptimizerConfig::Kind::SGD) {
    for (size_t i = 0; i < params_.size(); i++) s.push_back(m_[i]), s.push_back(v_[i]);
  } else if (cfg_.momentum > 0) {
    s = m_;
  }
  return s;
}

Optimizer::Memory Optimizer::memory() const {
  Memory m;
  for (const Tensor* g : grads_) m.gradients += g->nbytes();
  for (const Tensor* s : state()) m.state += s->nbytes();
  const size_t arena = ctx_->arena_used();
  m.other = norm_alloc_->buffer_size() + opt_alloc_->buffer_size() +
            (arena > m.gradients + m.state ? arena - m.gradients - m.state : 0);
  return m;
}

void Optimizer::accumulate(Context& ctx, Graph& g, const Gradients& grads) {
  for (size_t i = 0; i < params_.size(); i++) {
    Tensor* gr = grads.of(params_[i]);
    GGML_CHECK(gr != nullptr, params_[i], "optimizer: the loss has no gradient for this parameter");
    g.expand(cpy(ctx, add(ctx, grads_[i], gr), grads_[i]));
  }
}

StepStats Optimizer::step() {
  // Here the step's gradients are complete.
  backend_.compute(*norm_g_);
  double sq = 0;
  for (const Tensor* n : norms_) sq += double(*n->as<float>());
  StepStats st;
  st.grad_norm = std::sqrt(sq);
  GGML_CHECK(std::isfinite(st.grad_norm), nullptr,
             "optimizer: the gradients are not finite (a diverged loss; lower the learning rate)");
  if (cfg_.clip_norm > 0) st.clip_scale = std::min(1.0, cfg_.clip_norm / (st.grad_norm + 1e-6));
  const int64_t t = steps_ + 1;
  st.step = t;
  st.lr = schedule_lr(cfg_.schedule, cfg_.lr, steps_, cfg_.warmup, cfg_.total);
  for (Tensor* u : updates_) {
    if (u->op == Op::OPT_ADAMW || u->op == Op::OPT_ADAMW8) {
      AdamWStep a;
      a.beta2 = float(cfg_.beta2);
      a.lerp1 = float(1.0 - double(cfg_.beta1));
      a.lerp2 = float(1.0 - double(cfg_.beta2));
      a.eps = float(cfg_.eps);
      a.decay = float(1.0 - st.lr * double(cfg_.weight_decay));
      a.step_size = float(st.lr / (1.0 - std::pow(double(cfg_.beta1), double(t))));
      a.bias2_sqrt = float(std::sqrt(1.0 - std::pow(double(cfg_.beta2), double(t))));
      a.grad_scale = float(st.clip_scale);
      set_adamw(u, a);
    } else {
      set_sgd(u, SgdStep{float(st.lr), float(cfg_.momentum), float(cfg_.weight_decay), float(st.clip_scale)});
    }
  }
  backend_.compute(*opt_g_);
  for (Tensor* g : grads_) std::memset(g->data, 0, g->nbytes());
  steps_ = t;
  return st;
}

}  // namespace ggml
