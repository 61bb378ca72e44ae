// The graph: memory planning reuses buffers without changing results, and
// results are identical for any thread count.
#include <algorithm>
#include <chrono>
#include <thread>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "../ggml/src/compute.h"  // for_each_item: the executor's work sharing
#include "../ggml/src/thread_pool.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "helpers.h"

using namespace ggml;

namespace {
// A small transformer block (LLaMA-style) plus a GEMM-sized product: exercises
// every op kind the planner and executor must order and place.
struct Block {
  Context ctx;
  Tensor *out, *cache, *kc;
  explicit Block(Type wtype, int64_t n_tok, uint64_t seed) {
    th::Rng rng(seed);
    const int64_t n_embd = 256, n_head = 4, hd = 64, n_ff = 512, n_vocab = 50, n_ctx = 80;
    Tensor* tok_embd = ctx.new_tensor(Type::Q8_0, {n_embd, n_vocab});
    Tensor* ids = ctx.new_tensor(Type::I32, {n_tok});
    Tensor* pos = ctx.new_tensor(Type::I32, {n_tok});
    for (int64_t i = 0; i < n_tok; i++) { ids->as<int32_t>()[i] = int32_t((i * 7) % n_vocab); pos->as<int32_t>()[i] = int32_t(i); }
    Tensor* norm_w = ctx.new_tensor(Type::F32, {n_embd});
    Tensor* wq = ctx.new_tensor(wtype, {n_embd, n_embd});
    Tensor* wk = ctx.new_tensor(wtype, {n_embd, n_embd});
    Tensor* wv = ctx.new_tensor(wtype, {n_embd, n_embd});
    Tensor* wo = ctx.new_tensor(wtype, {n_embd, n_embd});
    Tensor* w1 = ctx.new_tensor(wtype, {n_embd, n_ff});
    Tensor* w3 = ctx.new_tensor(wtype, {n_embd, n_ff});
    Tensor* w2 = ctx.new_tensor(wtype, {n_ff, n_embd});
    cache = ctx.new_tensor(Type::F16, {n_embd, n_ctx});
    for (Tensor* t : {tok_embd, norm_w, wq, wk, wv, wo, w1, w2, w3}) th::fill(t, rng, 0.1f);

    Tensor* x = get_rows(ctx, tok_embd, ids);
    Tensor* h = mul(ctx, rms_norm(ctx, x, 1e-5f), norm_w);
    Tensor* q = rope(ctx, reshape(ctx, mul_mat(ctx, wq, h), {hd, n_head, n_tok}), pos, hd, RopeMode::Neox);
    Tensor* k = rope(ctx, reshape(ctx, mul_mat(ctx, wk, h), {hd, n_head, n_tok}), pos, hd, RopeMode::Neox);
    Tensor* v = mul_mat(ctx, wv, h);
    kc = cpy(ctx, k, view_1d(ctx, cache, n_embd * n_tok, 0));
    Tensor* kview = view_3d(ctx, cache, hd, n_head, n_tok, size_t(hd) * 2, size_t(n_embd) * 2, 0);
    Tensor* kq = mul_mat(ctx, permute(ctx, kview, 0, 2, 1, 3), permute(ctx, q, 0, 2, 1, 3));
    kq = soft_max(ctx, kq, 1.0f / std::sqrt(float(hd)), nullptr, 0);
    Tensor* vt = cont(ctx, permute(ctx, reshape(ctx, v, {hd, n_head, n_tok}), 1, 2, 0, 3));  // [n_tok, hd, n_head]
    Tensor* kqv = mul_mat(ctx, vt, kq);                                                     // [hd, n_tok, n_head]
    Tensor* attn = cont(ctx, permute(ctx, kqv, 0, 2, 1, 3));
    x = add(ctx, x, mul_mat(ctx, wo, reshape(ctx, attn, {n_embd, n_tok})));
    Tensor* ff = mul(ctx, silu(ctx, mul_mat(ctx, w1, x)), mul_mat(ctx, w3, x));
    out = add(ctx, x, mul_mat(ctx, w2, gelu(ctx, ff)));
    out->name = "out";
  }
};

std::vector<unsigned char> bytes(const Tensor* t) {
  const auto* p = static_cast<const unsigned char*>(t->data);
  return std::vector<unsigned char>(p, p + t->nbytes());
}

std::vector<unsigned char> run_block(Type wtype, int64_t n_tok, int threads, GraphAllocator::Mode mode,
                                     size_t* planned = nullptr, size_t* unplanned = nullptr) {
  Block b(wtype, n_tok, 99);
  Graph g;
  g.expand(b.kc);  // the cache write runs first: expand order orders side effects
  g.expand(b.out);
  GraphAllocator alloc(mode);
  alloc.allocate(g);
  if (planned) *planned = alloc.buffer_size();
  if (unplanned) *unplanned = alloc.unplanned_size();
  Executor ex(threads);
  ex.compute(g);
  auto r = bytes(b.out);
  auto c = bytes(b.cache);
  r.insert(r.end(), c.begin(), c.end());
  return r;
}
}  // namespace

TEST_CASE("results are identical for 1, 2, 3 and 4 threads") {
  for (Type t : {Type::F32, Type::F16, Type::Q4_0, Type::Q4_1, Type::Q8_0, Type::Q4_K, Type::Q6_K}) {
    const std::string tname = type_name(t);
    CAPTURE(tname);
    for (int64_t n_tok : {1, 7, 70}) {
      CAPTURE(n_tok);
      const auto one = run_block(t, n_tok, 1, GraphAllocator::Mode::Reuse);
      for (int th : {2, 3, 4}) {
        CAPTURE(th);
        CHECK(run_block(t, n_tok, th, GraphAllocator::Mode::Reuse) == one);
      }
    }
  }
}

TEST_CASE("a memory-planned graph gives exactly the results of an unplanned one, in less memory") {
  for (int64_t n_tok : {1, 9, 40}) {
    size_t planned = 0, unplanned = 0;
    const auto a = run_block(Type::Q4_0, n_tok, 2, GraphAllocator::Mode::Reuse, &planned, &unplanned);
    const auto b = run_block(Type::Q4_0, n_tok, 2, GraphAllocator::Mode::NoReuse);
    CHECK(a == b);
    MESSAGE("n_tok " << n_tok << ": planned " << planned << " bytes, unplanned " << unplanned);
    CHECK(planned < unplanned / 2);
  }
}

TEST_CASE("planner: random DAGs keep every value alive until its last reader") {
  th::Rng rng(21);
  for (int iter = 0; iter < 40; iter++) {
    auto build = [&](uint64_t seed, Context& ctx) {
      th::Rng r(seed);
      std::vector<Tensor*> pool;
      for (int i = 0; i < 3; i++) {
        Tensor* t = ctx.new_tensor(Type::F32, {16, 3});
        th::fill(t, r);
        pool.push_back(t);
      }
      for (int i = 0; i < 30; i++) {
        Tensor* a = pool[size_t(r.range(0, int64_t(pool.size()) - 1))];
        Tensor* b = pool[size_t(r.range(0, int64_t(pool.size()) - 1))];
        switch (r.range(0, 4)) {
          case 0: pool.push_back(add(ctx, a, b)); break;
          case 1: pool.push_back(mul(ctx, a, b)); break;
          case 2: pool.push_back(scale(ctx, silu(ctx, a), 0.5f)); break;
          case 3: pool.push_back(cont(ctx, transpose(ctx, reshape(ctx, a, {3, 16})))); pool.back() = reshape(ctx, pool.back(), {16, 3}); break;
          default: pool.push_back(rms_norm(ctx, a, 1e-6f)); break;
        }
      }
      Tensor* sum = pool.back();
      for (int i = 0; i < 4; i++) sum = add(ctx, sum, pool[size_t(r.range(3, int64_t(pool.size()) - 1))]);
      return sum;
    };
    const uint64_t seed = uint64_t(rng.range(0, 1 << 30));
    Context c1, c2;
    Tensor* o1 = build(seed, c1);
    Tensor* o2 = build(seed, c2);
    auto r1 = th::run(o1, 2, nullptr, GraphAllocator::Mode::Reuse);
    auto r2 = th::run(o2, 2, nullptr, GraphAllocator::Mode::NoReuse);
    REQUIRE(bytes(o1) == bytes(o2));
  }
}

TEST_CASE("outputs marked in the graph survive planning") {
  Context ctx;
  Tensor* a = ctx.new_tensor(Type::F32, {8});
  for (int i = 0; i < 8; i++) a->as<float>()[i] = float(i);
  Tensor* mid = scale(ctx, a, 2.0f);
  Tensor* out = a;
  for (int i = 0; i < 6; i++) out = add(ctx, scale(ctx, out, 1.0f), mid);
  Graph g;
  g.expand(mid);
  g.expand(out);
  GraphAllocator alloc;
  alloc.allocate(g);
  Executor(2).compute(g);
  for (int i = 0; i < 8; i++) {
    CHECK(mid->as<float>()[i] == 2.0f * float(i));
    CHECK(out->as<float>()[i] == float(i) + 12.0f * float(i));
  }
  // Planning again (new graph, same tensors) reuses the allocator's buffer.
  alloc.allocate(g);
  Executor(1).compute(g);
  CHECK(out->as<float>()[3] == 39.0f);
}

TEST_CASE("executor refuses graphs it cannot run") {
  Context ctx;
  Tensor* ext = ctx.new_tensor_external(Type::F32, {4}, "weights");
  Tensor* out = scale(ctx, ext, 2.0f);
  Graph g;
  g.expand(out);
  Executor ex(1);
  CHECK_THROWS_WITH_AS(ex.compute(g), doctest::Contains("'weights'"), Error);
  float mem[4] = {1, 2, 3, 4};
  ext->data = mem;
  CHECK_THROWS_WITH_AS(ex.compute(g), doctest::Contains("GraphAllocator"), Error);
  GraphAllocator alloc;
  alloc.allocate(g);
  ex.compute(g);  // memory the caller owns (an mmap'd file) works as a leaf
  CHECK(out->as<float>()[3] == 8.0f);
  CHECK_THROWS_AS(Executor(0), Error);
  CHECK(g.dump().find("scale") != std::string::npos);
}

TEST_CASE("work sharing: every item runs once; a late thread's share is taken over") {
  for (int64_t n : {0, 1, 5, 97, 1000}) {
    CAPTURE(n);
    constexpr int nth = 3;
    std::vector<Claim> claims(nth);
    std::vector<std::atomic<int>> runs(size_t(n) + 1), by(size_t(n) + 1);
    std::vector<std::thread> team;
    for (int t = 0; t < nth; t++)
      team.emplace_back([&, t] {
        ComputeParams p;
        p.ith = t;
        p.nth = nth;
        p.claims = claims.data();
        // thread 0 starts late, as a thread descheduled by a busy host would
        if (t == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        for_each_item(p, n, [&](int64_t w) {
          runs[size_t(w)]++;
          by[size_t(w)] = t;
        });
      });
    for (auto& th : team) th.join();
    for (int64_t w = 0; w < n; w++) REQUIRE(runs[size_t(w)] == 1);
    int64_t b, e;
    split_range(n, 0, nth, &b, &e);
    int taken = 0;
    for (int64_t w = b; w < e; w++) taken += by[size_t(w)] != 0;
    if (e > b) CHECK(taken > 0);
    // without counters, each thread runs exactly its own share
    for (int t = 0; t < nth; t++) {
      ComputeParams p;
      p.ith = t;
      p.nth = nth;
      std::vector<int64_t> got;
      for_each_item(p, n, [&](int64_t w) { got.push_back(w); });
      split_range(n, t, nth, &b, &e);
      REQUIRE(got.size() == size_t(e - b));
      for (size_t i = 0; i < got.size(); i++) CHECK(got[i] == b + int64_t(i));
    }
  }
}

TEST_CASE("graph parameters: one graph planned for the largest value computes each smaller one as a graph built for it") {
  // softmax over the first n columns of each row of a [16, 3] leaf, written
  // at row n of a [4, 16] destination: a length, an offset and a causal
  // position that follow one parameter.
  th::Rng rng(3);
  auto build = [&](Context& ctx, Graph& g, int64_t n, Tensor* x, Tensor* dst, Tensor** out) {
    Tensor* v = view_2d(ctx, x, n, 3, x->nb[1], 0);
    Tensor* p = soft_max(ctx, v, 0.5f, nullptr, int32_t(n - 3));
    Tensor* d = view_1d(ctx, dst, 4, size_t(n - 1) * dst->nb[1]);
    Tensor* c = cpy(ctx, view_1d(ctx, p, 4, 0), d);
    g.expand(c);
    g.expand(p);
    *out = p;
    return std::vector<Tensor*>{v, p, d, c};
  };
  Context ctx;
  Tensor* x = ctx.new_tensor(Type::F32, {16, 3});
  th::fill(x, rng, 1.0f);
  Tensor* dst = ctx.new_tensor(Type::F32, {4, 16});
  Graph g;
  Tensor* p;
  const auto ts = build(ctx, g, 16, x, dst, &p);
  const int n = g.new_param("n");
  g.bind(n, ts[0], Field::NE0, 1, 0);
  g.bind(n, ts[1], Field::NE0, 1, 0);
  g.bind(n, ts[1], Field::OP_PARAM1, 1, -3);
  for (Tensor* t : {ts[2], ts[3]}) g.bind(n, t, Field::VIEW_OFFS, int64_t(dst->nb[1]), -int64_t(dst->nb[1]));
  GraphAllocator alloc;
  alloc.allocate(g);
  Executor ex(2);
  for (int64_t v : {16, 5, 9, 4}) {
    CAPTURE(v);
    g.set_param(n, v);
    ex.compute(g);
    Context c2;
    Tensor* x2 = c2.new_tensor(Type::F32, {16, 3});
    std::memcpy(x2->data, x->data, x->nbytes());
    Tensor* dst2 = c2.new_tensor(Type::F32, {4, 16});
    std::memcpy(dst2->data, dst->data, dst->nbytes());
    std::memset(dst2->row_ptr(v - 1), 0, 16);
    Graph g2;
    Tensor* p2;
    build(c2, g2, v, x2, dst2, &p2);
    GraphAllocator a2;
    a2.allocate(g2);
    Executor(1).compute(g2);
    REQUIRE(p->ne[0] == v);
    CHECK(bytes(p) == bytes(p2));
    CHECK(bytes(dst) == bytes(dst2));
  }
  // Past the planned bound (a longer row or a later offset) is refused, and leaves the graph as it was.
  CHECK_THROWS_AS(g.set_param(n, 17), Error);
  CHECK(p->ne[0] == 4);
  CHECK_THROWS_AS(g.set_param(n, 0), Error);
  CHECK_THROWS_AS(g.bind(7, p, Field::NE0, 1, 0), Error);
}

namespace {
// One token through a LLaMA block built from plain ops, q/k/v as views of
// one matrix (as the loader holds them), the output norm and product last.
struct PlainBlock {
  Context ctx;
  Graph g;
  Tensor* out;
  PlainBlock(Type wtype, uint8_t layout, uint64_t seed) {
    th::Rng rng(seed);
    const int64_t E = 256, hd = 64, nh = 4, nkv = 2, F = 512, V = 40, EKV = hd * nkv;
    Tensor* emb = ctx.new_tensor(Type::F32, {E, V});
    Tensor* wqkv = ctx.new_tensor(wtype, {E, E + 2 * EKV});
    Tensor* wo = ctx.new_tensor(wtype, {E, E});
    Tensor* gate = ctx.new_tensor(wtype, {E, F});
    Tensor* up = ctx.new_tensor(wtype, {E, F});
    Tensor* down = ctx.new_tensor(wtype, {F, E});
    Tensor* n1 = ctx.new_tensor(Type::F32, {E});
    Tensor* n2 = ctx.new_tensor(Type::F32, {E});
    Tensor* cache = ctx.new_tensor(Type::F32, {hd, 8, nkv});
    Tensor* vcache = ctx.new_tensor(Type::F32, {8, hd, nkv});
    for (Tensor* t : {emb, wqkv, wo, gate, up, down, n1, n2, cache, vcache}) {
      if (t->type != Type::F32) t->layout = layout;
      th::fill(t, rng, 0.1f);
    }
    Tensor* ids = ctx.new_tensor(Type::I32, {1});
    Tensor* pos = ctx.new_tensor(Type::I32, {1});
    ids->as<int32_t>()[0] = 7;
    pos->as<int32_t>()[0] = 3;
    auto part = [&](int64_t rows, int64_t at) {
      Tensor* v = view_2d(ctx, wqkv, E, rows, wqkv->nb[1], size_t(at) * wqkv->nb[1]);
      v->data = wqkv->row_ptr(at);
      return v;
    };
    Tensor *wq = part(E, 0), *wk = part(EKV, E), *wv = part(EKV, E + EKV);
    Tensor* x = get_rows(ctx, emb, ids);
    Tensor* h = rms_norm(ctx, x, 1e-5f, n1);
    Tensor* q = rope(ctx, reshape(ctx, mul_mat(ctx, wq, h), {hd, nh, 1}), pos, hd, RopeMode::Interleaved);
    Tensor* k = rope(ctx, reshape(ctx, mul_mat(ctx, wk, h), {hd, nkv, 1}), pos, hd, RopeMode::Interleaved);
    Tensor* v = mul_mat(ctx, wv, h);
    // the cache as blocks.cpp keeps it: keys by position, values transposed
    g.expand(cpy(ctx, permute(ctx, k, 0, 2, 1, 3), view_3d(ctx, cache, hd, 1, nkv, cache->nb[1], cache->nb[2], 3 * cache->nb[1])));
    g.expand(cpy(ctx, permute(ctx, reshape(ctx, v, {hd, nkv, 1}), 1, 2, 0, 3),
                 view_3d(ctx, vcache, 1, hd, nkv, vcache->nb[1], vcache->nb[2], 3 * sizeof(float))));
    Tensor* kk = view_3d(ctx, cache, hd, 4, nkv, cache->nb[1], cache->nb[2], 0);
    Tensor* p = soft_max(ctx, mul_mat(ctx, kk, permute(ctx, q, 0, 2, 1, 3)), 0.125f, nullptr, 3);
    Tensor* vv = view_3d(ctx, vcache, 4, hd, nkv, vcache->nb[1], vcache->nb[2], 0);
    Tensor* att = reshape(ctx, mul_mat(ctx, vv, p), {E, 1});
    Tensor* o = add(ctx, x, mul_mat(ctx, wo, att));
    Tensor* h2 = rms_norm(ctx, o, 1e-5f, n2);
    Tensor* y = add(ctx, o, mul_mat(ctx, down, silu_mul(ctx, mul_mat(ctx, gate, h2), mul_mat(ctx, up, h2))));
    out = mul_mat(ctx, emb, rms_norm(ctx, y, 1e-5f, n2));
    g.expand(out);
  }
};
}  // namespace

TEST_CASE("the CPU fusion pass: fewer nodes, the plain graph's bytes") {
  for (Type t : {Type::F16, Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q4_K}) {
    for (uint8_t layout : {uint8_t(0), cpu::LAYOUT_R256}) {
      if (layout && cpu::rearranged(t) == t) continue;
      const std::string tname = type_name(t) + std::string(layout ? " rearranged" : "");
      CAPTURE(tname);
      PlainBlock plain(t, layout, 5), fused(t, layout, 5);
      const size_t before = fused.g.nodes().size();
      cpu::fuse(fused.g, fused.ctx);
      int norm = 0, glu = 0, adds = 0, ropes = 0, norms = 0;
      for (const Tensor* n : fused.g.nodes()) {
        if (n->op == Op::MUL_MAT) {
          norm += (n->op_params[0] & MM_NORM) != 0;
          glu += (n->op_params[0] & MM_GLU) != 0;
          adds += (n->op_params[0] & MM_ADD) != 0;
        }
        ropes += n->op == Op::ROPE;
        norms += n->op == Op::RMS_NORM;
      }
      CHECK(fused.g.nodes().size() < before);
      // every node, plain or fused, has the sources its op's description says
      for (Graph* g : {&plain.g, &fused.g})
        for (const Tensor* n : g->nodes()) {
          const OpInfo& info = op_info(n->op);
          const int srcs = int(std::count_if(std::begin(n->src), std::end(n->src), [](const Tensor* x) { return x; }));
          CHECK_MESSAGE((srcs >= info.min_src && srcs <= info.max_src), info.name << " with " << srcs << " sources");
          CHECK(info.view == (n->view_src != nullptr && n->op != Op::CPY));
        }
      CHECK(norm == 3);  // q/k/v as one product, gate/up, the output
      CHECK(glu == 1);
      CHECK(adds == 2);  // the two residuals
      CHECK(ropes == 1);
      CHECK(norms == 0);
      GraphAllocator pa_alloc, fu_alloc;
      pa_alloc.allocate(plain.g);
      fu_alloc.allocate(fused.g);
      for (int threads : {1, 2}) {
        Executor(threads).compute(plain.g);
        Executor(threads).compute(fused.g);
        CHECK(bytes(plain.out) == bytes(fused.out));
      }
    }
  }
}

TEST_CASE("thread pool: barriers order every phase, for teams of any size in any order") {
  ThreadPool pool;
  for (int n : {3, 1, 2, 4, 2, 3}) {
    CAPTURE(n);
    std::vector<int> slots(size_t(n), 0);
    std::atomic<int> bad{0};
    pool.run(n, [&](int ith) {
      for (int phase = 1; phase <= 300; phase++) {
        slots[size_t(ith)] = phase;  // plain stores: the barrier must publish them
        pool.barrier();
        for (int t = 0; t < n; t++)
          if (slots[size_t(t)] != phase) bad++;
        pool.barrier();
      }
    });
    CHECK(bad == 0);
  }
}

TEST_CASE("executor: a team shrinks to the cores other programs leave free") {
  // As many spinning processes as the machine has cores: the rest of the
  // machine then uses nearly every core, and a team of two must become one.
  const int cores = int(sysconf(_SC_NPROCESSORS_ONLN));
  if (cores > 8) return;  // (a big machine: too many spinners for a unit test)
  std::vector<pid_t> spinners;
  for (int i = 0; i < cores; i++) {
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (;;) asm volatile("" ::: "memory");
    }
    spinners.push_back(pid);
  }
  Block b(Type::Q4_0, 1, 7);
  Graph g;
  g.expand(b.out);
  GraphAllocator alloc;
  alloc.allocate(g);
  Executor ex(2);
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(600)) ex.compute(g);
  const int team = ex.last_team();
  for (pid_t p : spinners) kill(p, SIGKILL);
  for (pid_t p : spinners) waitpid(p, nullptr, 0);
  CHECK(team == 1);
}
