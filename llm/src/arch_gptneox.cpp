// GPT-NeoX: layer norm with bias, fused qkv (stored [all q; all k; all v]),
// NeoX-layout rotary on the first n_rot dims, GELU (erf) MLP, parallel
// (x + attn(ln1 x) + mlp(ln2 x)) or sequential residual.
#include "blocks.h"

namespace llm {

using ggml::Tensor;

Tensor* build_gptneox(GraphInputs& in) {
  ggml::Context& ctx = in.ctx;
  const Model& m = in.model;
  const HParams& hp = m.hp;
  const int64_t hd = hp.head_dim(), nt = in.n_tokens, E = hp.n_embd;
  Tensor* x = ggml::get_rows(ctx, m.tok_embd, in.tokens);
  for (int il = 0; il < (int)hp.n_layer; il++) {
    const Layer& l = m.layers[il];
    if (in.layer_inputs) in.layer_inputs->push_back(x);
    Tensor* h = ggml::layer_norm(ctx, x, l.attn_norm, l.attn_norm_b, hp.norm_eps);
    Tensor* qkv = linear(in, h, l.wqkv, l.bqkv);  // [3E, nt]
    const size_t es = sizeof(float);
    auto part = [&](int i) {  // rows [i*E, (i+1)*E) of every token, as [hd, n_head, nt]
      return ggml::view_3d(ctx, qkv, hd, hp.n_head, nt, hd * es, qkv->nb[1], (size_t)i * E * es);
    };
    Tensor* q = ggml::rope(ctx, part(0), in.positions, (int)hp.n_rot, ggml::RopeMode::Neox, hp.rope_base, hp.rope_freq_scale);
    Tensor* k = ggml::rope(ctx, part(1), in.positions, (int)hp.n_rot, ggml::RopeMode::Neox, hp.rope_base, hp.rope_freq_scale);
    Tensor* v = ggml::cont(ctx, ggml::view_2d(ctx, qkv, E, nt, qkv->nb[1], 2 * E * es));
    Tensor* attn = linear(in, attention(in, il, q, k, v), l.wo, l.bo);
    auto mlp = [&](Tensor* t) {
      return linear(in, ggml::gelu_erf(ctx, linear(in, t, l.w_up, l.b_up)), l.w_down, l.b_down);
    };
    if (hp.parallel_residual) {
      Tensor* h2 = ggml::layer_norm(ctx, x, l.ffn_norm, l.ffn_norm_b, hp.norm_eps);
      x = ggml::add(ctx, ggml::add(ctx, x, attn), mlp(h2));
    } else {
      x = ggml::add(ctx, x, attn);
      x = ggml::add(ctx, x, mlp(ggml::layer_norm(ctx, x, l.ffn_norm, l.ffn_norm_b, hp.norm_eps)));
    }
  }
  if (in.layer_inputs) in.layer_inputs->push_back(x);
  return ggml::layer_norm(ctx, x, m.output_norm, m.output_norm_b, hp.norm_eps);
}

}  // namespace llm
