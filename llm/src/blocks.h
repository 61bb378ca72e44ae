#pragma once
// Building blocks the architecture graphs share (llm/src/arch_*.cpp): linear
// layers, norms, and attention over the session's KV cache.
#include "ggml/ggml.h"
#include "llm/model.h"

namespace llm {

class Lora;

// Everything one forward graph needs: the batch's position in the cache and
// the per-layer cache tensors.
struct GraphInputs {
  ggml::Context& ctx;
  ggml::Graph& graph;
  const Model& model;
  int64_t n_past = 0, n_tokens = 0;
  ggml::Tensor* tokens = nullptr;     // I32 [n_tokens]
  ggml::Tensor* positions = nullptr;  // I32 [n_tokens]: n_past + i
  const std::vector<ggml::Tensor*>& k_cache;  // [head_dim, n_ctx, n_head_kv]
  const std::vector<ggml::Tensor*>& v_cache;  // [n_ctx, head_dim, n_head_kv] (transposed)
  // A graph parameter (ggml::Graph::new_param) that the cache position
  // follows, for a graph built once at the largest n_past and reused for
  // smaller ones; -1: n_past is fixed.
  int n_past_param = -1;
  // LoRA adapters beside the weights they name, each with a scale on its update.
  std::vector<std::pair<const Lora*, float>> loras;
  // Where the architecture records each layer's input and the last layer's
  // output (the checkpoints of gradient checkpointing); null: not recorded.
  std::vector<ggml::Tensor*>* layer_inputs = nullptr;
  // Training with LoRA dropout: each adapter's input is multiplied by a mask
  // input made here (and listed); null: no dropout.
  std::vector<ggml::Tensor*>* dropout_masks = nullptr;
  // Training batches (no cache): n_tokens is n_seq sequences of equal length
  // one after another, each attending to itself alone.
  int64_t n_seq = 1;
  // With no cache (k_cache empty) attention runs over the batch alone, from
  // position 0, its keys and values never stored: the graph autodiff sees.
};

ggml::Tensor* linear(ggml::Context& ctx, ggml::Tensor* x, ggml::Tensor* w, ggml::Tensor* b = nullptr);
// The same, plus scale * B (A x) where in.lora adapts w.
ggml::Tensor* linear(GraphInputs& in, ggml::Tensor* x, ggml::Tensor* w, ggml::Tensor* b = nullptr);
ggml::Tensor* rms_norm(ggml::Context& ctx, ggml::Tensor* x, ggml::Tensor* w, float eps);

// q: [head_dim, n_head, n_tokens], k: [head_dim, n_head_kv, n_tokens] (both
// already rotated), v: [head_dim * n_head_kv, n_tokens]. Stores k and v in the
// layer's cache at n_past, attends causally over positions [0, n_past + n_tokens)
// and returns [n_embd, n_tokens] (before the output projection).
ggml::Tensor* attention(GraphInputs& in, int layer, ggml::Tensor* q, ggml::Tensor* k, ggml::Tensor* v);

// Per-architecture graphs: the final hidden state, normalized, [n_embd, n_tokens].
ggml::Tensor* build_llama(GraphInputs& in);
ggml::Tensor* build_gptneox(GraphInputs& in);
ggml::Tensor* build_gptj(GraphInputs& in);

}  // namespace llm
