#pragma once
// Building blocks the architecture graphs share (llm/src/arch_*.cpp): linear
// layers, norms, and attention over the session's KV cache.
#include "ggml/ggml.h"
#include "llm/model.h"

namespace llm {

// The tensors of one layer's attention whose shapes or offsets follow the
// cache position: a one-token graph built for n_past = cap - 1 is reused for
// any n_past < cap by patch_attention.
struct AttnPatch {
  ggml::Tensor *K, *V;                      // the layer's cache
  ggml::Tensor *k_dst, *k_cpy, *v_dst, *v_cpy;  // where the token's k and v are stored
  ggml::Tensor *kk, *vv, *scores, *probs;   // n_kv = n_past + 1 columns or rows
};
void patch_attention(const AttnPatch& a, int64_t n_past);

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
  std::vector<AttnPatch>* patches = nullptr;  // where given (one token), attention() records its layer's
};

ggml::Tensor* linear(ggml::Context& ctx, ggml::Tensor* x, ggml::Tensor* w, ggml::Tensor* b = nullptr);
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
