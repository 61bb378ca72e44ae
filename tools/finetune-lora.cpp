// finetune-lora: LoRA fine-tuning of a GGUF model (any base type, kept
// frozen in its own type) on a text, JSONL or pre-tokenized data set; writes
// the adapter as llama.cpp's LoRA GGUF and, if asked, as a PEFT directory.
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <string>

#include "ggml/cpu.h"
#include "common.h"
#include "peak.h"
#include "plot.h"
#include "llm/files.h"
#include "llm/finetune.h"
#include "llm/memory.h"
#include <nlohmann/json.hpp>

namespace {

// --bf16 is for CPUs whose bf16 dot product does more FLOPs than their float
// FMA (twice, on most AVX512-BF16 hosts); some run it at half. The products'
// path is not switched by a timing (a resumed run must take the same one):
// the user is told, in a fifth of a second of measuring.
void bf16_speed_note(const ggml::cpu::KernelSet& k) {
  if (!k.peak_bf16 || !k.peak_fma || std::string(k.name) == "amx") return;  // AMX tiles: another instruction
  const double bf = peak_rate(k.peak_bf16, 1, 0.02), fma = peak_rate(k.peak_fma, 1, 0.02);
  if (bf < fma)
    std::fprintf(stderr,
                 "finetune-lora: note: this CPU's bf16 dot product (vdpbf16ps) does %.2fx the FLOP/s of its float FMA "
                 "(%.0f against %.0f GFLOP/s a core): --bf16 saves memory here but may train slower than without it\n",
                 bf / fma, bf, fma);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> v;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t e = std::min(s.find(',', at), s.size());
    if (e > at) v.push_back(s.substr(at, e - at));
    at = e + 1;
  }
  return v;
}

std::string eta(double s) {
  char b[32];
  if (s >= 3600) std::snprintf(b, sizeof b, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else std::snprintf(b, sizeof b, "%dm%02ds", int(s / 60), int(s) % 60);
  return b;
}

// --dry-run: where the memory goes, as lines or one JSON object.
void print_plan(const llm::MemoryPlan& p, const llm::FinetuneOptions& o, const llm::Finetuner& ft, bool json) {
  const std::pair<const char*, size_t> parts[] = {
      {"weights", p.weights},          {"lora", p.lora},           {"gradients", p.gradients},
      {"optimizer", p.optimizer},      {"activations", p.activations}, {"recompute", p.recompute},
      {"scratch", p.scratch},          {"inputs", p.inputs},       {"eval", p.eval},
      {"runtime", p.runtime}};
  const char* what[] = {"base weights", "LoRA parameters", "gradients", "optimizer states",
                        "activations kept for backward", "recomputation (checkpointing)", "scratch (graph rest, kernels' work)",
                        "inputs (tokens, targets, dropout masks)", "validation graph", "runtime (code, libraries, tokenizer, data)"};
  if (json) {
    nlohmann::json j;
    for (const auto& [k, v] : parts) j[std::string(k) + "_bytes"] = v;
    j["training_bytes"] = p.total;
    j["load_peak_bytes"] = p.load_peak;
    j["peak_bytes"] = p.peak_bytes;
    j["micro_batch"] = o.micro_batch;
    j["accumulation"] = ft.batch() / o.micro_batch;
    j["checkpointing"] = o.checkpointing;
    j["graph_bytes"] = ft.planned_bytes();
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("memory plan: batch %lld = micro-batch %lld x %lld accumulated, checkpointing %s\n", (long long)ft.batch(),
              (long long)o.micro_batch, (long long)(ft.batch() / o.micro_batch), o.checkpointing ? "on" : "off");
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
    std::printf("  %-42s %12s\n", what[i], llm::format_mib(parts[i].second).c_str());
  std::printf("  %-42s %12s\n", "resident while training", llm::format_mib(p.total).c_str());
  std::printf("  %-42s %12s\n", "the most resident while loading (measured)", llm::format_mib(p.load_peak).c_str());
  std::printf("  %-42s %12s\n", "predicted peak resident memory", llm::format_mib(p.peak_bytes).c_str());
}

// --mem-budget: the first plan that fits, fastest first: without
// checkpointing (it costs a second forward pass), then micro-batches by how
// close a compute comes to 256 tokens (measured on SmolLM2: at 32 tokens a
// sequence, 8 sequences a compute ran 1.5-2x one; at 256, 4 ran 8% slower
// than one, the larger tensors falling out of cache); each candidate is built
// and planned.
template <class Make>
std::unique_ptr<llm::Finetuner> choose_plan(size_t budget, llm::FinetuneOptions& o, const llm::TrainData& train, Make make,
                                            const llm::ProcessBaseline& before) {
  const int64_t batch = train.file_batch > 0 ? train.file_batch : o.batch;
  const double len = double(std::max<int64_t>(train.max_len, 2));
  std::vector<int64_t> micro;
  for (int64_t mb = 1; mb <= batch; mb++)
    if (batch % mb == 0) micro.push_back(mb);
  std::stable_sort(micro.begin(), micro.end(), [&](int64_t a, int64_t b) {
    return std::fabs(std::log(double(a) * len / 256.0)) < std::fabs(std::log(double(b) * len / 256.0));
  });
  size_t smallest = SIZE_MAX;
  for (bool ck : {false, true})
    for (int64_t mb : micro) {
      o.checkpointing = ck;
      o.micro_batch = mb;
      auto f = make(o);
      const size_t need = f->memory(before).peak_bytes;
      smallest = std::min(smallest, need);
      if (need <= budget) {
        std::fprintf(stderr, "--mem-budget %s: micro-batch %lld (accumulating %lld), checkpointing %s: predicted peak %s\n",
                     llm::format_mib(budget).c_str(), (long long)mb, (long long)(batch / mb), ck ? "on" : "off",
                     llm::format_mib(need).c_str());
        return f;
      }
    }
  throw llm::Error("--mem-budget " + llm::format_mib(budget) + ": no plan fits; the smallest (micro-batch 1, checkpointing on) needs " +
                   llm::format_mib(smallest));
}

int run(int argc, char** argv) {
  // Blocks of 1 MiB and more always come fresh from the OS and go back when
  // freed (glibc otherwise raises this threshold after a large free and
  // serves later blocks from memory already resident): the memory plan then
  // knows what is resident, and a freed graph is really given back.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  cxxopts::Options opts("finetune-lora", "LoRA fine-tuning on the CPU: the base model stays frozen in its own type "
                                         "(F32, F16, BF16, Q8_0, Q4_x, Q5_x, K-quants); the adapter is trained in F32.");
  opts.add_options()
      ("m,model", "base model (GGUF)", cxxopts::value<std::string>())
      ("train", "training data: .txt, .jsonl ({\"text\"} or chat {\"messages\"}) or .npy int32 [n_batches, batch, seq]",
       cxxopts::value<std::string>())
      ("valid", "validation data (the same formats)", cxxopts::value<std::string>())
      ("o,output", "the adapter, as llama.cpp's LoRA GGUF", cxxopts::value<std::string>())
      ("peft-out", "also write the adapter as a PEFT directory", cxxopts::value<std::string>())
      ("log", "one JSON object per optimizer step to this file", cxxopts::value<std::string>())
      ("plot", "the training and validation loss curves as a PNG", cxxopts::value<std::string>())
      ("ctx", "tokens per sequence", cxxopts::value<int64_t>()->default_value("512"))
      ("batch", "sequences per optimizer step (.npy: the file's)", cxxopts::value<int64_t>()->default_value("8"))
      ("micro-batch", "sequences per forward/backward (gradients accumulate over batch / micro-batch)",
       cxxopts::value<int64_t>()->default_value("1"))
      ("epochs", "passes over the training data", cxxopts::value<int64_t>()->default_value("1"))
      ("steps", "optimizer steps (instead of --epochs)", cxxopts::value<int64_t>()->default_value("0"))
      ("shuffle", "shuffle the sequences every epoch (the default; .npy batches are always in order)")
      ("no-shuffle", "keep the data's order")
      ("seed", "seed of the adapter's initialisation and the shuffle", cxxopts::value<uint64_t>()->default_value("1"))
      ("eval-every", "validation loss every N steps (0: before and after training)",
       cxxopts::value<int64_t>()->default_value("0"))
      ("log-every", "a progress line every N steps when stderr is not a terminal",
       cxxopts::value<int64_t>()->default_value("10"))
      ("save-every", "write a checkpoint every N steps (and at the end) to --checkpoint-dir",
       cxxopts::value<int64_t>()->default_value("0"))
      ("checkpoint-dir", "where checkpoints go (the newest two are kept)", cxxopts::value<std::string>())
      ("resume", "continue from the newest complete checkpoint in --checkpoint-dir (the result is the same as a run "
                 "never interrupted)");
  opts.add_options("memory")
      ("dry-run", "build and plan the run, print where its memory goes and the predicted peak, do not train")
      ("json", "with --dry-run: the plan as one JSON object (peak_bytes: the predicted peak resident memory)")
      ("mem-budget", "choose --micro-batch and --checkpointing so the predicted peak fits SIZE (6G, 800M, ...), "
                     "keeping --batch; the fastest plan that fits", cxxopts::value<std::string>());
  opts.add_options("LoRA")
      ("lora-r", "rank", cxxopts::value<int>()->default_value("8"))
      ("lora-alpha", "alpha (the update is scaled by alpha / r)", cxxopts::value<float>()->default_value("16"))
      ("lora-dropout", "dropout on each adapter's input while training, in [0, 1)",
       cxxopts::value<float>()->default_value("0"))
      ("rslora", "rank-stabilised scaling: alpha / sqrt(r)")
      ("lora-targets", "comma list of projections: q,k,v,o,gate,up,down (LLaMA); qkv,o,up,down (GPT-NeoX); "
                       "q,k,v,o,up,down (GPT-J); PEFT's module names work too (default: all)",
       cxxopts::value<std::string>()->default_value(""))
      ("adapter-in", "start from this adapter (a PEFT directory or a GGUF adapter)", cxxopts::value<std::string>());
  opts.add_options("optimizer")
      ("optim", "adamw, adamw8bit (both moments 8-bit block-wise, as bitsandbytes; tensors under 4096 values "
                "keep F32 ones) or sgd", cxxopts::value<std::string>()->default_value("adamw"))
      ("lr", "learning rate", cxxopts::value<double>()->default_value("1e-4"))
      ("lr-schedule", "const, linear or cosine (after --warmup steps rising from 0)",
       cxxopts::value<std::string>()->default_value("const"))
      ("warmup", "warm-up steps", cxxopts::value<int64_t>()->default_value("0"))
      ("weight-decay", "decoupled weight decay (AdamW) or L2 (SGD)", cxxopts::value<double>()->default_value("0"))
      ("adam-beta1", "", cxxopts::value<double>()->default_value("0.9"))
      ("adam-beta2", "", cxxopts::value<double>()->default_value("0.999"))
      ("adam-eps", "", cxxopts::value<double>()->default_value("1e-8"))
      ("momentum", "SGD momentum", cxxopts::value<double>()->default_value("0"))
      ("grad-clip", "clip the gradients' global norm to this (0: off)", cxxopts::value<double>()->default_value("0"))
      ("checkpointing", "recompute each layer in the backward pass instead of keeping its activations")
      ("bf16", "mixed precision: products with the frozen base and attention's in bf16 (AVX512-BF16/AMX CPUs), an F32/F16 base's matrices held as bf16 (with the BF16 GEMM), activations kept for the backward pass in bf16")
      ("float-backward", "with a Q8_0, Q4_0 or Q4_1 base: the backward pass's products through it in float (by default int8, as its forward's: the base requantized along its other axis, the gradient rounded to 8 bits per block of 32)");
  opts.add_options("model loading")("t,threads", "threads (0: one per physical core)",
                                    cxxopts::value<int>()->default_value("0"));
  tool::add_standard_options(opts);
  auto r = opts.parse(argc, argv);
  if (tool::answer_standard_options(
          r, opts, "finetune-lora",
          "\nExample: finetune-lora -m SmolLM2-135M-Instruct.Q8_0.gguf --train data.txt --valid valid.txt --ctx 128 "
          "--batch 8 --epochs 2 --lr 2e-4 -o adapter.gguf --log train.jsonl\n"
          "         main -m SmolLM2-135M-Instruct.Q8_0.gguf --lora adapter.gguf -p \"...\"\n"
          "The adapter appears only when complete (written to a temporary beside it and renamed).\n"))
    return 0;
  for (const char* k : {"model", "train", "output"})
    if (!r.count(k)) throw llm::Error("-m MODEL, --train DATA and -o ADAPTER.gguf are required (see --help)");
  if (r.count("shuffle") && r.count("no-shuffle")) throw llm::Error("give --shuffle or --no-shuffle, not both");

  llm::FinetuneOptions o;
  o.ctx = tool::in_range<int64_t>(r, "ctx", 2, int64_t(1) << 20, "at least 2");
  o.batch = tool::in_range<int64_t>(r, "batch", 1, int64_t(1) << 20, "at least 1");
  o.micro_batch = tool::in_range<int64_t>(r, "micro-batch", 1, int64_t(1) << 20, "at least 1");
  o.epochs = tool::in_range<int64_t>(r, "epochs", 1, int64_t(1) << 30, "at least 1");
  o.steps = tool::in_range<int64_t>(r, "steps", 0, int64_t(1) << 40, "0 (from --epochs) or a count");
  o.shuffle = !r.count("no-shuffle");
  o.seed = r["seed"].as<uint64_t>();
  o.checkpointing = r.count("checkpointing") > 0;
  o.bf16 = r.count("bf16") > 0;
  o.int8_backward = r.count("float-backward") == 0;
  o.lora_dropout = tool::in_range(r, "lora-dropout", 0.0f, 0.999f, "in [0, 1)");
  o.threads = tool::in_range(r, "threads", 0, 1024, "0 (one per physical core) or a count up to 1024");
  const std::string optim = r["optim"].as<std::string>();
  if (optim != "adamw" && optim != "adamw8bit" && optim != "sgd")
    throw llm::Error("--optim must be adamw, adamw8bit or sgd, not '" + optim + "'");
  o.optim.kind = optim == "sgd"         ? ggml::OptimizerConfig::Kind::SGD
                 : optim == "adamw8bit" ? ggml::OptimizerConfig::Kind::AdamW8bit
                                        : ggml::OptimizerConfig::Kind::AdamW;
  o.optim.lr = r["lr"].as<double>();
  std::string sched = r["lr-schedule"].as<std::string>();
  if (sched == "const") sched = "constant";
  o.optim.schedule = ggml::parse_schedule(sched);
  o.optim.warmup = tool::in_range<int64_t>(r, "warmup", 0, int64_t(1) << 40, "0 or more");
  o.optim.weight_decay = r["weight-decay"].as<double>();
  o.optim.beta1 = r["adam-beta1"].as<double>();
  o.optim.beta2 = r["adam-beta2"].as<double>();
  o.optim.eps = r["adam-eps"].as<double>();
  o.optim.momentum = r["momentum"].as<double>();
  o.optim.clip_norm = r["grad-clip"].as<double>();
  const int64_t eval_every = tool::in_range<int64_t>(r, "eval-every", 0, int64_t(1) << 40, "0 or more");
  const int64_t log_every = tool::in_range<int64_t>(r, "log-every", 1, int64_t(1) << 40, "at least 1");
  const std::string out = r["output"].as<std::string>();
  const int64_t save_every = tool::in_range<int64_t>(r, "save-every", 0, int64_t(1) << 40, "0 (off) or a count");
  const bool resume = r.count("resume") > 0;
  std::string ck_dir;
  if (save_every > 0 || resume) {
    if (!r.count("checkpoint-dir")) throw llm::Error("--save-every and --resume need --checkpoint-dir DIR");
    ck_dir = r["checkpoint-dir"].as<std::string>();
    std::error_code ec;
    std::filesystem::create_directories(ck_dir, ec);
    if (const std::string why = llm::not_a_directory_reason(ck_dir); !why.empty())
      throw llm::Error("--checkpoint-dir " + ck_dir + ": " + why);
  }

  llm::LoadOptions lo;
  // Where the products round them to bf16 anyway (sets without the BF16 GEMM
  // run --bf16's products in F32: the base stays as stored there).
  lo.bf16_matrices = o.bf16 && ggml::cpu::best().gemm_bf16.kernel != nullptr;
  if (lo.bf16_matrices) bf16_speed_note(ggml::cpu::best());
  auto model = llm::Model::load(r["model"].as<std::string>(), lo);
  const llm::TrainData train = llm::load_train_data(r["train"].as<std::string>(), *model, o.ctx);
  llm::TrainData valid;
  const bool have_valid = r.count("valid") > 0;
  if (have_valid) valid = llm::load_train_data(r["valid"].as<std::string>(), *model, o.ctx);
  std::unique_ptr<llm::Lora> lora;
  if (r.count("adapter-in")) {
    lora = llm::Lora::load(*model, r["adapter-in"].as<std::string>());
  } else {
    std::vector<std::string> targets = split_commas(r["lora-targets"].as<std::string>());
    if (targets.empty()) targets = llm::Lora::module_names(model->hp.arch);
    for (std::string& t : targets) t = llm::Lora::module_name(model->hp.arch, t);
    const int rank = tool::in_range(r, "lora-r", 1, 4096, "from 1 to 4096");
    const float alpha = r["lora-alpha"].as<float>();
    if (!(alpha > 0)) throw llm::Error("--lora-alpha must be positive");
    lora = llm::Lora::create(*model, rank, alpha, targets, o.seed, r.count("rslora") > 0);
  }
  // The memory plan: measured what is resident now, the rest predicted from
  // the planned graphs (llm::MemoryPlan).
  const llm::ProcessBaseline before = llm::ProcessBaseline::measure(*model);
  auto make = [&](const llm::FinetuneOptions& fo) {
    auto f = std::make_unique<llm::Finetuner>(*model, *lora, train, fo);
    if (have_valid) f->prepare_eval(valid.max_len);
    return f;
  };
  std::unique_ptr<llm::Finetuner> ftp;
  if (r.count("mem-budget")) {
    if (r.count("micro-batch") || r.count("checkpointing"))
      throw llm::Error("--mem-budget chooses --micro-batch and --checkpointing: give it or them, not both");
    const size_t budget = llm::parse_size(r["mem-budget"].as<std::string>(), "--mem-budget");
    ftp = choose_plan(budget, o, train, make, before);
  } else {
    ftp = make(o);
  }
  llm::Finetuner& ft = *ftp;
  const llm::MemoryPlan plan = ft.memory(before);
  if (r.count("dry-run")) {
    print_plan(plan, o, ft, r.count("json") > 0);
    return 0;
  }
  // Checkpoints are checkpoint-<step>.gguf, each renamed into place whole: a
  // name with that pattern is a complete one.
  auto checkpoints = [&]() {
    std::vector<std::pair<int64_t, std::string>> v;
    for (const auto& e : std::filesystem::directory_iterator(ck_dir)) {
      const std::string n = e.path().filename().string();
      if (n.size() == 24 && n.compare(0, 11, "checkpoint-") == 0 && n.compare(19, 5, ".gguf") == 0 &&
          n.find_first_not_of("0123456789", 11) == 19)
        v.push_back({std::stoll(n.substr(11, 8)), e.path().string()});
    }
    std::sort(v.begin(), v.end());
    return v;
  };
  if (!ck_dir.empty())  // a checkpoint a kill interrupted leaves only its temporary
    for (const auto& e : std::filesystem::directory_iterator(ck_dir)) {
      const std::string n = e.path().filename().string();
      if (n.compare(0, 11, "checkpoint-") == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0)
        std::filesystem::remove(e.path());
    }
  if (resume) {
    const auto v = checkpoints();
    if (v.empty()) throw llm::Error("--resume: no complete checkpoint in " + ck_dir);
    ft.resume(v.back().second);
    std::fprintf(stderr, "resumed from %s (step %lld of %lld)\n", v.back().second.c_str(), (long long)ft.steps_done(),
                 (long long)ft.total_steps());
  }
  // The log is written as the run goes (a killed run keeps what it did);
  // resuming keeps the lines of the steps done and goes on after them.
  std::FILE* log = nullptr;
  if (r.count("log")) {
    const std::string lp = r["log"].as<std::string>();
    std::string kept;
    if (resume) {
      std::ifstream in(lp);
      std::string line;
      while (std::getline(in, line)) {
        const size_t at = line.find("\"step\": ");
        if (at != std::string::npos && std::atoll(line.c_str() + at + 8) <= ft.steps_done()) kept += line + "\n";
      }
    }
    llm::OutputFile rewrite(lp);
    if (std::fwrite(kept.data(), 1, kept.size(), rewrite.stream()) != kept.size()) throw llm::Error("cannot write " + lp);
    rewrite.commit();
    log = std::fopen(lp.c_str(), "a");
    if (!log) throw llm::Error("cannot open " + lp + " for appending");
  }
  struct Closer {
    std::FILE* f;
    ~Closer() {
      if (f) std::fclose(f);
    }
  } closer{log};
  size_t n_params = 0;
  for (const ggml::Tensor* p : lora->params()) n_params += size_t(p->nelements());
  std::fprintf(stderr,
               "finetune-lora: %s, %zu training sequences (%lld counted tokens)%s; LoRA r %d on %zu weights "
               "(%zu parameters); %lld steps; graph %.1f MiB, predicted peak memory %s\n",
               model->name().c_str(), train.seqs.size(), (long long)train.counted(),
               have_valid ? (", " + std::to_string(valid.seqs.size()) + " validation").c_str() : "", lora->rank(),
               lora->adapters().size(), n_params, (long long)ft.total_steps(), double(ft.planned_bytes()) / (1 << 20),
               llm::format_mib(plan.peak_bytes).c_str());
  double v0 = NAN;
  if (have_valid) {
    v0 = ft.evaluate(valid);
    std::fprintf(stderr, "validation loss before: %.4f\n", v0);
  }
  const bool tty = isatty(STDERR_FILENO);
  if (r.count("plot") && !plot_available()) plot_losses(r["plot"].as<std::string>(), "", {}, {});  // says why, before the run
  std::vector<std::pair<double, double>> train_pts, valid_pts;
  if (have_valid) valid_pts.push_back({double(ft.steps_done()), v0});
  const auto t_start = std::chrono::steady_clock::now();
  double last_valid = v0;
  int64_t trained_tokens = 0;
  while (!ft.done()) {
    const llm::StepLog s = ft.step();
    trained_tokens += s.tokens;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double tps = double(s.tokens) / s.seconds;
    double vl = NAN;
    if (have_valid && ((eval_every > 0 && s.step % eval_every == 0) || ft.done())) last_valid = vl = ft.evaluate(valid);
    train_pts.push_back({double(s.step), s.loss});
    if (!std::isnan(vl)) valid_pts.push_back({double(s.step), vl});
    if (log) {
      std::fprintf(log,
                   "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.8g, \"grad_norm\": %.6f, \"tokens\": %lld, "
                   "\"tokens_per_s\": %.1f",
                   (long long)s.step, s.loss, s.lr, s.grad_norm, (long long)s.tokens, tps);
      if (!std::isnan(vl)) std::fprintf(log, ", \"valid_loss\": %.6f", vl);
      std::fprintf(log, "}\n");
      std::fflush(log);
    }
    if (save_every > 0 && (s.step % save_every == 0 || ft.done())) {
      char name[32];
      std::snprintf(name, sizeof name, "checkpoint-%08lld.gguf", (long long)s.step);
      ft.save_checkpoint(ck_dir + "/" + name);
      const auto v = checkpoints();
      for (size_t i = 0; i + 2 < v.size(); i++) std::filesystem::remove(v[i].second);
    }
    const double left = el / double(s.step) * double(ft.total_steps() - s.step);
    if (tty) {
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %.0f tokens/s  ETA %s   ", (long long)s.step,
                   (long long)ft.total_steps(), s.loss, tps, eta(left).c_str());
      if (ft.done()) std::fprintf(stderr, "\n");
    } else if (s.step % log_every == 0 || ft.done() || s.step == 1) {
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3g  grad norm %.3f  %.0f tokens/s  ETA %s\n",
                   (long long)s.step, (long long)ft.total_steps(), s.loss, s.lr, s.grad_norm, tps, eta(left).c_str());
    }
  }
  if (have_valid) std::fprintf(stderr, "validation loss after: %.4f (before: %.4f)\n", last_valid, v0);
  if (r.count("plot")) {
    // a resumed run draws the steps before it from the log
    if (log && resume && r.count("log")) {
      std::ifstream in(r["log"].as<std::string>());
      std::string line;
      std::vector<std::pair<double, double>> all, vall;
      while (std::getline(in, line)) {
        const size_t a = line.find("\"step\": "), b = line.find("\"loss\": "), v = line.find("\"valid_loss\": ");
        if (a == std::string::npos || b == std::string::npos) continue;
        const double st = std::atof(line.c_str() + a + 8);
        all.push_back({st, std::atof(line.c_str() + b + 8)});
        if (v != std::string::npos) vall.push_back({st, std::atof(line.c_str() + v + 14)});
      }
      train_pts = all;
      if (!vall.empty()) valid_pts = vall;
    }
    plot_losses(r["plot"].as<std::string>(), model->name() + ": LoRA r " + std::to_string(lora->rank()), train_pts,
                valid_pts);
    std::fprintf(stderr, "wrote %s\n", r["plot"].as<std::string>().c_str());
  }
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const long long done = (long long)ft.steps_done();
  ftp.reset();  // the training memory goes back before the outputs are written
  lora->save_gguf(out);
  std::fprintf(stderr, "wrote %s\n", out.c_str());
  if (r.count("peft-out")) {
    lora->save_peft(r["peft-out"].as<std::string>());
    std::fprintf(stderr, "wrote %s\n", r["peft-out"].as<std::string>().c_str());
  }
  std::fprintf(stderr, "trained %lld steps in %.1f s (%.0f tokens/s) | peak memory %.1f MiB (predicted %s)\n", done, el,
               double(trained_tokens) / std::max(el, 1e-9), double(llm::peak_rss_bytes()) / 1048576.0,
               llm::format_mib(plan.peak_bytes).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return tool::guarded_main("finetune-lora", run, argc, argv); }
