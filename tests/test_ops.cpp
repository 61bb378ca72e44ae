// Every op against a naive double-precision reference, on random shapes with
// contiguous, padded (row-strided) and transposed inputs, and broadcasting.
#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "helpers.h"

using namespace ggml;

namespace {
enum class Layout { Contiguous, Padded, Transposed };
const Layout kLayouts[] = {Layout::Contiguous, Layout::Padded, Layout::Transposed};

// A random F32 input of shape ne in the given memory layout.
Tensor* input(Context& ctx, th::Rng& rng, const int64_t* ne, Layout layout, float sd = 1.0f) {
  switch (layout) {
    case Layout::Contiguous: {
      Tensor* t = ctx.new_tensor(Type::F32, {ne[0], ne[1], ne[2], ne[3]});
      th::fill(t, rng, sd);
      return t;
    }
    case Layout::Padded: {  // rows 3 floats longer, view starts one float in
      Tensor* base = ctx.new_tensor(Type::F32, {ne[0] + 3, ne[1], ne[2], ne[3]});
      th::fill(base, rng, sd);
      return view_4d(ctx, base, ne[0], ne[1], ne[2], ne[3], base->nb[1], base->nb[2], base->nb[3], 4);
    }
    case Layout::Transposed: {
      Tensor* base = ctx.new_tensor(Type::F32, {ne[1], ne[0], ne[2], ne[3]});
      th::fill(base, rng, sd);
      return transpose(ctx, base);
    }
  }
  return nullptr;
}

std::array<int64_t, 4> random_shape(th::Rng& rng) {
  return {rng.range(1, 70), rng.range(1, 9), rng.range(1, 4), rng.range(1, 3)};
}
}  // namespace

TEST_CASE("add and mul broadcast b over a") {
  th::Rng rng(1);
  for (int iter = 0; iter < 24; iter++) {
    const auto ne = random_shape(rng);
    // b's dims divide a's: 1 or the full size, per dimension.
    int64_t nb_[4];
    for (int i = 0; i < 4; i++) nb_[i] = rng.range(0, 1) ? ne[size_t(i)] : 1;
    for (Layout la : kLayouts) {
      Context ctx;
      Tensor* a = input(ctx, rng, ne.data(), la);
      Tensor* b = input(ctx, rng, nb_, kLayouts[iter % 3]);
      Tensor* s = add(ctx, a, b);
      Tensor* m = mul(ctx, a, b);
      Tensor* both = add(ctx, s, m);  // one graph, both ops
      auto r = th::run(both, 1 + iter % 3);
      auto ref = [&](bool is_add) {
        return [&, is_add](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
          const double x = th::get(a, i0, i1, i2, i3);
          const double y = th::get(b, i0 % nb_[0], i1 % nb_[1], i2 % nb_[2], i3 % nb_[3]);
          return is_add ? x + y : x * y;
        };
      };
      th::expect_close(s, ref(true), 1e-6, 1e-6);
      th::expect_close(m, ref(false), 1e-6, 1e-6);
    }
  }
}

TEST_CASE("scale and activations") {
  th::Rng rng(2);
  for (int iter = 0; iter < 6; iter++) {
    const auto ne = random_shape(rng);
    for (Layout la : kLayouts) {
      Context ctx;
      Tensor* a = input(ctx, rng, ne.data(), la, 3.0f);
      Tensor* b = input(ctx, rng, ne.data(), kLayouts[iter % 3]);
      Tensor* outs[] = {scale(ctx, a, 0.37f), silu(ctx, a), gelu(ctx, a), gelu_erf(ctx, a), silu_mul(ctx, a, b),
                        mul(ctx, silu(ctx, a), b)};
      Graph g;
      for (Tensor* o : outs) g.expand(o);
      GraphAllocator alloc;
      alloc.allocate(g);
      Executor(2).compute(g);
      const double c = std::sqrt(2.0 / M_PI);
      th::expect_close(outs[0], [&](auto... i) { return 0.37 * th::get(a, i...); }, 1e-6, 1e-6);
      th::expect_close(outs[1], [&](auto... i) { double x = th::get(a, i...); return x / (1 + std::exp(-x)); }, 1e-6, 1e-5);
      th::expect_close(outs[2], [&](auto... i) {
        double x = th::get(a, i...);
        return 0.5 * x * (1 + std::tanh(c * (x + 0.044715 * x * x * x)));
      }, 1e-6, 1e-5);
      th::expect_close(outs[3], [&](auto... i) { double x = th::get(a, i...); return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, 1e-6, 1e-5);
      th::expect_close(outs[4], [&](auto... i) {
        double x = th::get(a, i...);
        return x / (1 + std::exp(-x)) * th::get(b, i...);
      }, 1e-6, 1e-5);
      // the fused node gives the two-node graph's floats exactly
      th::expect_close(outs[4], [&](auto... i) { return th::get(outs[5], i...); }, 0);
    }
  }
}

TEST_CASE("rms_norm, norm and layer_norm with weight and bias") {
  th::Rng rng(3);
  for (int iter = 0; iter < 8; iter++) {
    auto ne = random_shape(rng);
    ne[0] = rng.range(1, 300);
    for (Layout la : kLayouts) {
      Context ctx;
      Tensor* a = input(ctx, rng, ne.data(), la, 2.0f);
      const int64_t wne[4] = {ne[0], 1, 1, 1};
      Tensor* w = input(ctx, rng, wne, Layout::Contiguous);
      Tensor* bias = input(ctx, rng, wne, Layout::Contiguous);
      const float eps = 1e-5f;
      Tensor* rn = rms_norm(ctx, a, eps);
      Tensor* ln = layer_norm(ctx, a, w, bias, eps);
      Tensor* rnw = rms_norm(ctx, a, eps, w);
      Tensor* rn_mul = mul(ctx, rms_norm(ctx, a, eps), w);
      Graph g;
      g.expand(rn);
      g.expand(ln);
      g.expand(rnw);
      g.expand(rn_mul);
      GraphAllocator alloc;
      alloc.allocate(g);
      Executor(3).compute(g);
      th::expect_close(rn, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        double ss = 0;
        for (int64_t k = 0; k < ne[0]; k++) ss += th::get(a, k, i1, i2, i3) * th::get(a, k, i1, i2, i3);
        return th::get(a, i0, i1, i2, i3) / std::sqrt(ss / double(ne[0]) + eps);
      }, 1e-5, 1e-5);
      th::expect_close(ln, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        double mean = 0, var = 0;
        for (int64_t k = 0; k < ne[0]; k++) mean += th::get(a, k, i1, i2, i3);
        mean /= double(ne[0]);
        for (int64_t k = 0; k < ne[0]; k++) var += std::pow(th::get(a, k, i1, i2, i3) - mean, 2);
        var /= double(ne[0]);
        const double n = (th::get(a, i0, i1, i2, i3) - mean) / std::sqrt(var + eps);
        return n * th::get(w, i0) + th::get(bias, i0);
      }, 1e-5, 1e-5);
      th::expect_close(rnw, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        double ss = 0;
        for (int64_t k = 0; k < ne[0]; k++) ss += th::get(a, k, i1, i2, i3) * th::get(a, k, i1, i2, i3);
        return th::get(a, i0, i1, i2, i3) / std::sqrt(ss / double(ne[0]) + eps) * th::get(w, i0);
      }, 1e-5, 1e-5);
      // the weighted norm in one node gives the two-node graph's floats exactly
      th::expect_close(rnw, [&](auto... i) { return th::get(rn_mul, i...); }, 0);
    }
  }
}

TEST_CASE("rope in both layouts, partial rotary dims, configurable base") {
  th::Rng rng(4);
  struct Case { int64_t head_dim; int n_dims; RopeMode mode; float base; float scale; };
  const Case cases[] = {{64, 64, RopeMode::Neox, 10000.0f, 1.0f},     {64, 16, RopeMode::Neox, 10000.0f, 1.0f},
                        {32, 32, RopeMode::Interleaved, 10000.0f, 1.0f}, {48, 24, RopeMode::Interleaved, 500000.0f, 1.0f},
                        {16, 8, RopeMode::Neox, 1e6f, 0.25f}};
  for (const Case& cs : cases) {
    for (Layout la : {Layout::Contiguous, Layout::Padded}) {
      Context ctx;
      const int64_t n_head = 3, n_tok = 5;
      const int64_t ne[4] = {cs.head_dim, n_head, n_tok, 1};
      Tensor* a = input(ctx, rng, ne, la);
      Tensor* pos = ctx.new_tensor(Type::I32, {n_tok});
      for (int64_t t = 0; t < n_tok; t++) pos->as<int32_t>()[t] = int32_t(7 + 113 * t);  // large positions too
      Tensor* out = rope(ctx, a, pos, cs.n_dims, cs.mode, cs.base, cs.scale);
      auto r = th::run(out, 2);
      th::expect_close(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t) {
        const double x = th::get(a, i0, i1, i2);
        if (i0 >= cs.n_dims) return x;
        const int half = cs.n_dims / 2;
        int64_t pair_i, partner;
        bool first;
        if (cs.mode == RopeMode::Neox) {
          first = i0 < half;
          pair_i = first ? i0 : i0 - half;
          partner = first ? i0 + half : i0 - half;
        } else {
          first = i0 % 2 == 0;
          pair_i = i0 / 2;
          partner = first ? i0 + 1 : i0 - 1;
        }
        const double theta = double(pos->as<int32_t>()[i2]) * cs.scale * std::pow(double(cs.base), -2.0 * double(pair_i) / cs.n_dims);
        const double y = th::get(a, partner, i1, i2);
        return first ? x * std::cos(theta) - y * std::sin(theta) : x * std::cos(theta) + y * std::sin(theta);
      }, 2e-4, 1e-4);  // F32 angles at positions up to ~460 lose ~1e-4
    }
  }
}

TEST_CASE("soft_max with scale, mask and causal masking") {
  th::Rng rng(5);
  for (int iter = 0; iter < 10; iter++) {
    const int64_t n_kv = rng.range(1, 40), n_tok = rng.range(1, 6), n_head = rng.range(1, 3);
    const int32_t n_past = iter % 2 ? int32_t(std::max<int64_t>(0, n_kv - n_tok)) : -1;
    const bool use_mask = iter % 3 == 0;
    for (Layout la : kLayouts) {
      Context ctx;
      const int64_t ne[4] = {n_kv, n_tok, n_head, 1};
      Tensor* a = input(ctx, rng, ne, la, 3.0f);
      Tensor* mask = nullptr;
      if (use_mask) {
        mask = ctx.new_tensor(Type::F32, {n_kv, n_tok + 2});
        th::fill(mask, rng);
      }
      const float sc = 0.125f;
      Tensor* out = soft_max(ctx, a, sc, mask, n_past);
      auto r = th::run(out, 2);
      th::expect_close(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        auto visible = [&](int64_t j) { return n_past < 0 || j <= n_past + i1; };
        if (!visible(i0)) return 0.0;
        auto logit = [&](int64_t j) { return th::get(a, j, i1, i2, i3) * sc + (mask ? th::get(mask, j, i1) : 0.0); };
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n_kv; j++) if (visible(j)) mx = std::max(mx, logit(j));
        for (int64_t j = 0; j < n_kv; j++) if (visible(j)) sum += std::exp(logit(j) - mx);
        return std::exp(logit(i0) - mx) / sum;
      }, 1e-6, 1e-5);
    }
  }
}

TEST_CASE("get_rows dequantizes embedding rows of every type") {
  th::Rng rng(6);
  for (Type t : {Type::F32, Type::F16, Type::BF16, Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q8_0,
                 Type::Q4_K, Type::Q5_K, Type::Q6_K}) {
    const std::string tname = type_name(t);
    CAPTURE(tname);
    Context ctx;
    Tensor* table = ctx.new_tensor(t, {256, 11});
    th::fill(table, rng);
    Tensor* ids = ctx.new_tensor(Type::I32, {6});
    const int32_t pick[6] = {3, 0, 10, 3, 7, 1};
    std::memcpy(ids->data, pick, sizeof(pick));
    Tensor* out = get_rows(ctx, table, ids);
    auto r = th::run(out, 3);
    for (int64_t i = 0; i < 6; i++) {
      const auto want = th::row_f64(table, pick[i]);
      for (int64_t j = 0; j < 256; j++) REQUIRE(th::get(out, j, i) == want[size_t(j)]);
    }
  }
}

TEST_CASE("get_rows refuses an id out of range at compute time") {
  Context ctx;
  Tensor* table = ctx.new_tensor(Type::F32, {8, 4});
  Tensor* ids = ctx.new_tensor(Type::I32, {2});
  ids->as<int32_t>()[0] = 1;
  ids->as<int32_t>()[1] = 4;
  Tensor* out = get_rows(ctx, table, ids);
  CHECK_THROWS_WITH_AS((void)th::run(out, 2), doctest::Contains("id 4 out of range [0, 4)"), Error);
}

TEST_CASE("copies convert between types and write into views") {
  th::Rng rng(7);
  SUBCASE("cast F32 to every type and back matches the reference conversion") {
    for (Type t : {Type::F16, Type::BF16, Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q4_K,
                   Type::Q6_K}) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      Context ctx;
      Tensor* a = ctx.new_tensor(Type::F32, {512, 3, 2});
      th::fill(a, rng);
      Tensor* q = cast(ctx, a, t);
      Tensor* back = cast(ctx, q, Type::F32);
      auto r = th::run(back, 2);
      std::vector<unsigned char> qb(row_size(t, 512));
      std::vector<float> want(512);
      for (int64_t i2 = 0; i2 < 2; i2++)
        for (int64_t i1 = 0; i1 < 3; i1++) {
          traits(t).from_float(reinterpret_cast<const float*>(a->row_ptr(i1, i2)), qb.data(), 512);
          traits(t).to_float(qb.data(), want.data(), 512);
          for (int64_t j = 0; j < 512; j++) REQUIRE(th::get(back, j, i1, i2) == want[size_t(j)]);
        }
    }
  }
  SUBCASE("cont of transposed and permuted views") {
    Context ctx;
    Tensor* a = ctx.new_tensor(Type::F32, {5, 4, 3, 2});
    th::fill(a, rng);
    Tensor* p = permute(ctx, a, 2, 0, 3, 1);  // dim i of a -> dim axes[i]
    Tensor* c = cont(ctx, p);
    Tensor* t16 = cast(ctx, transpose(ctx, a), Type::F16);
    Graph g;
    g.expand(c);
    g.expand(t16);
    GraphAllocator alloc;
    alloc.allocate(g);
    Executor(2).compute(g);
    CHECK(c->ne[0] == 4);
    CHECK(c->ne[1] == 2);
    CHECK(c->ne[2] == 5);
    CHECK(c->ne[3] == 3);
    CHECK(c->is_contiguous());
    th::expect_close(c, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) { return th::get(a, i2, i0, i3, i1); }, 0);
    for (int64_t i1 = 0; i1 < 5; i1++)
      for (int64_t i0 = 0; i0 < 4; i0++)
        REQUIRE(th::get(t16, i0, i1, 1, 1) == fp16_to_fp32(fp32_to_fp16(float(th::get(a, i1, i0, 1, 1)))));
  }
  SUBCASE("one token's values into a transposed F16 cache: rows of one element") {
    for (int64_t n_tok : {1, 3, 17}) {
      CAPTURE(n_tok);
      Context ctx;
      const int64_t n_embd = 40, n_ctx = 32, n_past = 7;
      Tensor* vcache = ctx.new_tensor(Type::F16, {n_ctx, n_embd});
      th::fill(vcache, rng);
      std::vector<uint16_t> before(size_t(n_embd * n_ctx));
      std::memcpy(before.data(), vcache->data, before.size() * 2);
      Tensor* v = ctx.new_tensor(Type::F32, {n_embd, n_tok});
      th::fill(v, rng);
      Tensor* vdst = view_2d(ctx, vcache, n_tok, n_embd, vcache->nb[1], size_t(n_past) * 2);
      auto r = th::run(cpy(ctx, transpose(ctx, v), vdst), 2);
      for (int64_t e = 0; e < n_embd; e++)
        for (int64_t t = 0; t < n_ctx; t++) {
          const uint16_t got = vcache->as<uint16_t>()[e * n_ctx + t];
          if (t >= n_past && t < n_past + n_tok)
            REQUIRE(got == fp32_to_fp16(float(th::get(v, e, t - n_past))));
          else
            REQUIRE(got == before[size_t(e * n_ctx + t)]);
        }
    }
  }
  SUBCASE("cpy writes new K/V rows into a cache view, leaving the rest") {
    Context ctx;
    const int64_t n_embd = 64, n_ctx = 16, n_tok = 3, n_past = 5;
    Tensor* cache = ctx.new_tensor(Type::F16, {n_embd, n_ctx});
    th::fill(cache, rng);
    std::vector<uint16_t> before(size_t(n_embd * n_ctx));
    std::memcpy(before.data(), cache->data, before.size() * 2);
    Tensor* k = ctx.new_tensor(Type::F32, {n_embd, n_tok});
    th::fill(k, rng);
    Tensor* dst = view_2d(ctx, cache, n_embd, n_tok, cache->nb[1], size_t(n_past) * cache->nb[1]);
    Tensor* w = cpy(ctx, k, dst);
    // A transposed V cache: token t of row e lives at column t.
    Tensor* vcache = ctx.new_tensor(Type::F32, {n_ctx, n_embd});
    Tensor* vdst = view_2d(ctx, vcache, n_tok, n_embd, vcache->nb[1], size_t(n_past) * 4);
    Tensor* wv = cpy(ctx, transpose(ctx, k), vdst);
    Graph g;
    g.expand(w);
    g.expand(wv);
    GraphAllocator alloc;
    alloc.allocate(g);
    Executor(2).compute(g);
    for (int64_t t = 0; t < n_ctx; t++)
      for (int64_t e = 0; e < n_embd; e++) {
        const uint16_t got = cache->as<uint16_t>()[t * n_embd + e];
        if (t >= n_past && t < n_past + n_tok) {
          REQUIRE(got == fp32_to_fp16(float(th::get(k, e, t - n_past))));
          REQUIRE(th::get(vcache, t, e) == th::get(k, e, t - n_past));
        } else {
          REQUIRE(got == before[size_t(t * n_embd + e)]);
          REQUIRE(th::get(vcache, t, e) == 0.0);
        }
      }
  }
}

TEST_CASE("reshape and views share memory; bad views are refused") {
  Context ctx;
  Tensor* a = ctx.new_tensor(Type::F32, {6, 4}, "a");
  for (int i = 0; i < 24; i++) a->as<float>()[i] = float(i);
  Tensor* r = reshape(ctx, a, {4, 6});
  Tensor* v = view_2d(ctx, a, 2, 3, a->nb[1], 4 * sizeof(float));
  Tensor* c1 = cont(ctx, r);
  Tensor* c2 = cont(ctx, v);
  Graph g;
  g.expand(c1);
  g.expand(c2);
  GraphAllocator alloc;
  alloc.allocate(g);
  Executor(1).compute(g);
  for (int i = 0; i < 24; i++) CHECK(c1->as<float>()[i] == float(i));
  for (int r1 = 0; r1 < 3; r1++)
    for (int c = 0; c < 2; c++) CHECK(th::get(c2, c, r1) == float(r1 * 6 + 4 + c));

  CHECK_THROWS_WITH_AS(view_2d(ctx, a, 6, 5, a->nb[1], 0), doctest::Contains("reaches past the end"), Error);
  CHECK_THROWS_WITH_AS(view_1d(ctx, a, 4, 23 * 4), doctest::Contains("tensor 'a'"), Error);
  CHECK_THROWS_WITH_AS(reshape(ctx, a, {5, 5}), doctest::Contains("element count"), Error);
  CHECK_THROWS_AS(reshape(ctx, transpose(ctx, a), {24}), Error);
  CHECK_THROWS_AS(permute(ctx, a, 0, 0, 1, 2), Error);
}

TEST_CASE("bad shapes and type pairs are refused with clear errors") {
  Context ctx;
  Tensor* a = ctx.new_tensor(Type::F32, {8, 4}, "a");
  Tensor* b = ctx.new_tensor(Type::F32, {3, 4}, "b");
  Tensor* q = ctx.new_tensor(Type::Q4_0, {32, 4}, "q");
  Tensor* i = ctx.new_tensor(Type::I32, {4}, "ids");
  CHECK_THROWS_WITH_AS(add(ctx, a, b), doctest::Contains("cannot broadcast"), Error);
  CHECK_THROWS_WITH_AS(mul(ctx, q, q), doctest::Contains("expects an F32"), Error);
  CHECK_THROWS_WITH_AS(mul_mat(ctx, a, b), doctest::Contains("inner dimensions"), Error);
  CHECK_THROWS_WITH_AS(mul_mat(ctx, i, a), doctest::Contains("unsupported weight type"), Error);
  CHECK_THROWS_WITH_AS(mul_mat(ctx, q, q), doctest::Contains("activations must be F32"), Error);
  CHECK_THROWS_WITH_AS(get_rows(ctx, a, a), doctest::Contains("ids must be"), Error);
  CHECK_THROWS_WITH_AS(rope(ctx, a, i, 3, RopeMode::Neox), doctest::Contains("positions"), Error);
  CHECK_THROWS_WITH_AS(cast(ctx, a, Type::Q4_0), doctest::Contains("block size"), Error);
  CHECK_THROWS_WITH_AS(cast(ctx, i, Type::F32), doctest::Contains("no conversion"), Error);
  CHECK_THROWS_WITH_AS(cpy(ctx, a, b), doctest::Contains("element count"), Error);
  CHECK_THROWS_WITH_AS(ctx.new_tensor(Type::Q4_0, {33}), doctest::Contains("block size"), Error);
  CHECK_THROWS_WITH_AS(ctx.new_tensor(Type(77), {4}), doctest::Contains("unknown tensor type"), Error);
  CHECK_THROWS_WITH_AS(ctx.new_tensor(Type::F32, {int64_t(1) << 40, int64_t(1) << 40}), doctest::Contains("overflows"), Error);
  CHECK_THROWS_WITH_AS(soft_max(ctx, a, 1.0f, b), doctest::Contains("mask"), Error);
  CHECK_THROWS_WITH_AS(rms_norm(ctx, a, 1e-5f, b), doctest::Contains("one contiguous row of 8"), Error);
  CHECK_THROWS_WITH_AS(rms_norm(ctx, a, 1e-5f, i), doctest::Contains("expects an F32"), Error);
  CHECK_THROWS_WITH_AS(silu_mul(ctx, a, b), doctest::Contains("shape differs"), Error);
}
