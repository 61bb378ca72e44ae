#include "blocks.h"

#include <cmath>

#include "llm/lora.h"

namespace llm {

using ggml::Tensor;

Tensor* linear(ggml::Context& ctx, Tensor* x, Tensor* w, Tensor* b) {
  Tensor* y = ggml::mul_mat(ctx, w, x);
  return b ? ggml::add(ctx, y, b) : y;
}

Tensor* linear(GraphInputs& in, Tensor* x, Tensor* w, Tensor* b) {
  Tensor* y = linear(in.ctx, x, w, b);
  for (const auto& [lora, s] : in.loras) {
    const LoraAdapter* a = lora->find(w);
    if (!a) continue;
    // PEFT's order: the base (with its bias), then the scaled update added.
    Tensor* xa = x;
    if (in.dropout_masks) {
      Tensor* mask = in.ctx.new_tensor(ggml::Type::F32, x->ne, 4, "dropout mask");
      in.dropout_masks->push_back(mask);
      xa = ggml::mul(in.ctx, x, mask);
    }
    // (the scale on the rank-r side: r values a token to scale, forward and
    // backward, instead of the output's; PEFT scales B's output)
    Tensor* d = ggml::mul_mat(in.ctx, a->b, ggml::scale(in.ctx, ggml::mul_mat(in.ctx, a->a, xa), a->scale * s));
    y = ggml::add(in.ctx, y, d);
  }
  return y;
}

Tensor* rms_norm(ggml::Context& ctx, Tensor* x, Tensor* w, float eps) {
  return ggml::rms_norm(ctx, x, eps, w);  // one node for the norm and its weight
}

Tensor* attention(GraphInputs& in, int il, Tensor* q, Tensor* k, Tensor* v) {
  ggml::Context& ctx = in.ctx;
  const HParams& hp = in.model.hp;
  const int64_t hd = hp.head_dim(), nkv = hp.n_head_kv, nt = in.n_tokens, np = in.n_past;
  const int64_t n_kv = np + nt;
  if (in.k_cache.empty()) {
    // The batch alone, causal from position 0: no cache to store into. With
    // n_seq sequences of T tokens, dimension 3 is the sequence.
    const int64_t B = in.n_seq, T = nt / B, nh = hp.n_head;
    auto split = [&](Tensor* t, int64_t heads) { return B == 1 ? t : ggml::reshape(ctx, t, {hd, heads, T, B}); };
    Tensor* kk = ggml::permute(ctx, split(k, nkv), 0, 2, 1, 3);  // [hd, T, n_head_kv, B]
    Tensor* qq = ggml::permute(ctx, split(q, nh), 0, 2, 1, 3);   // [hd, T, n_head, B]
    Tensor* probs = ggml::soft_max(ctx, ggml::mul_mat(ctx, kk, qq), 1.0f / std::sqrt((float)hd), nullptr, 0);
    Tensor* v4 = B == 1 ? ggml::reshape(ctx, v, {hd, nkv, nt}) : ggml::reshape(ctx, v, {hd, nkv, T, B});
    Tensor* vv = ggml::cont(ctx, ggml::permute(ctx, v4, 1, 2, 0, 3));  // [T, hd, nkv, B]
    Tensor* out = ggml::mul_mat(ctx, vv, probs);      // [hd, T, n_head, B]
    out = ggml::cont(ctx, ggml::permute(ctx, out, 0, 2, 1, 3));
    return ggml::reshape(ctx, out, {hp.n_embd, nt});
  }
  Tensor* K = in.k_cache[il];
  Tensor* V = in.v_cache[il];
  const size_t es = ggml::type_size(K->type);

  // Store this batch's keys and values. The copies are expanded first so they
  // run before the reads of the cache below (which do not depend on them).
  Tensor* k_dst = ggml::view_3d(ctx, K, hd, nt, nkv, K->nb[1], K->nb[2], (size_t)np * K->nb[1]);
  Tensor* k_cpy = ggml::cpy(ctx, ggml::permute(ctx, k, 0, 2, 1, 3), k_dst);
  in.graph.expand(k_cpy);
  Tensor* v3 = ggml::reshape(ctx, v, {hd, nkv, nt});
  Tensor* v_dst = ggml::view_3d(ctx, V, nt, hd, nkv, V->nb[1], V->nb[2], (size_t)np * es);
  Tensor* v_cpy = ggml::cpy(ctx, ggml::permute(ctx, v3, 1, 2, 0, 3), v_dst);
  in.graph.expand(v_cpy);

  // scores[j, i, h] = k_j . q_i for head h; a KV head serves n_head / n_head_kv heads.
  Tensor* kk = ggml::view_3d(ctx, K, hd, n_kv, nkv, K->nb[1], K->nb[2], 0);
  Tensor* qq = ggml::permute(ctx, q, 0, 2, 1, 3);  // [hd, nt, n_head]
  Tensor* scores = ggml::mul_mat(ctx, kk, qq);      // [n_kv, nt, n_head]
  Tensor* probs = ggml::soft_max(ctx, scores, 1.0f / std::sqrt((float)hd), nullptr, (int32_t)np);
  Tensor* vv = ggml::view_3d(ctx, V, n_kv, hd, nkv, V->nb[1], V->nb[2], 0);
  Tensor* out = ggml::mul_mat(ctx, vv, probs);      // [hd, nt, n_head]
  if (in.n_past_param >= 0) {
    // Where this batch is stored and how many cache entries it attends to
    // follow the position (soft_max's causal offset too, though for one
    // token it masks nothing).
    const int p = in.n_past_param;
    for (Tensor* t : {k_dst, k_cpy}) in.graph.bind(p, t, ggml::Field::VIEW_OFFS, int64_t(K->nb[1]), 0);
    for (Tensor* t : {v_dst, v_cpy}) in.graph.bind(p, t, ggml::Field::VIEW_OFFS, int64_t(es), 0);
    in.graph.bind(p, kk, ggml::Field::NE1, 1, nt);
    in.graph.bind(p, vv, ggml::Field::NE0, 1, nt);
    for (Tensor* t : {scores, probs}) in.graph.bind(p, t, ggml::Field::NE0, 1, nt);
    in.graph.bind(p, probs, ggml::Field::OP_PARAM1, 1, 0);
  }
  // [hd, n_head, nt]; for one token that is out's own layout: no copy needed.
  if (nt > 1) out = ggml::cont(ctx, ggml::permute(ctx, out, 0, 2, 1, 3));
  return ggml::reshape(ctx, out, {hp.n_embd, nt});
}

}  // namespace llm
