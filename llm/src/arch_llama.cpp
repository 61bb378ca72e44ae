// LLaMA: RMS norm, rotary q/k (interleaved pairs: GGUF stores q/k permuted),
// grouped-query attention, SwiGLU MLP, pre-norm residuals.
#include "blocks.h"

namespace llm {

using ggml::Tensor;

Tensor* build_llama(GraphInputs& in) {
  ggml::Context& ctx = in.ctx;
  const Model& m = in.model;
  const HParams& hp = m.hp;
  const int64_t hd = hp.head_dim(), nt = in.n_tokens;
  Tensor* x = ggml::get_rows(ctx, m.tok_embd, in.tokens);
  auto rope = [&](Tensor* t) {
    return ggml::rope(ctx, t, in.positions, (int)hp.n_rot, ggml::RopeMode::Interleaved, hp.rope_base,
                      hp.rope_freq_scale);
  };
  // Plain ops: the backend fuses them where it has fused kernels (the CPU:
  // one token's norms, SwiGLU, residual adds, q/k/v and the q/k ropes).
  for (int il = 0; il < (int)hp.n_layer; il++) {
    const Layer& l = m.layers[il];
    if (in.layer_inputs) in.layer_inputs->push_back(x);
    Tensor* h = rms_norm(ctx, x, l.attn_norm, hp.norm_eps);
    Tensor* q = rope(ggml::reshape(ctx, linear(in, h, l.wq, l.bq), {hd, hp.n_head, nt}));
    Tensor* k = rope(ggml::reshape(ctx, linear(in, h, l.wk, l.bk), {hd, hp.n_head_kv, nt}));
    Tensor* v = linear(in, h, l.wv, l.bv);
    Tensor* att = attention(in, il, q, k, v);
    x = ggml::add(ctx, x, linear(in, att, l.wo, l.bo));
    h = rms_norm(ctx, x, l.ffn_norm, hp.norm_eps);
    Tensor* g = ggml::silu_mul(ctx, linear(in, h, l.w_gate), linear(in, h, l.w_up));
    x = ggml::add(ctx, x, linear(in, g, l.w_down));
  }
  if (in.layer_inputs) in.layer_inputs->push_back(x);
  return rms_norm(ctx, x, m.output_norm, hp.norm_eps);
}

}  // namespace llm
