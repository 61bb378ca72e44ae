// main: generate text with a GGUF model (completion, one chat turn, or an
// interactive chat), stream it as it comes, and report speed and memory.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cxxopts.hpp>
#include <iostream>
#include <sstream>

#include "common.h"
#include "llm/chat.h"
#include "llm/chat_context.h"
#include "llm/memory.h"
#include "llm/model.h"
#include <nlohmann/json.hpp>
#include "llm/npy.h"
#include "llm/sampling.h"
#include "llm/session.h"
#include "llm/stop.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Ctrl-C: the first stops the answer being generated, the second ends the
// program after the current evaluation (with its summary), a third at once.
volatile std::sig_atomic_t g_interrupts = 0;
extern "C" void on_sigint(int) {
  g_interrupts = g_interrupts + 1;
  if (g_interrupts >= 3) _exit(130);
}
void install_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a read of the next chat line returns, and the chat ends
  sigaction(SIGINT, &sa, nullptr);
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v > INT32_MAX) throw llm::Error("--ids: '" + item + "' is not a token id");
    ids.push_back((int32_t)v);
  }
  if (ids.empty()) throw llm::Error("--ids: no token ids");
  return ids;
}

// Streams generated text, holding back what could still turn into a stop string.
class Output {
 public:
  explicit Output(std::vector<std::string> stops) : m_(std::move(stops)) {}
  // Returns true when a stop string has been completed.
  bool add(const std::string& s) {
    bool stopped = false;
    emit(m_.add(s, stopped));
    return stopped;
  }
  void flush() { emit(m_.flush()); }

 private:
  static void emit(const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  }
  llm::StopMatcher m_;
};

struct Stats {
  double load_s = 0, prompt_s = 0, gen_s = 0;
  size_t prompt_tokens = 0, gen_tokens = 0;
};

// Where generated tokens go: the plain session (a completion stops when the
// context is full) or a chat (which drops its oldest turns to go on).
struct Sink {
  llm::Session& session;
  llm::ChatContext* chat = nullptr;
  Stats& st;
  // Evaluates one token; false when the context is full and nothing can go.
  bool push(int32_t id) {
    auto t0 = Clock::now();
    if (!chat) {
      if (session.n_past() >= session.n_ctx()) {
        std::fprintf(stderr, "\nmain: context full (%s); stopping\n", llm::tokens_str(session.n_ctx()).c_str());
        return false;
      }
      session.eval(&id, 1);
      st.gen_s += since(t0);
      return true;
    }
    llm::ChatContext::Shift sh;
    try {
      sh = chat->append({id});
    } catch (const llm::Error& e) {
      std::fprintf(stderr, "\nmain: %s; the answer stops here\n", e.what());
      return false;
    }
    if (sh.turns > 0) {
      report(sh);
      st.prompt_s += since(t0);  // mostly the re-evaluation
      st.prompt_tokens += (size_t)sh.reevaluated;
    } else {
      st.gen_s += since(t0);
    }
    return true;
  }
  static void report(const llm::ChatContext::Shift& sh) {
    std::fprintf(stderr, "\n[main: the context is full: dropped the oldest %d turn%s (%s) to go on]\n", sh.turns,
                 sh.turns == 1 ? "" : "s", llm::tokens_str(sh.tokens).c_str());
  }
};

// Generates up to n_predict tokens after the session's current state; stops
// at EOS/end-of-turn, a stop string, a full context or Ctrl-C.
// ignore_eos: EOS and the end-of-turn token are never sampled (their logits
// set to -inf), so only n_predict, a stop string, the context or Ctrl-C end.
void generate(Sink& sink, llm::Sampler& smp, const llm::Tokenizer& tok, int n_predict,
              const std::vector<std::string>& stops, int32_t end_of_turn, bool ignore_eos) {
  Output out(stops);
  llm::StreamDecoder dec(tok, false);
  const llm::Vocab& v = tok.vocab();
  std::vector<float> masked;
  for (int i = 0; n_predict < 0 || i < n_predict; i++) {
    if (g_interrupts) break;
    const float* logits = sink.session.logits();
    if (ignore_eos) {
      masked.assign(logits, logits + sink.session.n_vocab());
      for (int32_t e : {v.eos, end_of_turn})
        if (e >= 0 && e < (int32_t)masked.size()) masked[e] = -INFINITY;
      logits = masked.data();
    }
    int32_t id = smp.sample(logits);
    smp.accept(id);
    if (id == v.eos || id == end_of_turn) break;
    bool stop = out.add(dec.push(id));
    if (!sink.push(id)) break;
    sink.st.gen_tokens++;
    if (stop) break;
  }
  out.add(dec.flush());
  out.flush();
}

// --dry-run: the session's largest graphs planned (Session::reserve), and
// what is resident now; the rest of the weights (touched by the first
// token), the graphs' buffers, the kernels' work memory and the logits and
// sampler's arrays are added.
void print_inference_plan(const llm::Model& model, llm::Session& session, bool json) {
  const size_t work = session.reserve();
  const llm::ProcessBaseline now = llm::ProcessBaseline::measure(model);
  // Offloaded weights and caches are in GPU memory, not the process's; the
  // graphs' buffers are on both sides (pinned host memory and its GPU copy).
  const size_t gpu_weights = size_t(model.device_bytes()), gpu_kv = session.kv_device_bytes();
  const size_t weights = size_t(model.weight_bytes()) - gpu_weights;
  const size_t copies = weights - size_t(model.mapped_bytes());
  const size_t kv = session.kv_bytes() - gpu_kv, scratch = session.scratch_bytes() + work;
  const size_t sampling = size_t(model.hp.n_vocab) * 16;
  const size_t known = copies + kv;
  const size_t runtime = (now.own() > known ? now.own() - known : 0) + sampling;
  const size_t peak = std::max(now.peak, weights + kv + scratch + runtime);
  if (json) {
    nlohmann::json j = {{"weights_bytes", weights}, {"kv_cache_bytes", kv}, {"scratch_bytes", scratch},
                        {"runtime_bytes", runtime}, {"peak_bytes", peak}, {"n_ctx", session.n_ctx()}};
    if (model.n_gpu_layers() > 0)
      j["gpu"] = {{"n_gpu_layers", model.n_gpu_layers()}, {"weights_bytes", gpu_weights}, {"kv_cache_bytes", gpu_kv},
                  {"scratch_bytes", session.scratch_bytes()}, {"device", model.device_name()}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("memory plan: context %lld\n", (long long)session.n_ctx());
  std::printf("  %-44s %12s\n", "weights", llm::format_mib(weights).c_str());
  std::printf("  %-44s %12s\n", "KV cache", llm::format_mib(kv).c_str());
  std::printf("  %-44s %12s\n", "scratch (graphs' buffers, kernels' work)", llm::format_mib(scratch).c_str());
  std::printf("  %-44s %12s\n", "runtime (code, libraries, tokenizer, logits)", llm::format_mib(runtime).c_str());
  std::printf("  %-44s %12s\n", "predicted peak resident memory", llm::format_mib(peak).c_str());
  if (model.n_gpu_layers() > 0) {
    std::printf("GPU memory (%s, %d layers offloaded):\n", model.device_name().c_str(), model.n_gpu_layers());
    std::printf("  %-44s %12s\n", "weights", llm::format_mib(gpu_weights).c_str());
    std::printf("  %-44s %12s\n", "KV cache", llm::format_mib(gpu_kv).c_str());
    std::printf("  %-44s %12s\n", "graphs' buffers", llm::format_mib(session.scratch_bytes()).c_str());
  }
}

int run(int argc, char** argv) {
  cxxopts::Options opts("main", "Generate text with a GGUF model (LLaMA, GPT-NeoX, GPT-J).");
  opts.add_options()
      ("m,model", "GGUF model file", cxxopts::value<std::string>())
      ("p,prompt", "prompt text", cxxopts::value<std::string>())
      ("f,file", "read the prompt from a file ('-': standard input)", cxxopts::value<std::string>())
      ("ids", "the prompt as exact token ids, e.g. 1,2,3 (no BOS added)", cxxopts::value<std::string>())
      ("n,n-predict", "tokens to generate (-1: until EOS or the context is full)", cxxopts::value<int>()->default_value("256"))
      ("c,ctx-size", "context length (0: the model's, at most 4096)", cxxopts::value<int64_t>()->default_value("0"))
      ("b,batch-size", "prompt tokens per evaluation", cxxopts::value<int64_t>()->default_value("512"))
      ("temp", "temperature (0: greedy)", cxxopts::value<float>()->default_value("0.8"))
      ("top-k", "top-k (0: off)", cxxopts::value<int>()->default_value("40"))
      ("top-p", "top-p (1: off)", cxxopts::value<float>()->default_value("0.95"))
      ("min-p", "min-p (0: off)", cxxopts::value<float>()->default_value("0.05"))
      ("repeat-penalty", "penalty for recent tokens (1: off)", cxxopts::value<float>()->default_value("1.1"))
      ("repeat-last-n", "window of the penalties", cxxopts::value<int>()->default_value("64"))
      ("frequency-penalty", "per-occurrence penalty", cxxopts::value<float>()->default_value("0"))
      ("presence-penalty", "penalty for any occurrence", cxxopts::value<float>()->default_value("0"))
      ("seed", "random seed (-1: from the clock)", cxxopts::value<int64_t>()->default_value("-1"))
      ("stop", "stop when the output contains this text, taken whole (repeat for more)", cxxopts::value<std::string>())
      ("chat", "chat with the model's template: one turn with -p/-f, else interactive on stdin")
      ("system", "system prompt for --chat (default: the template's own, if it has one)", cxxopts::value<std::string>())
      ("kv-type", "KV cache type: f16 or f32", cxxopts::value<std::string>()->default_value("f16"))
      ("no-memory-check", "allow a KV cache larger than the machine's memory")
      ("dump-logits", "write every prompt position's logits as float32 .npy [n_tokens, n_vocab]", cxxopts::value<std::string>())
      ("ignore-eos", "never end at EOS or the end of a turn (only -n, --stop, the context or Ctrl-C end)")
      ("no-display-prompt", "do not echo the prompt")
      ("dry-run", "load the model and plan the memory of filling the context (-c) in batches of -b: weights, KV "
                  "cache, scratch and the predicted peak; run nothing")
      ("json", "with --dry-run: the plan as one JSON object (peak_bytes: the predicted peak resident memory)");
  tool::add_model_options(opts);
  tool::add_lora_options(opts);
  tool::add_standard_options(opts);
  auto r = opts.parse(argc, argv);
  if (tool::answer_standard_options(r, opts, "main",
                                    "\nExamples:\n"
                                    "  main -m model.gguf -p \"Once upon a time\" -n 64\n"
                                    "  main -m model.gguf --chat -p \"Write a haiku about the sea.\"\n"
                                    "  main -m model.gguf --chat            (interactive; an empty line or EOF ends)\n"
                                    "  main -m model.gguf --ids 1,2,3 -n 0 --dump-logits logits.npy\n"
                                    "\nCtrl-C stops the answer being generated; a second one ends the program.\n"
                                    "A --dump-logits file (OUT) appears only when complete: they are written to a temporary in OUT's directory (unnamed, O_TMPFILE, where the filesystem allows; else OUT.XXXXXX.tmp) and renamed into place.\n"))
    return 0;

  // Every option is checked before the model loads.
  if (!r.count("model")) throw llm::Error("-m MODEL.gguf is required (see --help)");
  const int n_sources = (int)(r.count("prompt") + r.count("file") + r.count("ids"));
  const bool chat = r.count("chat") > 0;
  if (n_sources > 1) throw llm::Error("give only one of -p, -f and --ids");
  if (n_sources == 0 && !chat && !r.count("dry-run")) throw llm::Error("give a prompt with -p, -f or --ids (or --chat for interactive)");
  if (chat && r.count("ids")) throw llm::Error("--chat takes text, not --ids");
  if (r.count("system") && !chat) throw llm::Error("--system is the system prompt of --chat; add --chat");
  if (r.count("dump-logits") && n_sources == 0) throw llm::Error("--dump-logits needs a prompt (-p, -f or --ids)");
  const std::string kvt = r["kv-type"].as<std::string>();
  if (kvt != "f16" && kvt != "f32") throw llm::Error("--kv-type must be f16 or f32");
  const int n_predict = tool::in_range(r, "n-predict", -1, INT32_MAX, "-1 (until the end) or a count of 0 or more");
  llm::SessionParams sp;
  sp.n_ctx = tool::in_range<int64_t>(r, "ctx-size", 0, INT64_MAX, "0 (the model's length) or a positive length");
  sp.n_batch = tool::in_range<int64_t>(r, "batch-size", 1, INT64_MAX, "at least 1");
  sp.n_threads = tool::threads(r);
  sp.kv_type = kvt == "f32" ? ggml::Type::F32 : ggml::Type::F16;
  sp.ignore_memory_limit = r.count("no-memory-check") > 0;
  llm::SamplingParams smp;
  const float inf = INFINITY;
  smp.temp = tool::in_range(r, "temp", 0.0f, 100.0f, "between 0 (greedy) and 100");
  smp.top_k = tool::in_range(r, "top-k", 0, INT32_MAX, "0 (off) or a count of 1 or more");
  smp.top_p = tool::in_range(r, "top-p", 1e-9f, 1.0f, "in (0, 1]; 1 is off");
  smp.min_p = tool::in_range(r, "min-p", 0.0f, 1.0f, "in [0, 1]; 0 is off");
  smp.repeat_penalty = tool::in_range(r, "repeat-penalty", 1e-9f, inf, "positive; 1 is off");
  smp.penalty_last_n = tool::in_range(r, "repeat-last-n", 0, INT32_MAX, "0 or more");
  smp.frequency_penalty = tool::in_range(r, "frequency-penalty", -inf, inf, "a number");
  smp.presence_penalty = tool::in_range(r, "presence-penalty", -inf, inf, "a number");
  const int64_t seed = tool::in_range<int64_t>(r, "seed", -1, INT64_MAX, "-1 (from the clock) or 0 or more");
  smp.seed = seed < 0 ? (uint64_t)std::chrono::system_clock::now().time_since_epoch().count() : (uint64_t)seed;
  const bool ignore_eos = r.count("ignore-eos") > 0;
  std::vector<std::string> stops = tool::all_values(r, "stop");
  for (const auto& s : stops)
    if (s.empty()) throw llm::Error("--stop: an empty stop string would stop before the first token");
  std::vector<int32_t> given_ids;
  if (r.count("ids")) given_ids = parse_ids(r["ids"].as<std::string>());
  std::string text;  // -p or -f, read before the load so a bad path fails at once
  if (r.count("file")) text = tool::read_text(r["file"].as<std::string>());
  else if (r.count("prompt")) text = r["prompt"].as<std::string>();

  auto t_load = Clock::now();
  auto model = llm::Model::load(r["model"].as<std::string>(),
                                tool::load_options(r));
  Stats st;
  st.load_s = since(t_load);
  const llm::Tokenizer& tok = *model->tokenizer;
  const tool::Loras loras = tool::load_loras(r, *model);
  sp.loras = loras.applied;
  llm::Session session(*model, sp);
  if (r.count("dry-run")) {
    print_inference_plan(*model, session, r.count("json") > 0);
    return 0;
  }
  llm::Sampler sampler(smp, model->hp.n_vocab);

  llm::ChatFormat fmt(tok.vocab());
  std::vector<llm::ChatMessage> start;  // the conversation's start: the system turn
  if (r.count("system")) {
    if (!r["system"].as<std::string>().empty()) start.push_back({"system", r["system"].as<std::string>()});
  } else {
    start = fmt.with_system({});
  }
  auto banner = [&] {
    std::fprintf(stderr, "main: %s (%s, %s, %.1f M parameters, %.1f MiB) loaded in %.2f s; context %lld, %d threads\n",
                 model->name().c_str(), llm::arch_name(model->hp.arch), model->type_name().c_str(),
                 model->n_params() / 1e6, model->weight_bytes() / 1048576.0, st.load_s, (long long)session.n_ctx(),
                 sp.n_threads > 0 ? sp.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    if (model->n_gpu_layers() > 0)
      std::fprintf(stderr, "main: %d of %lld layers on %s (%.1f MiB of weights)\n", model->n_gpu_layers(),
                   (long long)model->hp.n_layer, model->device_name().c_str(), model->device_bytes() / 1048576.0);
  };
  auto accept_all = [&](const std::vector<int32_t>& ids) {
    for (int32_t id : ids) sampler.accept(id);
  };
  // Evaluation of prompt tokens, timed as the prompt.
  auto timed = [&](size_t n, auto&& f) {
    auto t0 = Clock::now();
    f();
    st.prompt_s += since(t0);
    st.prompt_tokens += n;
  };
  auto bos = [&] {
    std::vector<int32_t> ids;
    if (tok.vocab().add_bos && tok.vocab().bos >= 0) ids.push_back(tok.vocab().bos);
    return ids;
  };
  std::vector<std::string> chat_stops = stops;
  for (const auto& s : fmt.stop_strings()) chat_stops.push_back(s);

  install_sigint();
  bool ended_by_interrupt = false;
  if (chat) {
    // A chat (one turn or interactive): the prefix (BOS, system turn) stays;
    // old turns are dropped when the context fills.
    llm::ChatContext cc(session);
    std::vector<int32_t> prefix = bos();
    auto sys = fmt.tokenize(tok, start, false);
    prefix.insert(prefix.end(), sys.begin(), sys.end());
    timed(prefix.size(), [&] { cc.set_prefix(prefix); });
    accept_all(prefix);
    Sink sink{session, &cc, st};
    const bool interactive = n_sources == 0;
    banner();
    if (interactive)
      std::fprintf(stderr, "main: chat mode (%s template%s); an empty line or EOF ends, Ctrl-C stops an answer\n",
                   fmt.chatml() ? "ChatML" : "plain", start.empty() ? "" : ", with a system prompt");
    for (bool first = true;; first = false) {
      std::string line;
      if (interactive) {
        g_interrupts = 0;
        std::fprintf(stderr, "\n> ");
        if (!std::getline(std::cin, line) || line.empty()) {
          ended_by_interrupt = g_interrupts > 0;
          break;
        }
      } else {
        if (!first) break;
        line = text;
      }
      auto turn = fmt.tokenize(tok, {{"user", line}}, true);
      llm::ChatContext::Shift sh;
      try {
        timed(turn.size(), [&] { sh = cc.begin_exchange(turn); });
      } catch (const llm::Error& e) {
        if (!interactive) throw;
        std::fprintf(stderr, "main: %s\n", e.what());
        continue;
      }
      if (sh.turns > 0) Sink::report(sh);
      accept_all(turn);
      generate(sink, sampler, tok, n_predict, chat_stops, fmt.end_of_turn(), ignore_eos);
      std::printf("\n");
      if (g_interrupts) std::fprintf(stderr, "main: stopped (Ctrl-C)\n");
      if (g_interrupts >= 2 || (!interactive && g_interrupts)) {
        ended_by_interrupt = true;
        break;
      }
      if (fmt.chatml()) {  // close the assistant's turn in the cache
        auto close = tok.encode("<|im_end|>\n", false, true);
        try {
          timed(close.size(), [&] { cc.append(close); });
        } catch (const llm::Error&) {
          // the next turn drops this one
        }
      }
    }
  } else {
    std::vector<int32_t> ids;
    if (r.count("ids")) {
      ids = given_ids;
    } else {
      ids = tok.encode(text, true, false);
    }
    if (ids.empty()) throw llm::Error("the prompt has no tokens (an empty text)");
    const int64_t room = n_predict == 0 ? session.n_ctx() : session.n_ctx() - 1;
    if ((int64_t)ids.size() > room)
      throw llm::Error("the prompt (" + llm::tokens_str((int64_t)ids.size()) + ") " +
                       (n_predict == 0 ? "does not fit" : "leaves no room to generate in") + " the context of " +
                       llm::tokens_str(session.n_ctx()) + " (raise -c)");
    for (int32_t id : ids)
      if (id < 0 || id >= model->hp.n_vocab)
        throw llm::Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                         std::to_string(model->hp.n_vocab));
    banner();
    const bool dump = r.count("dump-logits") > 0;
    timed(ids.size(), [&] { session.eval(ids, dump); });
    accept_all(ids);
    if (dump) {
      const std::string path = r["dump-logits"].as<std::string>();
      llm::write_npy_f32(path, session.all_logits().data(), {(int64_t)ids.size(), session.n_vocab()});
      std::fprintf(stderr, "main: wrote logits [%zu, %lld] to %s\n", ids.size(), (long long)session.n_vocab(), path.c_str());
    }
    if (n_predict != 0) {
      if (!r.count("no-display-prompt") && !r.count("ids")) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
      Sink sink{session, nullptr, st};
      generate(sink, sampler, tok, n_predict, stops, -1, ignore_eos);
      std::printf("\n");
      if (g_interrupts) {
        std::fprintf(stderr, "main: stopped (Ctrl-C)\n");
        ended_by_interrupt = true;
      }
    }
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::fprintf(stderr,
               "\nmain: load %.2f s | prompt %s in %.2f s (%.1f tok/s) | generation %s in %.2f s "
               "(%.1f tok/s) | peak memory %.1f MiB (KV cache %.1f MiB, scratch %.1f MiB)\n",
               st.load_s, llm::tokens_str((int64_t)st.prompt_tokens).c_str(), st.prompt_s,
               st.prompt_s > 0 ? st.prompt_tokens / st.prompt_s : 0.0, llm::tokens_str((int64_t)st.gen_tokens).c_str(), st.gen_s, st.gen_s > 0 ? st.gen_tokens / st.gen_s : 0.0, ru.ru_maxrss / 1024.0,
               session.kv_bytes() / 1048576.0, session.scratch_bytes() / 1048576.0);
  return ended_by_interrupt ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) { return tool::guarded_main("main", run, argc, argv); }
