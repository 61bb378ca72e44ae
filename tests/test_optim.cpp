// Optimizers, schedules, clipping and gradient accumulation against naive
// double-precision implementations of the textbook formulas.
#include "ggml/optim.h"
#include "helpers.h"

using namespace ggml;

namespace {
Tensor* param(Context& ctx, th::Rng& rng, std::initializer_list<int64_t> ne, const char* name) {
  Tensor* t = ctx.new_tensor(Type::F32, ne, name);
  th::fill(t, rng);
  set_trainable(t);
  return t;
}
std::vector<double> values(const Tensor* t) { return std::vector<double>(t->as<float>(), t->as<float>() + t->nelements()); }
// The norm of the difference over the norm of want.
double norm_rel(const std::vector<double>& got, const std::vector<double>& want) {
  double d = 0, n = 0;
  for (size_t i = 0; i < got.size(); i++) d += (got[i] - want[i]) * (got[i] - want[i]), n += want[i] * want[i];
  return std::sqrt(d / n);
}
double max_rel(const std::vector<double>& got, const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < got.size(); i++) e = std::max(e, std::fabs(got[i] - want[i]) / std::max(1e-3, std::fabs(want[i])));
  return e;
}
}  // namespace

TEST_CASE("AdamW: five steps with weight decay and bias correction, as the textbook formula in double") {
  th::Rng rng(1);
  Context ctx;
  Tensor* p = param(ctx, rng, {37, 3}, "p");
  auto be = cpu_backend(2);
  OptimizerConfig cfg;
  cfg.lr = 1e-2;
  cfg.weight_decay = 0.1;
  cfg.beta1 = 0.8;
  cfg.beta2 = 0.95;
  Optimizer opt({p}, cfg, *be);
  std::vector<double> w = values(p), m(w.size()), v(w.size());
  for (int t = 1; t <= 5; t++) {
    Tensor* g = opt.grad(p);
    th::fill(g, rng);
    const std::vector<double> gd = values(g);
    const StepStats st = opt.step();
    CHECK(st.step == t);
    CHECK(st.lr == doctest::Approx(1e-2));
    for (size_t i = 0; i < w.size(); i++) {
      w[i] *= 1 - cfg.lr * cfg.weight_decay;
      m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * gd[i];
      v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * gd[i] * gd[i];
      const double mh = m[i] / (1 - std::pow(cfg.beta1, t)), vh = v[i] / (1 - std::pow(cfg.beta2, t));
      w[i] -= cfg.lr * mh / (std::sqrt(vh) + cfg.eps);
    }
    CHECK(max_rel(values(p), w) < 1e-5);
    for (float x : std::vector<float>(g->as<float>(), g->as<float>() + g->nelements())) REQUIRE(x == 0.0f);  // zeroed
  }
  CHECK(opt.state().size() == 2);
}

TEST_CASE("SGD: momentum and weight decay as the formula; without momentum, no buffer") {
  for (double mom : {0.0, 0.9}) {
    th::Rng rng(2);
    Context ctx;
    Tensor* p = param(ctx, rng, {20}, "p");
    auto be = cpu_backend(1);
    OptimizerConfig cfg;
    cfg.kind = OptimizerConfig::Kind::SGD;
    cfg.lr = 0.05;
    cfg.momentum = mom;
    cfg.weight_decay = 0.01;
    Optimizer opt({p}, cfg, *be);
    CHECK(opt.state().size() == (mom > 0 ? 1u : 0u));
    std::vector<double> w = values(p), buf(w.size());
    for (int t = 1; t <= 4; t++) {
      th::fill(opt.grad(p), rng);
      const std::vector<double> gd = values(opt.grad(p));
      opt.step();
      for (size_t i = 0; i < w.size(); i++) {
        const double d = gd[i] + cfg.weight_decay * w[i];
        buf[i] = mom * buf[i] + d;
        w[i] -= cfg.lr * (mom > 0 ? buf[i] : d);
      }
      CHECK(max_rel(values(p), w) < 1e-5);
    }
  }
}

TEST_CASE("clipping by the global norm over every parameter") {
  th::Rng rng(3);
  Context ctx;
  Tensor* a = param(ctx, rng, {10, 4}, "a");
  Tensor* b = param(ctx, rng, {7}, "b");
  auto be = cpu_backend(2);
  OptimizerConfig cfg;
  cfg.kind = OptimizerConfig::Kind::SGD;
  cfg.lr = 1.0;
  cfg.clip_norm = 0.5;
  Optimizer opt({a, b}, cfg, *be);
  std::vector<double> before = values(a), gb;
  double sq = 0;
  for (Tensor* t : {a, b}) {
    th::fill(opt.grad(t), rng);
    for (double x : values(opt.grad(t))) sq += x * x;
  }
  gb = values(opt.grad(a));
  const StepStats st = opt.step();
  CHECK(st.grad_norm == doctest::Approx(std::sqrt(sq)).epsilon(1e-6));
  const double scale = 0.5 / (std::sqrt(sq) + 1e-6);
  CHECK(st.clip_scale == doctest::Approx(scale).epsilon(1e-9));
  std::vector<double> want(before.size());
  for (size_t i = 0; i < want.size(); i++) want[i] = before[i] - gb[i] * scale;
  CHECK(max_rel(values(a), want) < 1e-5);
  // a norm under the limit leaves the gradients as they are
  th::fill(opt.grad(a), rng, 1e-3f);
  CHECK(opt.step().clip_scale == 1.0);
}

TEST_CASE("learning-rate schedules: warm-up, then constant, linear or cosine") {
  const double lr = 2.0;
  CHECK(schedule_lr(LrSchedule::Constant, lr, 0, 4, 0) == 0.0);  // warm-up starts from zero
  CHECK(schedule_lr(LrSchedule::Constant, lr, 1, 4, 0) == doctest::Approx(0.5));
  CHECK(schedule_lr(LrSchedule::Constant, lr, 4, 4, 0) == doctest::Approx(2.0));
  CHECK(schedule_lr(LrSchedule::Constant, lr, 400, 4, 0) == doctest::Approx(2.0));
  CHECK(schedule_lr(LrSchedule::Linear, lr, 2, 2, 10) == doctest::Approx(2.0));
  CHECK(schedule_lr(LrSchedule::Linear, lr, 6, 2, 10) == doctest::Approx(1.0));
  CHECK(schedule_lr(LrSchedule::Linear, lr, 10, 2, 10) == doctest::Approx(0.0));
  CHECK(schedule_lr(LrSchedule::Linear, lr, 12, 2, 10) == 0.0);
  CHECK(schedule_lr(LrSchedule::Cosine, lr, 0, 0, 10) == doctest::Approx(2.0));
  CHECK(schedule_lr(LrSchedule::Cosine, lr, 5, 0, 10) == doctest::Approx(1.0));
  CHECK(schedule_lr(LrSchedule::Cosine, lr, 8, 2, 10) == doctest::Approx(2.0 * 0.5 * (1 + std::cos(M_PI * 0.75))));
  CHECK(schedule_lr(LrSchedule::Cosine, lr, 10, 0, 10) == doctest::Approx(0.0));
  CHECK(parse_schedule("cosine") == LrSchedule::Cosine);
  CHECK_THROWS_WITH_AS(parse_schedule("exp"), doctest::Contains("unknown learning-rate schedule 'exp'"), Error);
  // the optimizer follows the schedule by its step count
  th::Rng rng(4);
  Context ctx;
  Tensor* p = param(ctx, rng, {4}, "p");
  auto be = cpu_backend(1);
  OptimizerConfig cfg;
  cfg.schedule = LrSchedule::Linear;
  cfg.lr = 1.0;
  cfg.warmup = 2;
  cfg.total = 6;
  Optimizer opt({p}, cfg, *be);
  opt.set_steps(3);
  CHECK(opt.step().lr == doctest::Approx(0.75));
}

namespace {
// A linear model's cross-entropy over tokens [t0, t1) of a fixed batch,
// divided by `count` (the counted tokens of the whole step).
struct Micro {
  Context ctx;
  Graph g;
  Gradients grads;
  GraphAllocator alloc;
};
void run_micro(Micro& mb, Tensor* w, Tensor* x_all, const std::vector<int32_t>& tg, int64_t t0, int64_t t1, float count,
               Optimizer* opt, Backend& be) {
  Tensor* x = view_2d(mb.ctx, x_all, x_all->ne[0], t1 - t0, x_all->nb[1], size_t(t0) * x_all->nb[1]);
  Tensor* ids = mb.ctx.new_tensor(Type::I32, {t1 - t0});
  for (int64_t t = t0; t < t1; t++) ids->as<int32_t>()[t - t0] = tg[size_t(t)];
  Tensor* norm = mb.ctx.new_tensor(Type::F32, {1});
  *norm->as<float>() = count;
  Tensor* loss = cross_entropy(mb.ctx, mul_mat(mb.ctx, w, x), ids, norm);
  mb.g.expand(loss);
  mb.grads = build_backward(mb.ctx, mb.g, loss);
  if (opt) opt->accumulate(mb.ctx, mb.g, mb.grads);
  mb.alloc.set_backend(&be);
  mb.alloc.allocate(mb.g);
  be.compute(mb.g);
}
}  // namespace

TEST_CASE("gradient accumulation: two micro-batches normalised by the step's count equal one batch") {
  th::Rng rng(5);
  Context ctx;
  Tensor* w = param(ctx, rng, {8, 11}, "w");
  Tensor* x = ctx.new_tensor(Type::F32, {8, 6});
  th::fill(x, rng);
  std::vector<int32_t> tg = {3, -1, 7, 10, 0, -1};  // four counted tokens
  auto be = cpu_backend(2);
  Micro whole;
  run_micro(whole, w, x, tg, 0, 6, 4.0f, nullptr, *be);
  const std::vector<double> want = values(whole.grads.of(w));

  OptimizerConfig cfg;
  cfg.kind = OptimizerConfig::Kind::SGD;
  cfg.lr = 0.0;
  Optimizer opt({w}, cfg, *be);
  Micro a, b;
  run_micro(a, w, x, tg, 0, 2, 4.0f, &opt, *be);  // one counted token
  run_micro(b, w, x, tg, 2, 6, 4.0f, &opt, *be);  // three
  CHECK(norm_rel(values(opt.grad(w)), want) < 1e-6);  // the sums split differently: rounding only
  opt.step();
  for (double v : values(opt.grad(w))) REQUIRE(v == 0.0);
  // the graphs run again add the next step's micro-batches from zero
  be->compute(a.g);
  be->compute(b.g);
  CHECK(norm_rel(values(opt.grad(w)), want) < 1e-6);  // the sums split differently: rounding only
}

TEST_CASE("training a small model lowers its loss; the same floats for 1 and 4 threads") {
  std::vector<double> finals[2];
  for (int run = 0; run < 2; run++) {
    th::Rng rng(6);
    Context ctx;
    Tensor* w = param(ctx, rng, {16, 10}, "w");
    Tensor* bias = param(ctx, rng, {10}, "bias");
    Tensor* x = ctx.new_tensor(Type::F32, {16, 32});
    th::fill(x, rng);
    Tensor* ids = ctx.new_tensor(Type::I32, {32});
    for (int i = 0; i < 32; i++) ids->as<int32_t>()[i] = i % 10;
    Tensor* loss = cross_entropy(ctx, add(ctx, mul_mat(ctx, w, x), bias), ids);
    Graph g;
    g.expand(loss);
    Gradients grads = build_backward(ctx, g, loss);
    auto be = cpu_backend(run == 0 ? 1 : 4);
    OptimizerConfig cfg;
    cfg.lr = 0.05;
    cfg.clip_norm = 1.0;
    cfg.schedule = LrSchedule::Cosine;
    cfg.warmup = 2;
    cfg.total = 40;
    Optimizer opt({w, bias}, cfg, *be);
    opt.accumulate(ctx, g, grads);
    GraphAllocator alloc(GraphAllocator::Mode::Reuse, be.get());
    alloc.allocate(g);
    std::vector<double> losses;
    for (int s = 0; s < 40; s++) {
      be->compute(g);
      losses.push_back(*loss->as<float>());
      opt.step();
    }
    CHECK(losses.back() < 0.5 * losses.front());
    finals[run] = values(w);
    finals[run].insert(finals[run].end(), losses.begin(), losses.end());
  }
  CHECK(finals[0] == finals[1]);
}

TEST_CASE("optimizer: clear errors for bad settings and parameters") {
  th::Rng rng(7);
  Context ctx;
  Tensor* p = param(ctx, rng, {4}, "p");
  auto be = cpu_backend(1);
  OptimizerConfig bad;
  bad.beta1 = 1.0;
  CHECK_THROWS_WITH_AS(Optimizer({p}, bad, *be), doctest::Contains("out of range"), Error);
  OptimizerConfig sched;
  sched.schedule = LrSchedule::Cosine;
  sched.warmup = 10;
  sched.total = 5;
  CHECK_THROWS_WITH_AS(Optimizer({p}, sched, *be), doctest::Contains("more total steps"), Error);
  Tensor* h = ctx.new_tensor(Type::F16, {4});
  CHECK_THROWS_WITH_AS(Optimizer({h}, OptimizerConfig{}, *be), doctest::Contains("contiguous F32 leaf"), Error);
  Optimizer opt({p}, OptimizerConfig{}, *be);
  opt.grad(p)->as<float>()[1] = NAN;
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("not finite"), Error);
}

namespace {
// A float32 .npy of tests/data/adamw8bit (scripts/gen_adamw8bit_fixture.py:
// bitsandbytes' own code and optimizer); header parsed just enough.
std::vector<float> npy(const std::string& name) {
  const auto b = th::read_file(th::data_path("adamw8bit/" + name));
  REQUIRE(b.size() > 10);
  const size_t hlen = size_t(b[8]) | size_t(b[9]) << 8;
  const std::string header(b.begin() + 10, b.begin() + 10 + long(hlen));
  REQUIRE(header.find("'<f4'") != std::string::npos);
  std::vector<float> v((b.size() - 10 - hlen) / 4);
  std::memcpy(v.data(), b.data() + 10 + hlen, v.size() * 4);
  return v;
}
}  // namespace

TEST_CASE("8-bit states: bitsandbytes' dynamic maps and block-wise codes") {
  for (bool s : {true, false}) {
    CAPTURE(s);
    const std::vector<float> want = npy(s ? "qmap_signed.npy" : "qmap_unsigned.npy");
    REQUIRE(want.size() == 256);
    const float* got = dyn8_map(s);
    int differ = 0;
    for (int i = 0; i < 256; i++) differ += got[i] != want[size_t(i)];
    CHECK(differ == 0);
  }
  const std::vector<float> x = npy("x.npy"), codes = npy("x_codes.npy"), absmax = npy("x_absmax.npy");
  std::vector<uint8_t> c(x.size());
  std::vector<float> am(absmax.size());
  dyn8_quantize(x.data(), int64_t(x.size()), true, c.data(), am.data());
  CHECK(am == absmax);
  // The nearest code; bitsandbytes' search picks the other neighbour now and
  // then close to a midpoint (1 of these 1300 values).
  int differ = 0;
  for (size_t i = 0; i < x.size(); i++) {
    differ += c[i] != uint8_t(codes[i]);
    REQUIRE(std::abs(int(c[i]) - int(codes[i])) <= 1);
  }
  CHECK(differ <= 2);
  // Back: each value within half a code step of its block's absmax.
  std::vector<float> back(x.size());
  dyn8_dequantize(c.data(), am.data(), int64_t(x.size()), true, back.data());
  for (size_t i = 0; i < x.size(); i++) REQUIRE(std::fabs(back[i] - x[i]) <= 0.04f * am[i / 256] + 1e-30f);
}

TEST_CASE("AdamW8bit: six steps as bitsandbytes' AdamW8bit, small tensors in F32") {
  const std::vector<float> p0 = npy("p0.npy"), grads = npy("grads.npy"), steps = npy("p_steps.npy");
  const size_t n = p0.size();
  Context ctx;
  Tensor* p = ctx.new_tensor(Type::F32, {int64_t(n)}, "p");
  std::copy(p0.begin(), p0.end(), p->as<float>());
  set_trainable(p);
  th::Rng rng(3);
  Tensor* small = param(ctx, rng, {100}, "small");  // below min_8bit_size: F32 moments
  auto be = cpu_backend(3);
  OptimizerConfig cfg;
  cfg.kind = OptimizerConfig::Kind::AdamW8bit;
  cfg.lr = 1e-2;
  cfg.weight_decay = 0.01;
  Optimizer opt({p, small}, cfg, *be);
  const std::vector<Tensor*> st = opt.state();
  REQUIRE(st.size() == 4);
  CHECK(st[0]->type == Type::I8);
  CHECK(st[2]->type == Type::F32);
  CHECK(st[2]->nelements() == 100);
  const Optimizer::Memory mem = opt.memory();
  CHECK(mem.state == 2 * n + 8 * ((n + 255) / 256) + 2 * 100 * 4);  // against 8 n for F32 moments
  double worst = 0;
  for (size_t s = 0; s < 6; s++) {
    std::copy(grads.begin() + long(s * n), grads.begin() + long((s + 1) * n), opt.grad(p)->as<float>());
    opt.step();
    std::vector<double> want(steps.begin() + long(s * n), steps.begin() + long((s + 1) * n));
    worst = std::max(worst, norm_rel(values(p), want));
  }
  // The update's float arithmetic is ours (torch's lerp for m where
  // bitsandbytes multiplies and adds), so a code now and then lands one
  // step over: measured 5.9e-5 relative.
  CHECK(worst < 1e-4);
  const std::vector<float> s1 = npy("state1.npy"), s2 = npy("state2.npy");
  const uint8_t* codes = static_cast<const uint8_t*>(st[0]->data);
  const float* am = st[1]->as<float>();
  const std::vector<float> a1 = npy("absmax1.npy"), a2 = npy("absmax2.npy");
  int same = 0;
  double worst_m = 0;
  for (size_t i = 0; i < n; i++) {
    same += (codes[i] == uint8_t(s1[i])) + (codes[n + i] == uint8_t(s2[i]));
    // moments near zero sit where the signed code is densest: compare values
    const double ours = dyn8_map(true)[codes[i]] * am[i / 256], theirs = dyn8_map(true)[uint8_t(s1[i])] * a1[i / 256];
    worst_m = std::max(worst_m, std::fabs(ours - theirs) / a1[i / 256]);
  }
  CHECK(same >= int(2 * n * 97 / 100));  // measured 97.8%, after six requantizations
  CHECK(worst_m <= 0.05);                // of the block's absmax: a code step or two
  MESSAGE("AdamW8bit against bitsandbytes: parameters within " << worst << " after 6 steps, " << same << " of "
                                                                << 2 * n << " state codes identical");
}
