// Layers offloaded to a device (-ngl), run on the emulated device
// (GGML_DEVICE=emulated: CPU kernels on memory of its own, copies as a GPU's):
// the scheduler's placement, the copies at every boundary and the per-layer
// KV cache give the CPU's logits; a missing or stale copy would not.
#include <cstdlib>

#include "fixtures.h"
#include "ggml/cuda.h"
#include "llm/model.h"
#include "llm/session.h"

namespace {

struct Emulated {
  Emulated() { setenv("GGML_DEVICE", "emulated", 1); }
  ~Emulated() { unsetenv("GGML_DEVICE"); }
};

// A prompt of 7 in batches of 3 (three graphs, the last one short), then 5
// tokens one at a time (the kept token graph): every row's logits.
std::vector<float> run(const llm::Model& m, llm::Session* keep = nullptr) {
  llm::SessionParams sp;
  sp.n_ctx = 16;
  sp.n_batch = 3;
  sp.n_threads = 1;
  llm::Session s(m, sp);
  const std::vector<int32_t> prompt = {5, 42, 77, 301, 9, 18, 250};
  s.eval(prompt, true);
  std::vector<float> all = s.all_logits();
  int32_t next = 11;
  for (int i = 0; i < 5; i++) {
    s.eval(&next, 1);
    all.insert(all.end(), s.logits(), s.logits() + s.n_vocab());
    next = int32_t((next * 31 + 7) % 500);
  }
  (void)keep;
  return all;
}

}  // namespace

TEST_CASE("offloaded layers on the emulated device give the CPU's logits, for every architecture and layer count") {
  Emulated emu;
  for (const char* name : {"llama_st", "gptneox_st", "gptneox_bin", "gptj_st"}) {
    for (ggml::Type t : {ggml::Type::F32, ggml::Type::F16}) {
      const std::string path = th::converted(name, t);
      auto cpu = llm::Model::load(path);
      const std::vector<float> want = run(*cpu);
      const int64_t L = cpu->hp.n_layer;
      for (int ngl : {1, int(L), 99}) {
        CAPTURE(name);
        CAPTURE(ggml::type_name(t));
        CAPTURE(ngl);
        llm::LoadOptions o;
        o.n_gpu_layers = ngl;
        auto m = llm::Model::load(path, o);
        CHECK(m->n_gpu_layers() == std::min<int64_t>(ngl, L));
        CHECK(m->device_name() == "emulated device");
        CHECK(m->device_bytes() > 0);
        CHECK(m->layer_on_device(L - 1));
        CHECK(m->layer_on_device(0) == (ngl >= L));
        CHECK(((m->layers[size_t(L - 1)].wo->flags & ggml::FLAG_DEVICE) != 0));
        CHECK(((m->output_norm->flags & ggml::FLAG_DEVICE) != 0) == (ngl >= L));
        const std::vector<float> got = run(*m);
        REQUIRE(got.size() == want.size());
        double worst = 0;
        for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
        // The device computes the plain graph, the CPU alone its fused one:
        // the same floats by the fusion pass's rule.
        CHECK(worst == 0.0);
      }
    }
  }
}

TEST_CASE("the scheduler puts offloaded layers on the device, copies only at the boundaries, and the KV cache follows") {
  Emulated emu;
  const std::string path = th::converted("llama_st", ggml::Type::F32);
  llm::LoadOptions o;
  o.n_gpu_layers = 1;
  auto m = llm::Model::load(path, o);
  const int64_t L = m->hp.n_layer;
  REQUIRE(L >= 2);
  llm::SessionParams sp;
  sp.n_ctx = 8;
  sp.n_threads = 1;
  llm::Session s(*m, sp);
  // One layer of L on the device: its share of the cache too.
  CHECK(s.kv_device_bytes() * size_t(L) == s.kv_bytes());
  const int32_t tok = 7;
  s.eval(&tok, 1);
  const std::vector<size_t> placed = s.placement();
  REQUIRE(placed.size() == 2);
  CHECK(placed[0] > 10);  // the last layer's nodes, as built
  // The first layer (fused by the CPU's pass: fewer nodes than the device's
  // unfused layer), the embedding lookup, the output norm's product.
  CHECK(placed[1] >= 5);
  CHECK(placed[1] < placed[0]);
  // In: the layer's input and the positions; out: its result for the
  // output norm's CPU side (the output matrix stays on the host).
  CHECK(s.last_copies() >= 3);
  CHECK(s.last_copies() <= 6);

  o.n_gpu_layers = 99;
  auto all = llm::Model::load(path, o);
  llm::Session t(*all, sp);
  CHECK(t.kv_device_bytes() == t.kv_bytes());
  t.eval(&tok, 1);
  // Everything on the device but the token embedding's lookup: tokens in,
  // the embedding row in, positions in, logits out.
  CHECK(t.placement()[1] <= 2);
  CHECK(t.last_copies() <= 4);
}

TEST_CASE("a node reading device memory that the device cannot compute is refused at planning, by name") {
  ggml::Context ctx;
  auto dev = ggml::emulated_device_backend();
  auto buf = dev->alloc(64 * 8 * 4);
  ggml::Tensor* w = ctx.new_tensor_external(ggml::Type::F32, {64, 8}, "w");
  w->data = buf->base();
  w->flags |= ggml::FLAG_DEVICE;
  ggml::Tensor* d = ctx.new_tensor(ggml::Type::F32, {8, 2}, "d");
  ggml::Graph g;
  g.expand(ggml::mul_mat_t(ctx, w, d));  // a training op: the CPU's only
  ggml::Scheduler sched({dev, ggml::cpu_backend(1)});
  try {
    sched.plan(g, ctx);
    FAIL("planned");
  } catch (const ggml::Error& e) {
    CHECK(std::string(e.what()).find("emulated device memory, but that backend does not compute mul_mat_t") !=
          std::string::npos);
  }
}

TEST_CASE("-ngl without a device says why, in one line") {
  unsetenv("GGML_DEVICE");
  llm::LoadOptions o;
  o.n_gpu_layers = 2;
  if (ggml::cuda_device_count() > 0) return;  // a GPU here: nothing to refuse
  try {
    llm::Model::load(th::converted("llama_st", ggml::Type::F32), o);
    FAIL("loaded");
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    CHECK(msg.find("-ngl 2") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
    CHECK((msg.find("CUDA") != std::string::npos || msg.find("GPU") != std::string::npos));
  }
  std::string why;
  CHECK_FALSE(ggml::device_available(&why));
  CHECK_FALSE(why.empty());
}

TEST_CASE("a split graph's CPU part is still fused, and gives the floats of the graph the CPU computes alone") {
  auto build = [](ggml::Context& ctx, ggml::Tensor* w2, std::vector<float>& xs) {
    th::Rng rng(9);
    ggml::Tensor* x = ctx.new_tensor(ggml::Type::F32, {64, 1}, "x");
    ggml::Tensor* wn = ctx.new_tensor(ggml::Type::F32, {64}, "norm");
    ggml::Tensor* w1 = ctx.new_tensor(ggml::Type::Q8_0, {64, 32}, "w1");
    th::fill(x, rng), th::fill(wn, rng), th::fill(w1, rng, 0.3f);
    xs.assign(x->as<float>(), x->as<float>() + 64);
    ggml::Tensor* y = ggml::mul_mat(ctx, w1, ggml::rms_norm(ctx, x, 1e-5f, wn));  // the CPU's, norm fused in
    return ggml::mul_mat(ctx, w2, y);                                             // w2's side
  };
  th::Rng rng(4);
  std::vector<float> w2v = rng.normals(32 * 16, 0.2f), xs;
  auto dev = ggml::emulated_device_backend();
  std::vector<float> out[2];
  for (int split = 0; split < 2; split++) {
    ggml::Context ctx;
    std::unique_ptr<ggml::Buffer> wbuf;
    ggml::Tensor* w2;
    if (split) {
      w2 = ctx.new_tensor_external(ggml::Type::F32, {32, 16}, "w2");
      wbuf = dev->alloc(w2->nbytes());
      dev->write(wbuf->base(), w2v.data(), w2->nbytes());
      w2->data = wbuf->base();
      w2->flags |= ggml::FLAG_DEVICE;
    } else {
      w2 = ctx.new_tensor(ggml::Type::F32, {32, 16}, "w2");
      std::memcpy(w2->data, w2v.data(), w2->nbytes());
    }
    ggml::Tensor* r = build(ctx, w2, xs);
    ggml::Graph g;
    g.expand(r);
    std::vector<std::shared_ptr<ggml::Backend>> bs;
    if (split) bs.push_back(dev);
    bs.push_back(ggml::cpu_backend(1));
    ggml::Scheduler sched(bs);
    sched.plan(g, ctx);
    bool fused = false;
    for (const ggml::Tensor* n : g.nodes())
      if (n->op == ggml::Op::MUL_MAT && (n->op_params[0] & ggml::MM_NORM)) fused = n->backend == bs.size() - 1;
    CHECK(fused);
    if (split) CHECK(sched.last_placement()[0] == 1);  // w2's product alone
    ggml::GraphAllocator alloc(ggml::GraphAllocator::Mode::Reuse, &sched.graph_memory());
    alloc.allocate(g);
    sched.compute(g);
    out[split].assign(r->as<float>(), r->as<float>() + 16);
  }
  CHECK(out[0] == out[1]);
}
