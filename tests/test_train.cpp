// Whole models against PyTorch + PEFT (scripts/gen_lora_fixtures.py): tiny
// LLaMA, GPT-NeoX (parallel and sequential residual) and GPT-J checkpoints
// with LoRA on every projection. The loss, the gradient of every LoRA
// tensor and the losses of 10 AdamW steps must match in F32.
#include <fstream>

#include <nlohmann/json.hpp>

#include "helpers.h"
#include "llm/checkpoint.h"
#include "llm/convert.h"
#include "llm/finetune.h"
#include "llm/gguf.h"
#include "llm/lora.h"
#include "llm/model.h"
#include "llm/train.h"

using namespace ggml;

namespace {
double rel_diff(const std::vector<float>& got, const std::vector<float>& want) {
  double d = 0, n = 0;
  for (size_t i = 0; i < got.size(); i++) d += std::pow(double(got[i]) - want[i], 2), n += double(want[i]) * want[i];
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-12);
}

struct Fixture {
  nlohmann::json j;
  std::unique_ptr<llm::Model> model;
  std::string dir;
};

Fixture load(const std::string& name) {
  Fixture f;
  f.dir = th::data_path("lora/" + name);
  std::ifstream in(f.dir + "/fixture.json");
  REQUIRE(in.good());
  f.j = nlohmann::json::parse(in);
  llm::ConvertOptions o;
  o.model_dir = th::data_path("hf/" + f.j["hf"].get<std::string>());
  o.out_path = (th::temp_dir() / (name + "-f32.gguf")).string();
  o.outtype = Type::F32;
  llm::convert_hf_checkpoint(o);
  f.model = llm::Model::load(o.out_path);
  return f;
}
// The fixture's batch in a training graph: its tokens, its targets (-100,
// not counted, as -1) and their count.
llm::TrainGraph fixture_batch(const Fixture& f, const llm::Lora* lora, Context& ctx, Graph& g) {
  const auto tokens = f.j["tokens"].get<std::vector<int>>();
  const auto targets = f.j["targets"].get<std::vector<int>>();
  const int64_t n = int64_t(tokens.size());
  llm::TrainGraph t = llm::build_train_graph(*f.model, lora, ctx, g, n);
  int counted = 0;
  for (int64_t i = 0; i < n; i++) {
    t.tokens->as<int32_t>()[i] = tokens[size_t(i)];
    t.targets->as<int32_t>()[i] = targets[size_t(i)] < 0 ? -1 : targets[size_t(i)];
    counted += targets[size_t(i)] >= 0;
  }
  *t.count->as<float>() = float(counted);
  return t;
}
}  // namespace

TEST_CASE("LoRA training matches PyTorch + PEFT: loss, every gradient, 10 AdamW steps") {
  for (std::string name : {"llama", "gptneox_parallel", "gptneox_sequential", "gptj"}) {
    CAPTURE(name);
    Fixture f = load(name);
    auto lora = llm::Lora::load_peft(*f.model, f.dir);
    Context ctx;
    Graph g;
    llm::TrainGraph t = fixture_batch(f, lora.get(), ctx, g);
    // checkpointing in every other case: the same gradients either way
    BackwardOptions bo;
    if (name == "llama" || name == "gptneox_sequential") bo.checkpoints = t.layer_inputs;
    Gradients grads = build_backward(ctx, g, t.loss, bo);
    auto be = cpu_backend(2);
    const auto& aw = f.j["adamw"];
    OptimizerConfig cfg;
    cfg.lr = aw["lr"].get<double>();
    cfg.weight_decay = aw["weight_decay"].get<double>();
    cfg.beta1 = aw["beta1"].get<double>();
    cfg.beta2 = aw["beta2"].get<double>();
    cfg.eps = aw["eps"].get<double>();
    Optimizer opt(lora->params(), cfg, *be);
    opt.accumulate(ctx, g, grads);
    GraphAllocator alloc(GraphAllocator::Mode::Reuse, be.get());
    alloc.allocate(g);
    be->compute(g);

    const double want_loss = f.j["loss"].get<double>();
    CHECK(std::fabs(*t.loss->as<float>() - want_loss) <= 1e-5 * want_loss);
    auto ref = llm::Checkpoint::open_safetensors({f.dir + "/grads.safetensors"});
    size_t checked = 0;
    double worst = 0;
    for (const llm::LoraAdapter& a : lora->adapters()) {
      for (bool is_b : {false, true}) {
        const llm::SourceTensor* r = ref->find(lora->peft_name(a, is_b));
        REQUIRE(r != nullptr);
        const Tensor* gr = grads.of(is_b ? a.b : a.a);
        REQUIRE(gr != nullptr);
        const std::vector<float> got =
            is_b ? lora->b_to_peft(a, gr) : std::vector<float>(gr->as<float>(), gr->as<float>() + gr->nelements());
        const double rel = rel_diff(got, r->to_f32());
        worst = std::max(worst, rel);
        CHECK_MESSAGE(rel <= 1e-4, lora->peft_name(a, is_b) << ": gradient off by " << rel);
        checked++;
      }
    }
    CHECK(checked == ref->tensors().size());
    const auto losses = f.j["losses"].get<std::vector<double>>();
    double worst_step = 0;
    for (size_t s = 1; s < losses.size(); s++) {
      opt.step();
      be->compute(g);
      const double rel = std::fabs(*t.loss->as<float>() - losses[s]) / losses[s];
      worst_step = std::max(worst_step, rel);
      CHECK_MESSAGE(rel <= 1e-4, "loss after AdamW step " << s << ": " << *t.loss->as<float>() << " vs " << losses[s]);
    }
    MESSAGE(name << ": loss " << *t.loss->as<float>() << ", worst gradient " << worst << ", worst step loss " << worst_step
                 << " (relative), " << alloc.buffer_size() << " bytes planned");
  }
}

TEST_CASE("mixed precision (bf16 products through the frozen base, bf16 activations): within a stated tolerance of PyTorch's F32") {
  // The products with the frozen F32 base, forward and backward, round both
  // operands to bf16. Stated: the loss within 1e-3 relative, each LoRA
  // gradient within 5e-2 (norm of the difference over the norm; measured up
  // to 2.8e-2, LLaMA's), the losses of 10 AdamW steps within 3e-2 (measured
  // up to 1.0e-2). Adam's first steps move every element by about the
  // learning rate whatever its gradient's size, so signs that bf16 flips on
  // near-zero gradients show in the losses.
  // With bf16_activations as well, the activations kept for the backward
  // pass are bf16 copies: the same tolerances hold. With bf16_attention too
  // (finetune-lora --bf16), attention's products round both operands: on
  // these tiny random models gradients within 8e-2 (measured 6.0e-2, GPT-J)
  // and losses within 5e-2 (measured 3.5e-2, LLaMA); on the README's KJV
  // run with an F32 base every step's loss within 7.2e-4 of F32's.
  for (int v : {0, 1, 2})
  for (std::string name : {"llama", "gptneox_parallel", "gptj"}) {
    const bool acts = v >= 1, attn = v == 2;
    CAPTURE(name);
    CAPTURE(acts);
    CAPTURE(attn);
    Fixture f = load(name);
    auto lora = llm::Lora::load_peft(*f.model, f.dir);
    Context ctx;
    Graph g;
    llm::TrainGraph t = fixture_batch(f, lora.get(), ctx, g);
    BackwardOptions bo;
    bo.bf16_products = true;
    bo.bf16_activations = acts;
    bo.bf16_attention = attn;
    Gradients grads = build_backward(ctx, g, t.loss, bo);
    int bf16_nodes = 0;
    for (const Tensor* nd : g.nodes()) bf16_nodes += nd->op == Op::MUL_MAT_T && (nd->op_params[0] & 1);
    CHECK(bf16_nodes > 0);
    int stored = 0, attention = 0;
    auto root = [](const Tensor* x) { return op_is_view(x->op) && x->view_src ? x->view_src : x; };
    for (const Tensor* nd : g.nodes()) {
      stored += nd->type == Type::BF16;
      attention += nd->op == Op::MUL_MAT && nd->op_params[MM_BF16_PARAM] == 1 && root(nd->src[0])->op != Op::NONE;
    }
    CHECK((stored > 0) == acts);
    CHECK((attention > 0) == attn);  // products of two activations flagged, forward and backward
    auto be = cpu_backend(2);
    OptimizerConfig cfg;
    cfg.lr = f.j["adamw"]["lr"].get<double>();
    cfg.weight_decay = f.j["adamw"]["weight_decay"].get<double>();
    Optimizer opt(lora->params(), cfg, *be);
    opt.accumulate(ctx, g, grads);
    GraphAllocator alloc(GraphAllocator::Mode::Reuse, be.get());
    alloc.allocate(g);
    be->compute(g);
    const double want_loss = f.j["loss"].get<double>();
    CHECK(std::fabs(*t.loss->as<float>() - want_loss) <= 1e-3 * want_loss);
    auto ref = llm::Checkpoint::open_safetensors({f.dir + "/grads.safetensors"});
    double worst = 0;
    for (const llm::LoraAdapter& a : lora->adapters())
      for (bool is_b : {false, true}) {
        const Tensor* gr = grads.of(is_b ? a.b : a.a);
        const std::vector<float> got =
            is_b ? lora->b_to_peft(a, gr) : std::vector<float>(gr->as<float>(), gr->as<float>() + gr->nelements());
        worst = std::max(worst, rel_diff(got, ref->find(lora->peft_name(a, is_b))->to_f32()));
      }
    CHECK(worst <= (attn ? 8e-2 : 5e-2));
    const auto losses = f.j["losses"].get<std::vector<double>>();
    double worst_step = 0;
    for (size_t s = 1; s < losses.size(); s++) {
      opt.step();
      be->compute(g);
      worst_step = std::max(worst_step, std::fabs(*t.loss->as<float>() - losses[s]) / losses[s]);
    }
    CHECK(worst_step <= (attn ? 5e-2 : 3e-2));
    MESSAGE(name << " in mixed precision" << std::string(acts ? " with bf16 activations" : "")
                 << std::string(attn ? " and attention" : "") << ": worst gradient " << worst << ", worst step loss "
                 << worst_step << " (relative)");
  }
}

TEST_CASE("bf16_matrices: an F32 base held as BF16 trains in mixed precision bit for bit as held in F32, in less memory") {
  // The GEMM's products (16 tokens or more; fewer take the dot-product
  // tiles, which keep an F32 weight exact) round the frozen weights to bf16
  // either way, in the packing or at load, both to nearest even: the same
  // floats must follow, for LLaMA's separate q/k/v and GPT-NeoX's fused qkv.
  for (std::string name : {"llama", "gptneox_parallel"}) {
    CAPTURE(name);
    Fixture f = load(name);
    llm::LoadOptions lo;
    lo.bf16_matrices = true;
    const std::string path = (th::temp_dir() / (name + "-f32.gguf")).string();
    auto held = llm::Model::load(path, lo);
    CHECK(held->tok_embd->type == Type::F32);  // looked up, not multiplied
    for (const llm::Layer& l : held->layers)
      for (const Tensor* w : {l.wq, l.wqkv, l.wo, l.w_up, l.w_down})
        if (w) CHECK(w->type == Type::BF16);
    CHECK(held->weight_bytes() < f.model->weight_bytes());
    std::vector<std::vector<float>> runs[2];
    for (int h = 0; h < 2; h++) {
      std::unique_ptr<llm::Model> keep = h ? std::move(held) : nullptr;
      if (h) std::swap(f.model, keep);
      auto lora = llm::Lora::load_peft(*f.model, f.dir);
      Context ctx;
      Graph g;
      const int64_t n = 40;
      llm::TrainGraph t = llm::build_train_graph(*f.model, lora.get(), ctx, g, n);
      for (int64_t i = 0; i < n; i++) {
        t.tokens->as<int32_t>()[i] = int32_t((i * 7 + 3) % f.model->hp.n_vocab);
        t.targets->as<int32_t>()[i] = i + 1 < n ? int32_t(((i + 1) * 7 + 3) % f.model->hp.n_vocab) : -1;
      }
      *t.count->as<float>() = float(n - 1);
      BackwardOptions bo;
      bo.bf16_products = true;
      bo.bf16_activations = true;
      Gradients grads = build_backward(ctx, g, t.loss, bo);
      auto be = cpu_backend(2);
      Optimizer opt(lora->params(), OptimizerConfig{}, *be);
      opt.accumulate(ctx, g, grads);
      GraphAllocator alloc(GraphAllocator::Mode::Reuse, be.get());
      alloc.allocate(g);
      for (int step = 0; step < 4; step++) {
        if (step) opt.step();
        be->compute(g);
        runs[h].push_back({*t.loss->as<float>()});
      }
      for (const llm::LoraAdapter& a : lora->adapters())
        for (const Tensor* gr : {grads.of(a.a), grads.of(a.b)}) runs[h].emplace_back(gr->as<float>(), gr->as<float>() + gr->nelements());
      if (h) std::swap(f.model, keep);
    }
    REQUIRE(runs[0].size() == runs[1].size());
    if (!cpu::best().gemm_bf16.kernel) {  // F32 products there: finetune-lora holds nothing as BF16
      MESSAGE("no BF16 GEMM in the " << cpu::best().name << " kernel set: held weights not compared");
      continue;
    }
    for (size_t i = 0; i < runs[0].size(); i++) {
      CAPTURE(i);
      double worst = 0;
      for (size_t j = 0; j < runs[0][i].size(); j++) worst = std::max(worst, std::fabs(double(runs[0][i][j]) - runs[1][i][j]));
      CHECK_MESSAGE(runs[0][i] == runs[1][i], "differs by up to " << worst << " (" << runs[0][i][0] << ")");
    }
  }
}

TEST_CASE("LoRA: B's rows go to the GGUF layout and back") {
  Fixture f = load("llama");
  auto lora = llm::Lora::load_peft(*f.model, f.dir);
  auto ck = llm::Checkpoint::open_safetensors({f.dir + "/adapter_model.safetensors"});
  for (const llm::LoraAdapter& a : lora->adapters()) {
    const auto want = ck->find(lora->peft_name(a, true))->to_f32();
    CHECK(lora->b_to_peft(a, a.b) == want);
  }
}

TEST_CASE("LoRA: new adapters leave the model's outputs as they were; bad adapters fail clearly") {
  Fixture f = load("gptneox_sequential");
  auto fresh = llm::Lora::create(*f.model, 8, 16, llm::Lora::module_names(f.model->hp.arch), 1);
  std::vector<float> out[2];
  for (int with = 0; with < 2; with++) {
    Context ctx;
    Graph g;
    llm::TrainGraph t = llm::build_train_graph(*f.model, with ? fresh.get() : nullptr, ctx, g, 6);
    for (int i = 0; i < 6; i++) t.tokens->as<int32_t>()[i] = 10 + i, t.targets->as<int32_t>()[i] = 20 + i;
    GraphAllocator alloc;
    alloc.allocate(g);
    Executor(2).compute(g);
    out[with].assign(t.logits->as<float>(), t.logits->as<float>() + t.logits->nelements());
  }
  CHECK(out[0] == out[1]);  // B starts at zero
  CHECK_THROWS_WITH_AS(llm::Lora::create(*f.model, 4, 8, {"q_proj"}, 1), doctest::Contains("not a projection of a gptneox"),
                       llm::Error);
  CHECK_THROWS_WITH_AS(llm::Lora::load_peft(*f.model, th::data_path("lora/llama")), doctest::Contains("unexpected tensor"),
                       llm::Error);
  CHECK_THROWS_WITH_AS(llm::Lora::load_peft(*f.model, th::temp_dir().string()), doctest::Contains("cannot open"),
                       llm::Error);
}

TEST_CASE("finetune: 10 AdamW steps over .npy batches match PEFT's per-step losses and final adapter") {
  for (std::string name : {"llama", "gptneox_parallel", "gptneox_sequential", "gptj"}) {
    CAPTURE(name);
    Fixture f = load(name);
    auto lora = llm::Lora::load_peft(*f.model, f.dir);
    const llm::TrainData d = llm::load_train_data(f.dir + "/batches.npy", *f.model, 64);
    CHECK(d.file_batch == 2);
    llm::FinetuneOptions o;
    o.ctx = 64;
    o.threads = 2;
    o.optim.lr = f.j["adamw"]["lr"].get<double>();
    o.optim.weight_decay = f.j["adamw"]["weight_decay"].get<double>();
    llm::Finetuner ft(*f.model, *lora, d, o);
    const auto want = f.j["npy_losses"].get<std::vector<double>>();
    REQUIRE(ft.total_steps() == int64_t(want.size()));
    double worst = 0;
    for (size_t s = 0; s < want.size(); s++) {
      const llm::StepLog log = ft.step();
      CHECK(log.step == int64_t(s + 1));
      CHECK(log.tokens == 2 * 11);
      worst = std::max(worst, std::fabs(log.loss - want[s]) / want[s]);
    }
    CHECK(worst <= 1e-4);
    auto fin = llm::Checkpoint::open_safetensors({f.dir + "/final_adapter.safetensors"});
    double worst_w = 0;
    for (const llm::LoraAdapter& a : lora->adapters())
      for (bool is_b : {false, true}) {
        const std::vector<float> got =
            is_b ? lora->b_to_peft(a, a.b) : std::vector<float>(a.a->as<float>(), a.a->as<float>() + a.a->nelements());
        worst_w = std::max(worst_w, rel_diff(got, fin->find(lora->peft_name(a, is_b))->to_f32()));
      }
    CHECK(worst_w <= 1e-4);
    MESSAGE(name << ": 10 steps, worst step loss " << worst << ", final adapter within " << worst_w << " (relative)");
  }
}

TEST_CASE("finetune: a micro-batch of sequences in one graph trains as one sequence at a time does") {
  // Each sequence attends to itself alone (dimension 3 of attention), so the
  // batched graph's losses and adapter equal the sequential ones up to the
  // order of float sums; with dropout too (the masks follow the sequence).
  for (std::string name : {"llama", "gptneox_parallel", "gptj"}) {
    CAPTURE(name);
    Fixture f = load(name);
    const llm::TrainData d = llm::load_train_data(f.dir + "/batches.npy", *f.model, 64);
    std::vector<std::vector<double>> losses;
    std::vector<std::vector<float>> weights;
    for (int64_t micro : {1, 2}) {
      auto lora = llm::Lora::load_peft(*f.model, f.dir);
      llm::FinetuneOptions o;
      o.ctx = 64;
      o.threads = 2;
      o.micro_batch = micro;
      o.lora_dropout = 0.1f;
      o.optim.lr = 5e-3;
      llm::Finetuner ft(*f.model, *lora, d, o);
      losses.emplace_back();
      for (int s = 0; s < 5; s++) losses.back().push_back(ft.step().loss);
      weights.emplace_back();
      for (const Tensor* p : lora->params()) weights.back().insert(weights.back().end(), p->as<float>(), p->as<float>() + p->nelements());
    }
    double worst = 0;
    for (size_t s = 0; s < losses[0].size(); s++) worst = std::max(worst, std::fabs(losses[1][s] - losses[0][s]) / losses[0][s]);
    CHECK(worst <= 1e-5);
    CHECK(rel_diff(weights[1], weights[0]) <= 1e-5);
    CHECK(weights[1] != weights[0]);  // really another graph (sums in another order)
    MESSAGE(name << ": micro-batch 2 against 1: losses within " << worst << ", adapter within "
                 << rel_diff(weights[1], weights[0]));
  }
}

TEST_CASE("adapters round-trip through llama.cpp's GGUF and PEFT's directory") {
  Fixture f = load("gptneox_parallel");
  auto lora = llm::Lora::load_peft(*f.model, f.dir);
  const std::string g = (th::temp_dir() / "rt.gguf").string(), p = (th::temp_dir() / "rt-peft").string();
  lora->save_gguf(g);
  lora->save_peft(p);
  for (const auto& back : {llm::Lora::load(*f.model, g), llm::Lora::load(*f.model, p)}) {
    REQUIRE(back->adapters().size() == lora->adapters().size());
    CHECK(back->rank() == lora->rank());
    for (size_t i = 0; i < lora->adapters().size(); i++) {
      const llm::LoraAdapter &x = lora->adapters()[i], &y = *back->find(x.weight);
      CHECK(y.scale == x.scale);
      CHECK(std::memcmp(x.a->data, y.a->data, x.a->nbytes()) == 0);
      CHECK(std::memcmp(x.b->data, y.b->data, x.b->nbytes()) == 0);
    }
  }
  // the GGUF has llama.cpp's keys and names
  auto file = llm::gguf::File::open(g);
  CHECK(file->get_string("general.type") == "adapter");
  CHECK(file->get_string("adapter.type") == "lora");
  CHECK(file->get_float("adapter.lora.alpha") == doctest::Approx(8.0));
  CHECK(file->find_tensor("blk.0.attn_qkv.weight.lora_a") != nullptr);
  CHECK(file->find_tensor("blk.1.ffn_down.weight.lora_b") != nullptr);
  // an adapter for another architecture is refused
  Fixture other = load("gptj");
  CHECK_THROWS_WITH_AS(llm::Lora::load(*other.model, g), doctest::Contains("adapter for a gptneox model"), llm::Error);
}

TEST_CASE("training data: windows, chat turns, batches, and clear errors") {
  Fixture f = load("llama");
  const auto dir = th::temp_dir();
  auto write = [&](const std::string& name, const std::string& body) {
    std::ofstream o(dir / name, std::ios::binary);
    o << body;
    return (dir / name).string();
  };
  const llm::TrainData txt = llm::load_train_data(write("t.txt", std::string(3000, 'a') + " hello world"), *f.model, 16);
  CHECK(txt.seqs.size() > 1);
  for (const auto& s : txt.seqs) {
    CHECK(int64_t(s.tokens.size()) <= 16);
    CHECK(s.tokens[0] == f.model->tokenizer->vocab().bos);  // the LLaMA fixture's tokenizer adds BOS
    for (size_t i = 0; i + 1 < s.tokens.size(); i++) CHECK(s.targets[i] == s.tokens[i + 1]);
    CHECK(s.targets.back() == -1);
  }
  const llm::TrainData chat = llm::load_train_data(
      write("c.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": "
                       "\"hello there\"}]}\n\n{\"text\": \"plain text line\"}\n"),
      *f.model, 256);
  REQUIRE(chat.seqs.size() == 2);
  // only the assistant's turn counts, and it does count
  const auto& c = chat.seqs[0];
  const auto assistant = f.model->tokenizer->encode("hello there", false, false);
  int64_t counted = 0;
  for (int32_t t : c.targets) counted += t >= 0;
  // the content and the template's end of turn, not the header or the user's turn
  CHECK(counted >= int64_t(assistant.size()));
  const auto end = f.model->tokenizer->encode("<|im_end|>\n", false, true);  // plain text in this fixture's vocabulary
  CHECK(counted <= int64_t(assistant.size() + end.size()) + 2);
  MESSAGE("chat: " << c.tokens.size() << " tokens, " << counted << " counted; the reply alone is " << assistant.size());
  CHECK_THROWS_WITH_AS(llm::load_train_data(write("e.txt", ""), *f.model, 16), doctest::Contains("empty"), llm::Error);
  CHECK_THROWS_WITH_AS(llm::load_train_data(write("b.jsonl", "{\"text\": 1}\n{oops\n"), *f.model, 16),
                       doctest::Contains("b.jsonl:1: expected"), llm::Error);
  CHECK_THROWS_WITH_AS(llm::load_train_data(write("b2.jsonl", "{oops\n"), *f.model, 16), doctest::Contains("b2.jsonl:1: not JSON"),
                       llm::Error);
  CHECK_THROWS_WITH_AS(
      llm::load_train_data(write("u.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"), *f.model, 64),
      doctest::Contains("without an assistant turn"), llm::Error);
  CHECK_THROWS_WITH_AS(llm::load_train_data(f.dir + "/batches.npy", *f.model, 8), doctest::Contains("longer than the context"),
                       llm::Error);
}
