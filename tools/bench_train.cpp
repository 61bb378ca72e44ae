#include "bench_train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

using namespace ggml;

namespace {
// TinyLlama's layer: 2048 wide, 32 heads of 64, 4 KV heads, SwiGLU of 5632.
constexpr int64_t D = 2048, HD = 64, NH = 32, NKV = 4, FF = 5632;

struct Layer {
  Context ctx{size_t(64) << 20};
  std::mt19937 rng{1};
  std::vector<Tensor*> params;

  Tensor* filled(Type t, int64_t k, int64_t m, float sd) {
    Tensor* w = ctx.new_tensor(t, {k, m});
    std::normal_distribution<float> nd(0.0f, sd);
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t i = 0; i < m; i++) {
      for (auto& v : row) v = nd(rng);
      traits(t).from_float(row.data(), w->row_ptr(i), k);
    }
    return w;
  }
  // W x + 2 B (A x): the base frozen, A and B trained (B non-zero, so every
  // gradient path does work).
  Tensor* linear(Type base, Tensor* x, int64_t out, int rank) {
    Tensor* w = filled(base, x->ne[0], out, 0.02f);
    Tensor* a = filled(Type::F32, x->ne[0], rank, 0.02f);
    Tensor* b = filled(Type::F32, rank, out, 0.02f);
    set_trainable(a);
    set_trainable(b);
    params.push_back(a);
    params.push_back(b);
    return add(ctx, mul_mat(ctx, w, x), scale(ctx, mul_mat(ctx, b, mul_mat(ctx, a, x)), 2.0f));
  }
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

void bench_train(const TrainBenchOptions& o) {
  const int64_t T = o.tokens;
  auto be = cpu_backend(o.threads);
  if (!o.json) {
    std::printf("bench-ops --train: %d TinyLlama-shaped layer%s (%lld wide, %lld heads, %lld KV heads, FFN %lld), "
                "LoRA rank %d on all 7 projections, %lld tokens, %d threads%s\n\n",
                o.layers, o.layers == 1 ? "" : "s", (long long)D, (long long)NH, (long long)NKV, (long long)FF, o.rank,
                (long long)T, o.threads, o.bf16 ? ", products through the base and kept activations in bf16" : "");
    std::printf("| base | checkpointing | forward t/s | forward+backward t/s | backward / forward | planned MiB |\n");
    std::printf("|---|---|---|---|---|---|\n");
  }
  for (Type base : o.types)
    for (bool ck : {false, true}) {
      Layer L;
      Context& ctx = L.ctx;
      Tensor* x = L.filled(Type::F32, D, T, 1.0f);
      Tensor* pos = ctx.new_tensor(Type::I32, {T});
      for (int64_t i = 0; i < T; i++) pos->as<int32_t>()[i] = int32_t(i);
      std::vector<Tensor*> inputs;
      Tensor* y = x;
      for (int l = 0; l < o.layers; l++) {
        inputs.push_back(y);
        Tensor* h = rms_norm(ctx, y, 1e-5f, L.filled(Type::F32, D, 1, 0.1f));
        Tensor* q = rope(ctx, reshape(ctx, L.linear(base, h, D, o.rank), {HD, NH, T}), pos, int(HD), RopeMode::Interleaved);
        Tensor* k = rope(ctx, reshape(ctx, L.linear(base, h, NKV * HD, o.rank), {HD, NKV, T}), pos, int(HD),
                         RopeMode::Interleaved);
        Tensor* v = L.linear(base, h, NKV * HD, o.rank);
        Tensor* kq = soft_max(ctx, mul_mat(ctx, permute(ctx, k, 0, 2, 1, 3), permute(ctx, q, 0, 2, 1, 3)),
                              1.0f / std::sqrt(float(HD)), nullptr, 0);
        Tensor* vv = cont(ctx, permute(ctx, reshape(ctx, v, {HD, NKV, T}), 1, 2, 0, 3));
        Tensor* att = reshape(ctx, cont(ctx, permute(ctx, mul_mat(ctx, vv, kq), 0, 2, 1, 3)), {D, T});
        Tensor* x2 = add(ctx, y, L.linear(base, att, D, o.rank));
        Tensor* h2 = rms_norm(ctx, x2, 1e-5f, L.filled(Type::F32, D, 1, 0.1f));
        Tensor* g = silu_mul(ctx, L.linear(base, h2, FF, o.rank), L.linear(base, h2, FF, o.rank));
        y = add(ctx, x2, L.linear(base, g, D, o.rank));
      }
      inputs.push_back(y);
      // a loss over the layer's output (its 2048 values as logits)
      Tensor* tg = ctx.new_tensor(Type::I32, {T});
      for (int64_t i = 0; i < T; i++) tg->as<int32_t>()[i] = int32_t((i * 7919) % D);
      Tensor* loss = cross_entropy(ctx, y, tg);

      // The forward pass alone first, on its own plan; then its results are
      // planned again with the backward graph's (one buffer for both).
      Graph fwd;
      fwd.expand(loss);
      double tf = 1e30, tb = 1e30;
      {
        GraphAllocator fa(GraphAllocator::Mode::Reuse, be.get());
        fa.allocate(fwd);
        be->compute(fwd);  // warm-up
        for (int r = 0; r < o.reps; r++) {
          const double t0 = now();
          be->compute(fwd);
          tf = std::min(tf, now() - t0);
        }
        for (Tensor* n : fwd.nodes()) n->data = nullptr;
      }
      Graph g2;
      g2.expand(loss);
      BackwardOptions bo;
      if (ck) bo.checkpoints = inputs;
      bo.bf16_products = o.bf16;
      bo.bf16_activations = o.bf16;
      bo.bf16_attention = o.bf16;
      bo.int8_products = o.int8;
      build_backward(ctx, g2, loss, bo);
      GraphAllocator ba(GraphAllocator::Mode::Reuse, be.get());
      ba.allocate(g2);
      be->compute(g2);  // warm-up
      for (int r = 0; r < o.reps; r++) {
        const double t0 = now();
        be->compute(g2);
        tb = std::min(tb, now() - t0);
      }
      const double mib = double(ba.buffer_size()) / (1 << 20);
      if (o.json)
        std::printf("{\"base\": \"%s\", \"checkpointing\": %s, \"layers\": %d, \"tokens\": %lld, \"forward_tps\": %.1f, "
                    "\"train_tps\": %.1f, \"planned_bytes\": %zu}\n",
                    type_name(base), ck ? "true" : "false", o.layers, (long long)T, T / tf, T / tb, ba.buffer_size());
      else
        std::printf("| %s | %s | %.1f | %.1f | %.2f | %.1f |\n", type_name(base), ck ? "yes" : "no", T / tf, T / tb,
                    (tb - tf) / tf, mib);
      std::fflush(stdout);
    }
}
