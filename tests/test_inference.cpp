// Forward passes against transformers: every tiny fixture checkpoint is
// converted, loaded and run (a prompt in one batch, then token by token
// through the KV cache); its logits must equal the reference logits that
// scripts/gen_hf_fixtures.py saved from transformers in F32.
#include <doctest/doctest.h>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "fixtures.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llm/convert.h"
#include "llm/model.h"
#include "llm/npy.h"
#include "llm/perplexity.h"
#include "llm/session.h"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using th::data_dir;
using th::temp_dir;

const char* FIXTURES[] = {"llama_st", "llama_bin", "gptneox_st", "gptneox_bin", "gptj_st", "gptj_bin"};

using th::converted;

size_t argmax(const float* x, size_t n) { return size_t(std::max_element(x, x + n) - x); }

struct Diff {
  double max_abs = 0;
  int top1_mismatch = 0;
};

// Runs the fixture's tokens: the prompt in one eval, then one token per eval.
std::vector<float> run(const llm::Model& m, const std::vector<int32_t>& ids, size_t n_prompt, ggml::Type kv, int threads) {
  llm::SessionParams sp;
  sp.n_ctx = 32;
  sp.kv_type = kv;
  sp.n_threads = threads;
  llm::Session s(m, sp);
  std::vector<float> all;
  s.eval(ids.data(), n_prompt, true);
  all = s.all_logits();
  for (size_t t = n_prompt; t < ids.size(); t++) {
    s.eval(&ids[t], 1);
    const float* l = s.logits();
    all.insert(all.end(), l, l + s.n_vocab());
  }
  CHECK(s.n_past() == (int64_t)ids.size());
  return all;
}

Diff compare(const std::vector<float>& got, const llm::NpyF32& ref) {
  Diff d;
  REQUIRE(ref.shape.size() == 2);
  const size_t rows = (size_t)ref.shape[0], V = (size_t)ref.shape[1];
  REQUIRE(got.size() == rows * V);
  for (size_t r = 0; r < rows; r++) {
    for (size_t j = 0; j < V; j++) d.max_abs = std::max(d.max_abs, (double)std::fabs(got[r * V + j] - ref.data[r * V + j]));
    if (argmax(&got[r * V], V) != argmax(&ref.data[r * V], V)) d.top1_mismatch++;
  }
  return d;
}

}  // namespace

TEST_CASE("F32 logits match transformers for LLaMA, GPT-NeoX and GPT-J (prompt, then through the cache)") {
  for (const char* name : FIXTURES) {
    CAPTURE(name);
    const fs::path dir = fs::path(data_dir()) / "hf" / name;
    json fx = json::parse(std::ifstream(dir / "fixture.json"));
    std::vector<int32_t> ids = fx["tokens"];
    auto ref = llm::read_npy_f32((dir / "logits.npy").string());
    auto m = llm::Model::load(converted(name, ggml::Type::F32));
    CHECK(m->hp.n_vocab == ref.shape[1]);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      Diff d = compare(run(*m, ids, fx["n_prompt"], ggml::Type::F32, threads), ref);
      MESSAGE(std::string(name) << " f32: max |diff| " << d.max_abs);
      CHECK(d.max_abs < 1e-4);
      CHECK(d.top1_mismatch == 0);
    }
  }
}

TEST_CASE("F16 weights and F16 cache stay within 1e-2 of transformers' F32 logits") {
  for (const char* name : FIXTURES) {
    CAPTURE(name);
    const fs::path dir = fs::path(data_dir()) / "hf" / name;
    json fx = json::parse(std::ifstream(dir / "fixture.json"));
    std::vector<int32_t> ids = fx["tokens"];
    auto ref = llm::read_npy_f32((dir / "logits.npy").string());
    auto m = llm::Model::load(converted(name, ggml::Type::F16));
    Diff d = compare(run(*m, ids, fx["n_prompt"], ggml::Type::F16, 2), ref);
    MESSAGE(std::string(name) << " f16: max |diff| " << d.max_abs);
    CHECK(d.max_abs < 1e-2);
  }
}

// A 20-token prompt with F16 weights and cache goes through the prompt GEMM
// (the BF16 microkernel on CPUs with AVX512_BF16, rounding weights and
// activations to bf16: 8 significant bits), token by token through the
// exact matrix-vector products. Measured on these random-weight models: up
// to 1.1% of the largest logit with bf16, 5e-5 of it with exact float
// products (GGML_BF16_GEMM=0); the bound allows bf16's rounding, twice over.
namespace {
// The 20-token prompt of the two tests below, in a cache of 24.
std::vector<int32_t> prompt20() {
  std::vector<int32_t> ids;
  for (int i = 0; i < 20; i++) ids.push_back(5 + (i * 37) % 900);
  return ids;
}
llm::SessionParams params24(ggml::Type kv) {
  llm::SessionParams sp;
  sp.n_ctx = 24;
  sp.kv_type = kv;
  return sp;
}
// Feeds ids one at a time to step; the largest |logit difference| from
// batched's logits for the same positions (and the largest |logit| in *top).
double stepwise_vs_batched(llm::Session& step, const llm::Session& batched, const std::vector<int32_t>& ids,
                           double* top = nullptr) {
  const size_t V = (size_t)step.n_vocab();
  double worst = 0, big = 0;
  for (size_t t = 0; t < ids.size(); t++) {
    step.eval(&ids[t], 1);
    for (size_t j = 0; j < V; j++) {
      worst = std::max(worst, (double)std::fabs(step.logits()[j] - batched.all_logits()[t * V + j]));
      big = std::max(big, (double)std::fabs(step.logits()[j]));
    }
  }
  if (top) *top = big;
  return worst;
}
}  // namespace

TEST_CASE("F16: one batched pass (prompt GEMM) agrees with token-by-token decoding") {
  for (const char* name : {"llama_st", "gptneox_st", "gptj_st"}) {
    CAPTURE(name);
    auto m = llm::Model::load(converted(name, ggml::Type::F16));
    const std::vector<int32_t> ids = prompt20();
    const llm::SessionParams sp = params24(ggml::Type::F16);
    llm::Session batched(*m, sp);
    batched.eval(ids, true);
    llm::Session step(*m, sp);
    double top = 0;
    const double worst = stepwise_vs_batched(step, batched, ids, &top);
    MESSAGE(std::string(name) << " f16 batched vs stepwise: max |diff| " << worst << ", max |logit| " << top);
    CHECK(worst < 0.025 * top);
  }
}

TEST_CASE("decoding token by token through the cache equals one batched pass") {
  for (const char* name : {"llama_st", "gptneox_st", "gptj_st"}) {
    CAPTURE(name);
    auto m = llm::Model::load(converted(name, ggml::Type::F32));
    const std::vector<int32_t> ids = prompt20();
    llm::SessionParams sp = params24(ggml::Type::F32);
    llm::Session batched(*m, sp);
    batched.eval(ids, true);
    llm::Session step(*m, sp);
    const size_t V = (size_t)m->hp.n_vocab;
    CHECK(stepwise_vs_batched(step, batched, ids) < 1e-5);
    // Small batches (n_batch) cover the same positions as one big one.
    sp.n_batch = 3;
    llm::Session chunked(*m, sp);
    chunked.eval(ids, true);
    REQUIRE(chunked.all_logits().size() == batched.all_logits().size());
    double wc = 0;
    for (size_t j = 0; j < chunked.all_logits().size(); j++)
      wc = std::max(wc, (double)std::fabs(chunked.all_logits()[j] - batched.all_logits()[j]));
    CHECK(wc < 1e-5);
    // Rewinding and re-evaluating reproduces the logits.
    step.rewind(10);
    step.eval(&ids[10], 1);
    double wr = 0;
    for (size_t j = 0; j < V; j++) wr = std::max(wr, (double)std::fabs(step.logits()[j] - batched.all_logits()[10 * V + j]));
    CHECK(wr < 1e-5);
  }
}

TEST_CASE("a token graph reused between positions gives the logits of graphs built for each token, bit for bit") {
  for (const char* name : {"llama_st", "gptneox_st", "gptj_st"}) {
    CAPTURE(name);
    auto m = llm::Model::load(converted(name, ggml::Type::F16));
    const std::vector<int32_t> ids = prompt20();
    // span 0: a graph built for every token; 8: rebuilt at positions 8 and
    // 16 (and after the rewind, not: position 5 is below its cap); 512: one
    // graph for the whole context (capped at n_ctx).
    std::vector<std::vector<float>> runs;
    for (int64_t span : {0, 8, 512}) {
      CAPTURE(span);
      llm::SessionParams sp = params24(ggml::Type::F16);
      sp.token_graph_span = span;
      llm::Session s(*m, sp);
      std::vector<float> got;
      auto step = [&](int32_t id) {
        s.eval(&id, 1);
        got.insert(got.end(), s.logits(), s.logits() + s.n_vocab());
      };
      for (size_t t = 0; t < 12; t++) step(ids[t]);
      // a prompt between tokens: its graph and plan must leave the token graph's alone
      s.eval(std::vector<int32_t>(ids.begin() + 12, ids.begin() + 16));
      got.insert(got.end(), s.logits(), s.logits() + s.n_vocab());
      for (size_t t = 16; t < 20; t++) step(ids[t]);
      s.rewind(5);
      for (size_t t = 5; t < 9; t++) step(ids[t]);
      runs.push_back(got);
    }
    CHECK(runs[0] == runs[1]);
    CHECK(runs[0] == runs[2]);
  }
  llm::SessionParams bad;
  bad.token_graph_span = -1;
  auto m = llm::Model::load(converted("llama_st", ggml::Type::F16));
  CHECK_THROWS_WITH_AS(llm::Session(*m, bad), doctest::Contains("token graph span"), llm::Error);
}

TEST_CASE("bad eval input and bad models are refused") {
  auto m = llm::Model::load(converted("gptj_bin", ggml::Type::F32));
  llm::SessionParams sp;
  sp.n_ctx = 8;
  llm::Session s(*m, sp);
  std::vector<int32_t> too_many(9, 1);
  CHECK_THROWS_AS(s.eval(too_many), llm::Error);
  std::vector<int32_t> bad = {1, 1200};
  CHECK_THROWS_AS(s.eval(bad), llm::Error);
  CHECK(s.n_past() == 0);
  CHECK_THROWS_AS(s.logits(), llm::Error);
  // A vocab-only file has no weights.
  llm::ConvertOptions o;
  o.model_dir = data_dir() + "/hf/gptj_bin";
  o.out_path = (temp_dir() / "vocab.gguf").string();
  o.vocab_only = true;
  llm::convert_hf_checkpoint(o);
  try {
    llm::Model::load(o.out_path);
    FAIL("loaded a vocab-only file");
  } catch (const llm::Error& e) {
    CHECK(std::string(e.what()).find("token_embd.weight") != std::string::npos);
  }
}

TEST_CASE("npy files round trip") {
  std::vector<float> x = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, 65504.0f};
  const std::string p = (temp_dir() / "x.npy").string();
  llm::write_npy_f32(p, x.data(), {2, 3});
  auto r = llm::read_npy_f32(p);
  CHECK(r.shape == std::vector<int64_t>{2, 3});
  CHECK(r.data == x);
}


TEST_CASE("perplexity scores the second half of each window like a direct computation from transformers' logits") {
  // gptneox_st adds no BOS: one 12-token window is exactly the fixture's tokens.
  const fs::path dir = fs::path(data_dir()) / "hf" / "gptneox_st";
  json fx = json::parse(std::ifstream(dir / "fixture.json"));
  std::vector<int32_t> ids = fx["tokens"];
  auto ref = llm::read_npy_f32((dir / "logits.npy").string());
  const size_t V = (size_t)ref.shape[1];
  double nll = 0;
  int n = 0;
  for (size_t j = 6; j + 1 < ids.size(); j++, n++) {
    const float* l = &ref.data[j * V];
    double mx = *std::max_element(l, l + V), se = 0;
    for (size_t i = 0; i < V; i++) se += std::exp((double)l[i] - mx);
    nll += mx + std::log(se) - l[ids[j + 1]];
  }
  const double want = std::exp(nll / n);
  auto m = llm::Model::load(converted("gptneox_st", ggml::Type::F32));
  llm::PerplexityOptions o;
  o.n_ctx = 12;
  auto r = llm::perplexity(*m, ids, o);
  CHECK(r.n_chunks == 1);
  CHECK(r.n_scored == n);
  CHECK(std::fabs(r.ppl / want - 1) < 1e-5);
  // Fewer tokens than a window is an error, not a crash.
  std::vector<int32_t> few(ids.begin(), ids.begin() + 5);
  CHECK_THROWS_AS(llm::perplexity(*m, few, o), llm::Error);
}

TEST_CASE("KL-divergence: zero against itself, exact against full softmaxes when top-k covers the vocabulary") {
  auto f32 = llm::Model::load(converted("llama_bin", ggml::Type::F32));
  auto f16 = llm::Model::load(converted("llama_bin", ggml::Type::F16));
  std::vector<int32_t> text;
  for (int i = 0; i < 100; i++) text.push_back(4 + (i * 131) % 590);
  const std::string base = (temp_dir() / "base.kl").string();
  llm::PerplexityOptions o;
  o.n_ctx = 16;
  o.top_k = 600;  // the whole vocabulary: no tail bucket
  o.kl_base_out = base;
  auto rb = llm::perplexity(*f32, text, o);
  o.kl_base_out.clear();
  o.kl_in = base;
  auto same = llm::perplexity(*f32, text, o);
  CHECK(same.has_kl);
  CHECK(std::fabs(same.kl_mean) < 1e-6);
  CHECK(same.top1 == 1.0);
  CHECK(std::fabs(same.base_ppl / rb.ppl - 1) < 1e-5);
  auto other = llm::perplexity(*f16, text, o);
  // Exact KL(f32 || f16) over the same scored positions, from full softmaxes.
  const int64_t step = 15, first = 8;  // BOS + 15 text tokens per window
  double kl = 0;
  int64_t n = 0;
  for (int64_t c = 0; c < (int64_t)text.size() / step; c++) {
    std::vector<int32_t> win = {f32->tokenizer->vocab().bos};
    win.insert(win.end(), text.begin() + c * step, text.begin() + (c + 1) * step);
    llm::SessionParams sp;
    sp.n_ctx = 16;
    llm::Session a(*f32, sp), b(*f16, sp);
    a.eval(win, true);
    b.eval(win, true);
    for (int64_t j = first; j < 15; j++, n++) {
      auto lsm = [](const float* l, size_t V, std::vector<double>& out) {
        double mx = *std::max_element(l, l + V), se = 0;
        for (size_t i = 0; i < V; i++) se += std::exp((double)l[i] - mx);
        out.resize(V);
        for (size_t i = 0; i < V; i++) out[i] = l[i] - mx - std::log(se);
      };
      std::vector<double> p, q;
      lsm(&a.all_logits()[(size_t)j * 600], 600, p);
      lsm(&b.all_logits()[(size_t)j * 600], 600, q);
      for (size_t i = 0; i < 600; i++) kl += std::exp(p[i]) * (p[i] - q[i]);
    }
  }
  CHECK(other.n_scored == n);
  CHECK(other.kl_mean > 0);
  CHECK(std::fabs(other.kl_mean - kl / n) < 1e-4 * std::max(1.0, kl / n) + 1e-7);
  // A base file written for another context length is refused.
  o.n_ctx = 32;
  CHECK_THROWS_AS(llm::perplexity(*f16, text, o), llm::Error);
}

TEST_CASE("weights copied, q/k/v fused and Q8_0/Q4_0/Q4_1 rearranged give the file map's logits bit for bit") {
  // A 256-wide LLaMA: the llama_st fixture's metadata and tensors with every
  // width but the vocabulary's times 4, random matrices of each type.
  // (the last: ffn_up in another type than ffn_gate, which one token's
  // graph cannot fuse into one SwiGLU product)
  const struct {
    ggml::Type stored, held;
    bool ggml::cpu::KernelSet::*prefers;
    ggml::Type up;
  } kinds[] = {{ggml::Type::Q8_0, ggml::cpu::Q8_0R, &ggml::cpu::KernelSet::prefers_q8_0r, ggml::Type::Q8_0},
               {ggml::Type::Q4_0, ggml::cpu::Q4_0R, &ggml::cpu::KernelSet::prefers_q4r, ggml::Type::Q4_0},
               {ggml::Type::Q4_1, ggml::cpu::Q4_1R, &ggml::cpu::KernelSet::prefers_q4r, ggml::Type::Q4_1},
               {ggml::Type::Q4_0, ggml::cpu::Q4_0R, &ggml::cpu::KernelSet::prefers_q4r, ggml::Type::F16}};
  for (const auto& kind : kinds) {
    const std::string tname = ggml::type_name(kind.stored) + std::string("+up-") + ggml::type_name(kind.up);
    CAPTURE(tname);
    auto src = llm::gguf::File::open(converted("llama_st", ggml::Type::F32));
    llm::gguf::Writer w;
    for (const auto& [k, v] : src->metadata()) {
      llm::gguf::Value x = v;
      if (k == "llama.embedding_length" || k == "llama.feed_forward_length" || k == "llama.rope.dimension_count") x.u *= 4;
      w.set(k, x);
    }
    th::Rng rng(5);
    std::vector<std::vector<unsigned char>> data;
    data.reserve(src->tensors().size());
    for (const auto& t : src->tensors()) {
      int64_t ne[4] = {t.ne[0] * 4, t.n_dims == 2 ? t.ne[1] : 1, 1, 1};
      if (t.n_dims == 2 && t.name != "token_embd.weight" && t.name != "output.weight") ne[1] *= 4;
      const int64_t n = ne[0] * ne[1];
      const ggml::Type ty = t.n_dims == 1                                  ? ggml::Type::F32
                            : t.name.find("ffn_up") != std::string::npos ? kind.up
                                                                          : kind.stored;
      std::vector<float> x = rng.normals(size_t(n), t.n_dims == 2 ? 0.05f : 0.1f);
      if (t.n_dims == 1) for (auto& v : x) v += 1.0f;
      data.emplace_back(ggml::row_size(ty, n));
      ggml::traits(ty).from_float(x.data(), data.back().data(), n);
      w.add_tensor(t.name, ty, ne, t.n_dims, data.back().data());
    }
    const std::string path = (temp_dir() / ("llama256-" + tname + ".gguf")).string();
    w.write(path);
    llm::LoadOptions as_stored;  // the file map: nothing copied, fused or rearranged
    as_stored.repack = false;
    as_stored.copy_weights = false;
    auto a = llm::Model::load(path, as_stored);
    auto b = llm::Model::load(path);
    CHECK(a->layers[0].w_down->type == kind.stored);
    CHECK(a->layers[0].wqkv == nullptr);
    // q, k, v held one after another, as views into one matrix
    REQUIRE(b->layers[1].wqkv != nullptr);
    CHECK(b->layers[1].wqkv->ne[1] == 256 + 2 * b->hp.n_embd_kv());
    CHECK(b->layers[1].wk->data == static_cast<char*>(b->layers[1].wqkv->data) + b->layers[1].wq->nbytes());
    CHECK(b->layers[1].wv->data == static_cast<char*>(b->layers[1].wk->data) + b->layers[1].wk->nbytes());
    const bool rearranged = ggml::cpu::best().*kind.prefers;
    // the backend's layout, the stored type: llm/ sees GGUF types only
    CHECK(b->layers[0].w_down->type == kind.stored);
    CHECK(b->layers[0].w_down->layout == (rearranged ? ggml::cpu::LAYOUT_R256 : 0));
    CHECK(b->tok_embd->layout == (rearranged ? ggml::cpu::LAYOUT_R256 : 0));
    CHECK(b->layers[1].wq->layout == b->layers[1].wqkv->layout);
    CHECK(b->type_name() == a->type_name());
    const std::vector<int32_t> ids = prompt20();
    std::vector<std::vector<float>> batched, stepwise;
    for (const llm::Model* m : {a.get(), b.get()}) {
      llm::Session s(*m, params24(ggml::Type::F16));
      s.eval(ids, true);  // the prompt GEMM
      batched.push_back(s.all_logits());
      llm::Session t(*m, params24(ggml::Type::F16));
      std::vector<float> got;
      for (int32_t id : ids) {  // the matrix-vector kernels
        t.eval(&id, 1);
        got.insert(got.end(), t.logits(), t.logits() + t.n_vocab());
      }
      stepwise.push_back(got);
    }
    CHECK(batched[0] == batched[1]);
    CHECK(stepwise[0] == stepwise[1]);
  }
}
