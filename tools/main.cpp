// main: generate text with a GGUF model (completion, one chat turn, or an
// interactive chat), stream it as it comes, and report speed and memory.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "llm/chat.h"
#include "llm/model.h"
#include "llm/npy.h"
#include "llm/sampling.h"
#include "llm/session.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw llm::Error(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
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
  explicit Output(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Returns true when a stop string has been completed.
  bool add(const std::string& s) {
    pending_ += s;
    for (const auto& st : stops_) {
      size_t at = pending_.find(st);
      if (at != std::string::npos) {
        emit(pending_.substr(0, at));
        pending_.clear();
        return true;
      }
    }
    size_t keep = 0;  // longest suffix of pending_ that is a prefix of a stop string
    for (const auto& st : stops_)
      for (size_t k = std::min(st.size() - 1, pending_.size()); k > keep; k--)
        if (pending_.compare(pending_.size() - k, k, st, 0, k) == 0) {
          keep = k;
          break;
        }
    emit(pending_.substr(0, pending_.size() - keep));
    pending_.erase(0, pending_.size() - keep);
    return false;
  }
  void flush() {
    emit(pending_);
    pending_.clear();
  }
  const std::string& text() const { return all_; }

 private:
  void emit(const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    all_ += s;
  }
  std::vector<std::string> stops_;
  std::string pending_, all_;
};

struct Stats {
  double load_s = 0, prompt_s = 0, gen_s = 0;
  size_t prompt_tokens = 0, gen_tokens = 0;
};

// Generates up to n_predict tokens after the session's current state; stops
// at EOS/end-of-turn or a stop string. Returns the generated text.
std::string generate(llm::Session& s, llm::Sampler& smp, const llm::Tokenizer& tok, int n_predict,
                     const std::vector<std::string>& stops, int32_t end_of_turn, Stats& st) {
  Output out(stops);
  llm::StreamDecoder dec(tok, false);
  const llm::Vocab& v = tok.vocab();
  for (int i = 0; n_predict < 0 || i < n_predict; i++) {
    if (s.n_past() >= s.n_ctx()) {
      std::fprintf(stderr, "\nmain: context full (%lld tokens); stopping\n", (long long)s.n_ctx());
      break;
    }
    int32_t id = smp.sample(s.logits());
    smp.accept(id);
    if (id == v.eos || id == end_of_turn) break;
    bool stop = out.add(dec.push(id));
    auto t0 = Clock::now();
    s.eval(&id, 1);
    st.gen_s += since(t0);
    st.gen_tokens++;
    if (stop) break;
  }
  out.add(dec.flush());
  out.flush();
  return out.text();
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options opts("main", "Generate text with a GGUF model (LLaMA, GPT-NeoX, GPT-J).");
  opts.add_options()
      ("m,model", "GGUF model file", cxxopts::value<std::string>())
      ("p,prompt", "prompt text", cxxopts::value<std::string>())
      ("f,file", "read the prompt from a file", cxxopts::value<std::string>())
      ("ids", "the prompt as exact token ids, e.g. 1,2,3 (no BOS added)", cxxopts::value<std::string>())
      ("n,n-predict", "tokens to generate (-1: until EOS or the context is full)", cxxopts::value<int>()->default_value("256"))
      ("c,ctx-size", "context length (0: the model's, at most 4096)", cxxopts::value<int64_t>()->default_value("0"))
      ("b,batch-size", "prompt tokens per evaluation", cxxopts::value<int64_t>()->default_value("512"))
      ("t,threads", "threads (0: all cores)", cxxopts::value<int>()->default_value("0"))
      ("mmap", "read the weights from the file map as stored, no copy (instant load, pages shared "
               "between processes; generation slower on some machines; implies --no-repack)")
      ("no-repack", "keep Q8_0, Q4_0 and Q4_1 matrices in their stored layout (no load-time rearranging into Q8_0R, Q4_0R, Q4_1R)")
      ("temp", "temperature (0: greedy)", cxxopts::value<float>()->default_value("0.8"))
      ("top-k", "top-k (0: off)", cxxopts::value<int>()->default_value("40"))
      ("top-p", "top-p (1: off)", cxxopts::value<float>()->default_value("0.95"))
      ("min-p", "min-p (0: off)", cxxopts::value<float>()->default_value("0.05"))
      ("repeat-penalty", "penalty for recent tokens (1: off)", cxxopts::value<float>()->default_value("1.1"))
      ("repeat-last-n", "window of the penalties", cxxopts::value<int>()->default_value("64"))
      ("frequency-penalty", "per-occurrence penalty", cxxopts::value<float>()->default_value("0"))
      ("presence-penalty", "penalty for any occurrence", cxxopts::value<float>()->default_value("0"))
      ("seed", "random seed (-1: from the clock)", cxxopts::value<int64_t>()->default_value("-1"))
      ("stop", "stop when the output contains this (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("chat", "chat with the model's template: one turn with -p/-f, else interactive on stdin")
      ("system", "system prompt for --chat", cxxopts::value<std::string>())
      ("kv-type", "KV cache type: f16 or f32", cxxopts::value<std::string>()->default_value("f16"))
      ("dump-logits", "write every prompt position's logits as float32 .npy [n_tokens, n_vocab]", cxxopts::value<std::string>())
      ("no-display-prompt", "do not echo the prompt")
      ("h,help", "show this help");
  try {
    auto r = opts.parse(argc, argv);
    if (r.count("help")) {
      std::cout << opts.help() << "\nExamples:\n"
                << "  main -m model.gguf -p \"Once upon a time\" -n 64\n"
                << "  main -m model.gguf --chat -p \"Write a haiku about the sea.\"\n"
                << "  main -m model.gguf --chat            (interactive; an empty line or EOF ends)\n"
                << "  main -m model.gguf --ids 1,2,3 -n 0 --dump-logits logits.npy\n";
      return 0;
    }
    if (!r.unmatched().empty()) throw llm::Error("unexpected argument '" + r.unmatched()[0] + "'");
    if (!r.count("model")) throw llm::Error("-m MODEL.gguf is required (see --help)");
    const int n_sources = (int)(r.count("prompt") + r.count("file") + r.count("ids"));
    const bool chat = r.count("chat") > 0;
    if (n_sources > 1) throw llm::Error("give only one of -p, -f and --ids");
    if (n_sources == 0 && !chat) throw llm::Error("give a prompt with -p, -f or --ids (or --chat for interactive)");
    if (chat && r.count("ids")) throw llm::Error("--chat takes text, not --ids");
    const std::string kvt = r["kv-type"].as<std::string>();
    if (kvt != "f16" && kvt != "f32") throw llm::Error("--kv-type must be f16 or f32");

    std::vector<int32_t> given_ids;
    if (r.count("ids")) given_ids = parse_ids(r["ids"].as<std::string>());
    auto t_load = Clock::now();
    auto model = llm::Model::load(r["model"].as<std::string>(),
                                  llm::LoadOptions::for_flags(r.count("mmap") > 0, r.count("no-repack") > 0));
    Stats st;
    st.load_s = since(t_load);
    const llm::Tokenizer& tok = *model->tokenizer;

    llm::SessionParams sp;
    sp.n_ctx = r["ctx-size"].as<int64_t>();
    sp.n_batch = r["batch-size"].as<int64_t>();
    sp.n_threads = r["threads"].as<int>();
    sp.kv_type = kvt == "f32" ? ggml::Type::F32 : ggml::Type::F16;
    llm::Session session(*model, sp);

    llm::SamplingParams smp;
    smp.temp = r["temp"].as<float>();
    smp.top_k = r["top-k"].as<int>();
    smp.top_p = r["top-p"].as<float>();
    smp.min_p = r["min-p"].as<float>();
    smp.repeat_penalty = r["repeat-penalty"].as<float>();
    smp.penalty_last_n = r["repeat-last-n"].as<int>();
    smp.frequency_penalty = r["frequency-penalty"].as<float>();
    smp.presence_penalty = r["presence-penalty"].as<float>();
    int64_t seed = r["seed"].as<int64_t>();
    smp.seed = seed < 0 ? (uint64_t)std::chrono::system_clock::now().time_since_epoch().count() : (uint64_t)seed;
    llm::Sampler sampler(smp, model->hp.n_vocab);
    std::vector<std::string> stops = r.count("stop") ? r["stop"].as<std::vector<std::string>>() : std::vector<std::string>{};
    const int n_predict = r["n-predict"].as<int>();

    llm::ChatFormat fmt(tok.vocab());
    std::string system = r.count("system") ? r["system"].as<std::string>() : fmt.default_system();
    auto banner = [&] {
      std::fprintf(stderr, "main: %s (%s, %s, %.1f M parameters, %.1f MiB) loaded in %.2f s; context %lld, %d threads\n",
                   model->name().c_str(), llm::arch_name(model->hp.arch), model->type_name().c_str(),
                   model->n_params() / 1e6, model->weight_bytes() / 1048576.0, st.load_s, (long long)session.n_ctx(),
                   sp.n_threads > 0 ? sp.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    };

    auto eval_prompt = [&](const std::vector<int32_t>& ids, bool all) {
      auto t0 = Clock::now();
      session.eval(ids, all);
      st.prompt_s += since(t0);
      st.prompt_tokens += ids.size();
      for (int32_t id : ids) sampler.accept(id);
    };

    if (chat && n_sources == 0) {
      // Interactive: the cache keeps the whole conversation.
      bool first = true;
      banner();
      std::fprintf(stderr, "main: chat mode (%s template); an empty line or EOF ends\n", fmt.chatml() ? "ChatML" : "plain");
      for (;;) {
        std::fprintf(stderr, "\n> ");
        std::string line;
        if (!std::getline(std::cin, line) || line.empty()) break;
        std::vector<llm::ChatMessage> msgs;
        if (first && !system.empty()) msgs.push_back({"system", system});
        msgs.push_back({"user", line});
        std::vector<int32_t> ids;
        if (first && tok.vocab().add_bos && tok.vocab().bos >= 0) ids.push_back(tok.vocab().bos);
        auto turn = fmt.tokenize(tok, msgs, true);
        ids.insert(ids.end(), turn.begin(), turn.end());
        first = false;
        eval_prompt(ids, false);
        std::vector<std::string> turn_stops = stops;
        for (const auto& s : fmt.stop_strings()) turn_stops.push_back(s);
        generate(session, sampler, tok, n_predict, turn_stops, fmt.end_of_turn(), st);
        std::printf("\n");
        if (fmt.chatml()) {  // close the assistant's turn in the cache
          auto close = tok.encode("<|im_end|>\n", false, true);
          if (session.n_past() + (int64_t)close.size() < session.n_ctx()) eval_prompt(close, false);
        }
      }
    } else {
      std::vector<int32_t> ids;
      std::string shown;
      if (r.count("ids")) {
        ids = given_ids;
      } else {
        std::string text = r.count("file") ? read_file(r["file"].as<std::string>()) : r["prompt"].as<std::string>();
        if (chat) {
          std::vector<llm::ChatMessage> msgs;
          if (!system.empty()) msgs.push_back({"system", system});
          msgs.push_back({"user", text});
          if (tok.vocab().add_bos && tok.vocab().bos >= 0) ids.push_back(tok.vocab().bos);
          auto turn = fmt.tokenize(tok, msgs, true);
          ids.insert(ids.end(), turn.begin(), turn.end());
          for (const auto& s : fmt.stop_strings()) stops.push_back(s);
        } else {
          ids = tok.encode(text, true, false);
          shown = text;
        }
      }
      if (ids.empty()) throw llm::Error("the prompt has no tokens");
      if ((int64_t)ids.size() >= session.n_ctx())
        throw llm::Error("the prompt has " + std::to_string(ids.size()) + " tokens; the context holds " +
                         std::to_string(session.n_ctx()) + " (raise -c)");
      for (int32_t id : ids)
        if (id < 0 || id >= model->hp.n_vocab)
          throw llm::Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(model->hp.n_vocab));
      banner();
      const bool dump = r.count("dump-logits") > 0;
      eval_prompt(ids, dump);
      if (dump) {
        const std::string path = r["dump-logits"].as<std::string>();
        llm::write_npy_f32(path, session.all_logits().data(), {(int64_t)ids.size(), session.n_vocab()});
        std::fprintf(stderr, "main: wrote logits [%zu, %lld] to %s\n", ids.size(), (long long)session.n_vocab(), path.c_str());
      }
      if (n_predict != 0) {
        if (!r.count("no-display-prompt") && !shown.empty()) {
          std::fwrite(shown.data(), 1, shown.size(), stdout);
          std::fflush(stdout);
        }
        generate(session, sampler, tok, n_predict, stops, chat ? fmt.end_of_turn() : -1, st);
        std::printf("\n");
      }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    std::fprintf(stderr,
                 "\nmain: load %.2f s | prompt %zu tokens in %.2f s (%.1f tok/s) | generation %zu tokens in %.2f s "
                 "(%.1f tok/s) | peak memory %.1f MiB (KV cache %.1f MiB, scratch %.1f MiB)\n",
                 st.load_s, st.prompt_tokens, st.prompt_s, st.prompt_s > 0 ? st.prompt_tokens / st.prompt_s : 0.0,
                 st.gen_tokens, st.gen_s, st.gen_s > 0 ? st.gen_tokens / st.gen_s : 0.0, ru.ru_maxrss / 1024.0,
                 session.kv_bytes() / 1048576.0, session.scratch_bytes() / 1048576.0);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "main: %s (see --help)\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "main: %s\n", e.what());
  }
  return 1;
}
