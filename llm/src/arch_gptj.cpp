// GPT-J: one layer norm feeds both attention and MLP (parallel block),
// interleaved rotary on the first n_rot dims, no attention biases, GELU
// (tanh) MLP with biases, a biased output head.
#include "blocks.h"

namespace llm {

using ggml::Tensor;

Tensor* build_gptj(GraphInputs& in) {
  ggml::Context& ctx = in.ctx;
  const Model& m = in.model;
  const HParams& hp = m.hp;
  const int64_t hd = hp.head_dim(), nt = in.n_tokens;
  Tensor* x = ggml::get_rows(ctx, m.tok_embd, in.tokens);
  for (int il = 0; il < (int)hp.n_layer; il++) {
    const Layer& l = m.layers[il];
    if (in.layer_inputs) in.layer_inputs->push_back(x);
    Tensor* h = ggml::layer_norm(ctx, x, l.attn_norm, l.attn_norm_b, hp.norm_eps);
    Tensor* q = ggml::reshape(ctx, linear(in, h, l.wq), {hd, hp.n_head, nt});
    Tensor* k = ggml::reshape(ctx, linear(in, h, l.wk), {hd, hp.n_head, nt});
    Tensor* v = linear(in, h, l.wv);
    q = ggml::rope(ctx, q, in.positions, (int)hp.n_rot, ggml::RopeMode::Interleaved, hp.rope_base, hp.rope_freq_scale);
    k = ggml::rope(ctx, k, in.positions, (int)hp.n_rot, ggml::RopeMode::Interleaved, hp.rope_base, hp.rope_freq_scale);
    Tensor* attn = linear(in, attention(in, il, q, k, v), l.wo);
    Tensor* mlp = linear(in, ggml::gelu(ctx, linear(in, h, l.w_up, l.b_up)), l.w_down, l.b_down);
    x = ggml::add(ctx, ggml::add(ctx, x, attn), mlp);
  }
  if (in.layer_inputs) in.layer_inputs->push_back(x);
  return ggml::layer_norm(ctx, x, m.output_norm, m.output_norm_b, hp.norm_eps);
}

}  // namespace llm
