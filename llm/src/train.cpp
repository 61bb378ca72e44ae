#include "llm/train.h"

#include "blocks.h"
#include "llm/error.h"
#include "llm/lora.h"

namespace llm {

using ggml::Tensor;

TrainGraph build_train_graph(const Model& model, const Lora* lora, ggml::Context& ctx, ggml::Graph& g, int64_t len,
                             bool lora_dropout, int64_t n_seq) {
  const HParams& hp = model.hp;
  if (len < 1 || len > hp.n_ctx_train)
    throw Error("a training sequence of " + std::to_string(len) + " tokens is outside the model's context of " +
                std::to_string(hp.n_ctx_train));
  if (n_seq < 1) throw Error("a training batch needs at least one sequence");
  const int64_t n = len * n_seq;
  static const std::vector<Tensor*> no_cache;
  GraphInputs in{ctx, g, model, 0, n, nullptr, nullptr, no_cache, no_cache, -1, {}, nullptr, nullptr, n_seq};
  if (lora) in.loras.push_back({lora, 1.0f});
  TrainGraph t;
  in.layer_inputs = &t.layer_inputs;
  if (lora_dropout) in.dropout_masks = &t.dropout_masks;
  in.tokens = t.tokens = ctx.new_tensor(ggml::Type::I32, {n}, "tokens");
  in.positions = ctx.new_tensor(ggml::Type::I32, {n}, "positions");
  for (int64_t i = 0; i < n; i++) in.positions->as<int32_t>()[i] = int32_t(i % len);
  Tensor* h = nullptr;
  switch (hp.arch) {
    case Arch::LLAMA: h = build_llama(in); break;
    case Arch::GPTNEOX: h = build_gptneox(in); break;
    case Arch::GPTJ: h = build_gptj(in); break;
  }
  t.logits = linear(in, h, model.output ? model.output : model.tok_embd, model.output_b);
  t.targets = ctx.new_tensor(ggml::Type::I32, {n}, "targets");
  t.count = ctx.new_tensor(ggml::Type::F32, {1}, "count");
  *t.count->as<float>() = float(n);
  t.loss = ggml::cross_entropy(ctx, t.logits, t.targets, t.count);
  t.loss->name = "loss";
  g.expand(t.loss);
  return t;
}

}  // namespace llm
