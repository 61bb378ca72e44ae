// mul_mat for every weight type against dequantize-then-double reference, for
// matrix-vector and matrix-matrix shapes, batched broadcasting, strided inputs,
// with every kernel set this CPU runs (and OpenBLAS where it is used).
#include <limits>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "helpers.h"

using namespace ggml;

namespace {
const Type kWeightTypes[] = {Type::F32,   Type::F16,   Type::BF16, Type::Q4_0, Type::Q4_1,
                             Type::Q5_0,  Type::Q5_1,  Type::Q8_0, cpu::Q8_0R, cpu::Q4_0R,
                             cpu::Q4_1R, Type::Q4_K, Type::Q5_K, Type::Q6_K};

// x rounded to bf16's 8 significant bits, to nearest even (nearbyint's
// default mode), written apart from the library's converter.
double round_bf16(double x) {
  if (x == 0) return 0;
  int e;
  const double m = std::frexp(x, &e);
  return std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);
}

// Reference for dst[i, j, c2, c3] with a tolerance: activations of quantized
// types are rounded to int8 per 32 (or 256) values, so the bound is that
// rounding times the weights' magnitude, plus float accumulation. Where the
// kernel set k takes the product to its BF16 microkernel (F16 or BF16 weights,
// nr / 2 activation rows or more) both sides are rounded to bf16 first and
// only the float accumulation is left to the bound. Fused products
// (mul_mat_fused) always take the tiles.
void check_mul_mat(const Tensor* a, const Tensor* b, const Tensor* dst, const cpu::KernelSet& k = cpu::best(),
                   bool tiles = false) {
  const bool bf16_operands = !tiles && (a->type == Type::F16 || a->type == Type::BF16) && k.gemm_bf16.kernel &&
                             b->ne[1] >= k.gemm_bf16.nr / 2;
  const Type vdt = cpu::activation_format(cpu::format_of(a->type, a->layout));
  const int64_t K = a->ne[0], act_block = block_size(vdt);
  const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
  for (int64_t c3 = 0; c3 < dst->ne[3]; c3++)
    for (int64_t c2 = 0; c2 < dst->ne[2]; c2++)
      for (int64_t i = 0; i < a->ne[1]; i++) {
        auto w = th::row_f64(a, i, c2 / r2, c3 / r3);
        if (bf16_operands) for (double& v : w) v = round_bf16(v);
        for (int64_t j = 0; j < b->ne[1]; j++) {
          double want = 0, mag = 0, q_err = 0;
          for (int64_t k0 = 0; k0 < K; k0 += act_block) {
            double amax = 0, wsum = 0;
            for (int64_t k = k0; k < k0 + act_block; k++) {
              const double y = bf16_operands ? round_bf16(th::get(b, k, j, c2, c3)) : th::get(b, k, j, c2, c3);
              want += w[size_t(k)] * y;
              mag += std::fabs(w[size_t(k)] * y);
              amax = std::max(amax, std::fabs(y));
              wsum += std::fabs(w[size_t(k)]);
            }
            if (vdt != Type::F32) q_err += wsum * amax / 127.0 * 0.5;
          }
          const double got = th::get(dst, i, j, c2, c3);
          const double tol = q_err * 1.01 + 2e-5 * mag + 1e-6;
          REQUIRE_MESSAGE(std::fabs(got - want) <= tol, "dst[" << i << "," << j << "," << c2 << "," << c3 << "] got "
                                                                << got << " want " << want << " tol " << tol);
        }
      }
}
}  // namespace

TEST_CASE("mul_mat: every weight type, vector and matrix shapes, every kernel set") {
  th::Rng rng(11);
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : kWeightTypes) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      for (int64_t K : block_size(t) == 256 ? std::vector<int64_t>{512} : std::vector<int64_t>{96, 576})
      for (int64_t N : {1, 3, 9, 70}) {
        // matrix-vector products finish rows in fours: 37, 38 and 39 rows
        // leave 1, 2 and 3 rows over (after two 16-row work items)
        for (int64_t M : N == 1 ? std::vector<int64_t>{37, 38, 39} : std::vector<int64_t>{37}) {
          CAPTURE(K);
          CAPTURE(N);
          CAPTURE(M);
          Context ctx;
          Tensor* a = th::weight(ctx, t, {K, M});
          Tensor* b = ctx.new_tensor(Type::F32, {K, N});
          th::fill(a, rng, 0.5f);
          th::fill(b, rng, 1.0f);
          Tensor* out = mul_mat(ctx, a, b);
          auto r = th::run(out, 2, k);
          CHECK(out->ne[0] == M);
          CHECK(out->ne[1] == N);
          check_mul_mat(a, b, out, *k);
        }
      }
    }
  }
}

TEST_CASE("mul_mat: batched broadcasting (grouped-query attention) and strided inputs") {
  th::Rng rng(12);
  for (Type t : {Type::F32, Type::F16, Type::Q8_0, Type::Q4_1}) {
    const std::string tname = type_name(t);
    CAPTURE(tname);
    Context ctx;
    // Weights: a permuted view whose rows stay contiguous, like a KV cache
    // [head_dim, n_kv, n_head_kv] read out of [head_dim, n_head_kv, n_kv].
    Tensor* store = ctx.new_tensor(t, {64, 2, 33});
    th::fill(store, rng);
    Tensor* a = permute(ctx, store, 0, 2, 1, 3);  // [64, 33, 2]
    // Activations: transposed (elements strided), 6 heads sharing 2 KV heads.
    Tensor* bt = ctx.new_tensor(Type::F32, {5, 64, 6, 2});
    th::fill(bt, rng);
    Tensor* b = permute(ctx, bt, 1, 0, 2, 3);  // [64, 5, 6, 2]
    Tensor* out = mul_mat(ctx, a, b);
    auto r = th::run(out, 3);
    CHECK(out->ne[0] == 33);
    CHECK(out->ne[1] == 5);
    CHECK(out->ne[2] == 6);
    CHECK(out->ne[3] == 2);
    check_mul_mat(a, b, out);
  }
}

// Generation's attention: one query row per head, heads sharing KV heads
// (taken together as the rows of one product), read from a permuted view as
// the model does, with 1 to 3 threads; and a third dimension broadcast too.
TEST_CASE("mul_mat: one activation row per head, grouped heads") {
  th::Rng rng(15);
  for (Type t : {Type::F32, Type::F16, Type::Q8_0, Type::Q4_1}) {
    const std::string tname = type_name(t);
    CAPTURE(tname);
    for (int64_t n_kv : {5, 1, 37, 300}) {
      for (int64_t heads_per_kv : {2, 4, 7}) {
        CAPTURE(n_kv);
        CAPTURE(heads_per_kv);
        const uint64_t seed = rng.g();
        for (int threads : {1, 3}) {  // a fresh graph each (a result's memory belongs to its run)
          th::Rng local(seed);
          Context ctx;
          Tensor* store = ctx.new_tensor(t, {64, 3, n_kv, 2});  // [hd, n_head_kv, n_kv, 2]
          th::fill(store, local, 0.5f);
          Tensor* a = permute(ctx, store, 0, 2, 1, 3);         // [hd, n_kv, n_head_kv, 2]
          Tensor* q = ctx.new_tensor(Type::F32, {64, 3 * heads_per_kv, 1, 4});  // [hd, n_head, 1 token, 4]
          th::fill(q, local);
          Tensor* b = permute(ctx, q, 0, 2, 1, 3);             // [hd, 1, n_head, 4]
          Tensor* out = mul_mat(ctx, a, b);
          auto r = th::run(out, threads);
          check_mul_mat(a, b, out);
        }
      }
    }
  }
}

TEST_CASE("mul_mat: prompt-sized products take the blocked (and BLAS) paths") {
  th::Rng rng(13);
  for (Type t : {Type::F32, Type::F16, Type::Q4_0, Type::Q6_K}) {
    const std::string tname = type_name(t);
    CAPTURE(tname);
    Context ctx;
    Tensor* a = ctx.new_tensor(t, {256, 300});
    Tensor* b = ctx.new_tensor(Type::F32, {256, 130});
    th::fill(a, rng, 0.2f);
    th::fill(b, rng);
    Tensor* out = mul_mat(ctx, a, b);
    auto r = th::run(out, 2);
    check_mul_mat(a, b, out);
  }
}

// Kernel sets with a GEMM microkernel take it for float weights (F16 and BF16
// on the BF16 one where the CPU has it; each set is also run with that one
// removed, to cover the float one for them) and, with an int8 one, for Q4_0,
// Q4_1 and Q8_0, once there are nr / 2 activation rows (F32 weights: and 2 mr
// weight rows; fewer take the tiles, checked here too).
// Shapes cross every blocking boundary: two row groups and one row, rows not a multiple
// of the microkernel's mr or of the item's row block, activation rows not a
// multiple of nr or of an item's panels, K of one column (one block), odd K,
// K below, at and across the 256-column blocks; batched broadcasting with
// element-strided activations; 1, 2 and 3 threads giving identical results.
TEST_CASE("mul_mat: GEMM microkernel paths, odd shapes, every kernel set that has them") {
  th::Rng rng(14);
  struct Case { int64_t K, M, N; };
  std::vector<cpu::KernelSet> sets;
  for (const cpu::KernelSet* k : cpu::available()) {
    sets.push_back(*k);
    if (k->gemm_bf16.kernel) {
      sets.push_back(*k);
      sets.back().gemm_bf16 = {};
      sets.back().name = "without bf16 GEMM";
    }
  }
  for (const cpu::KernelSet& set : sets) {
    const cpu::KernelSet* k = &set;
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : {Type::F32, Type::F16, Type::BF16, Type::Q4_0, Type::Q4_1, Type::Q8_0, cpu::Q8_0R, cpu::Q4_0R,
                   cpu::Q4_1R}) {
      const bool quant = block_size(t) == 32 || cpu::own_format(t);
      const bool bf16 = !quant && t != Type::F32 && k->gemm_bf16.kernel;
      const cpu::Gemm g = quant ? cpu::Gemm{k->gemm_q.mr, k->gemm_q.nr, nullptr}
                          : bf16 ? cpu::Gemm{k->gemm_bf16.mr, k->gemm_bf16.nr, nullptr}
                                 : k->gemm;
      if (!(quant ? k->gemm_q.kernel != nullptr : bf16 || k->gemm.kernel != nullptr)) continue;
      const std::string tname = type_name(t);
      CAPTURE(tname);
      const int64_t nr = g.nr, mr = g.mr;
      // Quantized K is whole blocks of 32: 288 and 544 cross the 8-block k
      // blocks; 1100 crosses the bf16 path's 512-column blocks with an odd tail.
      // Q8_0R, Q4_0R and Q4_1R rows are whole groups of 256.
      const bool r8 = cpu::own_format(t);
      const Case cases[] = {{r8 ? 256 : quant ? 288 : 300, 2 * mr + 1, nr / 2}, {r8 ? 512 : quant ? 32 : 1, 2 * mr + 5, nr},
                            {256, 4 * mr, nr / 2 + 1},                   {r8 ? 768 : quant ? 544 : 513, 4 * mr + 13, 47},
                            {r8 ? 1024 : quant ? 704 : 1101, 3 * mr - 1, 130}, {r8 ? 256 : 96, 37, 3 * nr + 5},
                            {r8 ? 256 : quant ? 288 : 300, 1, nr / 2}, {r8 ? 512 : quant ? 64 : 96, 2 * mr - 1, 3 * nr}};
      for (const Case& c : cases) {
        CAPTURE(c.K);
        CAPTURE(c.M);
        CAPTURE(c.N);
        // The same inputs (same seed) in a fresh graph per thread count.
        std::vector<float> first;
        const uint64_t seed = rng.g();
        for (int threads : {1, 2, 3}) {
          th::Rng local(seed);
          Context ctx;
          Tensor* a = th::weight(ctx, t, {c.K, c.M});
          Tensor* b = ctx.new_tensor(Type::F32, {c.K, c.N});
          th::fill(a, local, 0.5f);
          th::fill(b, local, 1.0f);
          Tensor* out = mul_mat(ctx, a, b);
          auto r = th::run(out, threads, k);
          check_mul_mat(a, b, out, *k);
          const float* o = static_cast<const float*>(out->data);
          std::vector<float> got(o, o + out->nelements());
          if (first.empty()) first = got;
          CHECK_MESSAGE(got == first, "result differs with " << threads << " threads");
        }
      }
      // Batched: 6 activation heads over 2 weight heads, activations strided.
      Context ctx;
      const int64_t kb = r8 ? 256 : 64;
      Tensor* store = th::weight(ctx, t, {kb, 2, 33});
      th::fill(store, rng);
      Tensor* a = permute(ctx, store, 0, 2, 1, 3);  // [kb, 33, 2]
      Tensor* bt = ctx.new_tensor(Type::F32, {nr + 3, kb, 6, 2});
      th::fill(bt, rng);
      Tensor* b = permute(ctx, bt, 1, 0, 2, 3);  // [kb, nr + 3, 6, 2]
      Tensor* out = mul_mat(ctx, a, b);
      auto r = th::run(out, 2, k);
      check_mul_mat(a, b, out, *k);
    }
  }
}

// The k padding of a GEMM microkernel (AMX tiles take 16 bf16 pairs at a
// time) must hold zeros, not the previous k block's weights: an infinite
// weight there would be multiplied by a padded zero activation into nan.
// K = 600 is 300 pairs: a block of 256, then 44 padded to 48, whose padding
// sits where pairs 44..47 (columns 88..95) of the first block were. With an
// infinity at column 90 of each row and positive activations, every result
// is +inf, on every set and path.
TEST_CASE("mul_mat: an infinite weight gives inf, not nan, through the GEMM paths") {
  th::Rng rng(15);
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : {Type::F32, Type::F16, Type::BF16}) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      Context ctx;
      Tensor* a = ctx.new_tensor(t, {600, 40});
      Tensor* b = ctx.new_tensor(Type::F32, {600, 48});
      th::fill(a, rng, 0.5f);
      for (int64_t i = 0; i < 40; i++) {
        const float inf = std::numeric_limits<float>::infinity();
        char v[4];
        traits(t).from_float(&inf, v, 1);
        std::memcpy(a->row_ptr(i) + 90 * a->nb[0], v, type_size(t));
      }
      float* y = b->as<float>();
      for (int64_t i = 0; i < b->nelements(); i++) y[i] = rng.uniform(0.5f, 1.0f);
      Tensor* out = mul_mat(ctx, a, b);
      auto r = th::run(out, 2, k);
      for (int64_t j = 0; j < 48; j++)
        for (int64_t i = 0; i < 40; i++) {
          const double got = th::get(out, i, j);
          REQUIRE_MESSAGE((std::isinf(got) && got > 0), "dst[" << i << "," << j << "] = " << got);
        }
    }
  }
}

// Generation's fused products (norm before, SwiGLU or a residual add after)
// against the separate nodes they replace: the same floats exactly, for every
// kernel set, weight types with and without activation conversion, one to
// many activation rows (private and shared conversion, two row chunks), rows
// not a multiple of a work item, and 1 to 3 threads. (Unfused products of
// many rows may take the GEMM or BLAS paths, whose floats differ: there the
// normalized product is held to the double reference instead.)
TEST_CASE("mul_mat_fused: norm, SwiGLU and residual add give the separate nodes' floats") {
  th::Rng rng(21);
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : {Type::F32, Type::F16, Type::Q8_0, cpu::Q8_0R, Type::Q4_0, Type::Q4_1, cpu::Q4_0R, cpu::Q4_1R,
                   Type::Q4_K}) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      for (int64_t N : {1, 2, 3, 70})
        for (int threads : {1, 2, 3}) {
          const int64_t K = block_size(t) == 256 ? 512 : 576, M = N == 70 ? 21 : 37;
          CAPTURE(N);
          CAPTURE(threads);
          Context ctx;
          Tensor* gate = th::weight(ctx, t, {K, M});
          Tensor* up = th::weight(ctx, t, {K, M});
          Tensor* x = ctx.new_tensor(Type::F32, {K, N});
          Tensor* nw = ctx.new_tensor(Type::F32, {K});
          // the addend with padded rows: its row stride is not M floats
          Tensor* res_base = ctx.new_tensor(Type::F32, {M + 5, N});
          Tensor* res = view_2d(ctx, res_base, M, N, res_base->nb[1], 4);
          for (Tensor* w : {gate, up, x, nw, res_base}) th::fill(w, rng, 0.7f);
          const float eps = 1e-5f;
          auto fused = [&](Tensor* w, bool norm, Tensor* norm_w, Tensor* upw, Tensor* addend) {
            MatMulFusion f;
            f.norm = norm;
            f.eps = eps;
            f.norm_w = norm_w;
            f.up = upw;
            f.add = addend;
            return mul_mat_fused(ctx, w, x, f);
          };
          Tensor* pn = fused(gate, true, nw, nullptr, nullptr);
          Tensor* pnu = fused(up, true, nw, nullptr, nullptr);
          Tensor* glu = fused(gate, true, nw, up, nullptr);
          Tensor* added_n = fused(gate, true, nw, nullptr, res);
          Tensor* normed = fused(gate, true, nullptr, nullptr, nullptr);
          Tensor* added = fused(gate, false, nullptr, nullptr, res);
          Tensor* h = rms_norm(ctx, x, eps, nw);
          Tensor* glu_ref = silu_mul(ctx, pn, pnu);
          Tensor* added_n_ref = add(ctx, res, pn);
          Tensor* pn_ref = mul_mat(ctx, gate, h);
          Tensor* normed_ref = mul_mat(ctx, gate, rms_norm(ctx, x, eps));
          Tensor* added_ref = add(ctx, res, mul_mat(ctx, gate, x));
          Graph g;
          for (Tensor* o : {pn, pnu, glu, added_n, normed, added, h, glu_ref, added_n_ref, pn_ref, normed_ref, added_ref})
            g.expand(o);
          GraphAllocator alloc;
          alloc.allocate(g);
          Executor(threads, k).compute(g);
          th::expect_close(glu, [&](auto... i) { return th::get(glu_ref, i...); }, 0);
          th::expect_close(added_n, [&](auto... i) { return th::get(added_n_ref, i...); }, 0);
          check_mul_mat(gate, h, pn, *k, true);
          if (N > 3) continue;
          th::expect_close(pn, [&](auto... i) { return th::get(pn_ref, i...); }, 0);
          th::expect_close(normed, [&](auto... i) { return th::get(normed_ref, i...); }, 0);
          th::expect_close(added, [&](auto... i) { return th::get(added_ref, i...); }, 0);
        }
    }
  }
}

TEST_CASE("mul_mat_fused: bad combinations and shapes are refused") {
  Context ctx;
  Tensor* w = ctx.new_tensor(Type::Q4_1, {64, 8});
  Tensor* x = ctx.new_tensor(Type::F32, {64, 1});
  MatMulFusion f;
  f.up = ctx.new_tensor(Type::Q4_1, {64, 8});
  f.add = ctx.new_tensor(Type::F32, {8, 1});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w, x, f), doctest::Contains("cannot be fused together"), Error);
  f = MatMulFusion();
  f.up = ctx.new_tensor(Type::Q4_0, {64, 8});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w, x, f), doctest::Contains("match the gate's type and shape"), Error);
  f.up = ctx.new_tensor(Type::Q4_1, {64, 9});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w, x, f), doctest::Contains("match the gate's type and shape"), Error);
  f = MatMulFusion();
  f.add = ctx.new_tensor(Type::F32, {8, 2});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w, x, f), doctest::Contains("addend's shape differs"), Error);
  f = MatMulFusion();
  f.norm = true;
  f.norm_w = ctx.new_tensor(Type::F32, {63});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w, x, f), doctest::Contains("one contiguous row of 64"), Error);
  f.norm = false;
  f.norm_w = ctx.new_tensor(Type::F32, {64});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w, x, f), doctest::Contains("without norm"), Error);
  f = MatMulFusion();
  Tensor* w3 = ctx.new_tensor(Type::Q4_1, {64, 8, 2});
  Tensor* x3 = ctx.new_tensor(Type::F32, {64, 1, 2});
  CHECK_THROWS_WITH_AS(mul_mat_fused(ctx, w3, x3, f), doctest::Contains("must be 2-D"), Error);
}
