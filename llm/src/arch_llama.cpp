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
  // One token (no biases): norms, SwiGLU and residual adds fused into the
  // matrix products, 10 nodes a layer instead of 16 (each node is a barrier,
  // and a one-row norm runs on one thread); the same floats.
  const bool fuse = nt == 1;
  for (int il = 0; il < (int)hp.n_layer; il++) {
    const Layer& l = m.layers[il];
    Tensor *q, *k, *v;
    // One token: q, k and v from one product where the loader fused their
    // matrices (two products fewer a layer; the same rows, so the same results;
    // SmolLM2 generation +2-8%). Prompts keep three products: their fused
    // rows would need copies out.
    if (fuse && l.wqkv && !l.bq && !l.bk && !l.bv) {
      ggml::MatMulFusion f;
      f.norm = true;
      f.eps = hp.norm_eps;
      f.norm_w = l.attn_norm;
      Tensor* qkv = ggml::mul_mat_fused(ctx, l.wqkv, x, f);  // [E + 2 E_kv]
      const size_t es = sizeof(float);
      // q's heads and k's lie one after another: one rope node turns both.
      Tensor* qk = rope(ggml::view_3d(ctx, qkv, hd, hp.n_head + hp.n_head_kv, 1, hd * es, qkv->nb[1], 0));
      q = ggml::view_3d(ctx, qk, hd, hp.n_head, 1, hd * es, qk->nb[2], 0);
      k = ggml::view_3d(ctx, qk, hd, hp.n_head_kv, 1, hd * es, qk->nb[2], size_t(hp.n_embd) * es);
      v = ggml::view_1d(ctx, qkv, hp.n_embd_kv(), size_t(hp.n_embd + hp.n_embd_kv()) * es);
    } else {
      Tensor* h = rms_norm(ctx, x, l.attn_norm, hp.norm_eps);
      q = rope(ggml::reshape(ctx, linear(ctx, h, l.wq, l.bq), {hd, hp.n_head, nt}));
      k = rope(ggml::reshape(ctx, linear(ctx, h, l.wk, l.bk), {hd, hp.n_head_kv, nt}));
      v = linear(ctx, h, l.wv, l.bv);
    }
    Tensor* att = attention(in, il, q, k, v);
    if (fuse && !l.bo) {
      ggml::MatMulFusion f;
      f.add = x;
      x = ggml::mul_mat_fused(ctx, l.wo, att, f);
    } else {
      x = ggml::add(ctx, x, linear(ctx, att, l.wo, l.bo));
    }
    Tensor* g;
    // (files may hold gate and up in different types: then two products)
    const bool same_gate_up = l.w_up->type == l.w_gate->type && l.w_up->ne[0] == l.w_gate->ne[0] &&
                              l.w_up->ne[1] == l.w_gate->ne[1];
    if (fuse && same_gate_up) {
      // (Gate and up as one concatenated product, before this fusion,
      // measured slower: TinyLlama Q4_1 generation -3-4%.)
      ggml::MatMulFusion f;
      f.norm = true;
      f.eps = hp.norm_eps;
      f.norm_w = l.ffn_norm;
      f.up = l.w_up;
      g = ggml::mul_mat_fused(ctx, l.w_gate, x, f);
      f = ggml::MatMulFusion();
      f.add = x;
      x = ggml::mul_mat_fused(ctx, l.w_down, g, f);
    } else {
      Tensor* h = rms_norm(ctx, x, l.ffn_norm, hp.norm_eps);
      g = ggml::silu_mul(ctx, linear(ctx, h, l.w_gate), linear(ctx, h, l.w_up));
      x = ggml::add(ctx, x, linear(ctx, g, l.w_down));
    }
  }
  // (one token: build_forward fuses this norm into the output product)
  return rms_norm(ctx, x, m.output_norm, hp.norm_eps);
}

}  // namespace llm
