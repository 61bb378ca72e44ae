// bench: prompt processing (ppN) and token generation (tgN) speed of models,
// in the manner of llama-bench, with token generation also expressed as a
// share of the memory-bandwidth roofline measured in the same run.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <iostream>
#include <random>

#include "bandwidth.h"
#include "busy.h"
#include "common.h"
#include "ggml/backend.h"
#include "ggml/cuda.h"
#include "llm/model.h"
#include "llm/session.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Stat {
  double mean = 0, sd = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= (double)v.size();
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / (double)(v.size() - 1)) : 0;
  return s;
}

// Bytes of weights one generated token reads: every matrix a matmul streams
// (the token embedding only as the tied output matrix).
uint64_t bytes_per_token(const llm::Model& m) {
  uint64_t b = m.weight_bytes();
  const auto* e = m.file().find_tensor("token_embd.weight");
  if (m.output && e) b -= e->nbytes;
  return b;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if ((unsigned char)c < 0x20) continue;
    o += c;
  }
  return o;
}

int run(int argc, char** argv) {
  cxxopts::Options opts("bench", "Prompt processing and token generation speed (tokens/s).");
  opts.add_options()
      ("m,model", "GGUF model (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("p,n-prompt", "prompt tokens for the ppN test (0: skip)", cxxopts::value<int>()->default_value("128"))
      ("n,n-gen", "generated tokens for the tgN test (0: skip)", cxxopts::value<int>()->default_value("32"))
      ("d,depth", "tokens already in the cache before each test", cxxopts::value<int>()->default_value("0"))
      ("r,repetitions", "measured repetitions of each test", cxxopts::value<int>()->default_value("3"))
      ("o,output", "md or json (one object per line)", cxxopts::value<std::string>()->default_value("md"))
      ("no-bandwidth", "skip the read-bandwidth measurement (no roofline column)")
      ("busy", "N other processes spinning for the whole measurement (a machine that is not idle)",
       cxxopts::value<int>()->default_value("0"));
  tool::add_model_options(opts);
  tool::add_standard_options(opts);
  {
    auto r = opts.parse(argc, argv);
    if (tool::answer_standard_options(r, opts, "bench", "\nExample: bench -m a.gguf -m b.gguf -p 128 -n 32 -t 2 -r 3 -o json\n"))
      return 0;
    if (!r.count("model")) throw llm::Error("-m MODEL.gguf is required (see --help)");
    const int n_prompt = r["n-prompt"].as<int>(), n_gen = r["n-gen"].as<int>(), depth = r["depth"].as<int>();
    const int reps = r["repetitions"].as<int>();
    int threads = tool::threads(r);
    if (threads <= 0) threads = ggml::physical_cores();
    const std::string fmt = r["output"].as<std::string>();
    if (fmt != "md" && fmt != "json") throw llm::Error("-o must be md or json");
    if (n_prompt < 0 || n_gen < 0 || depth < 0 || reps < 1) throw llm::Error("-p, -n, -d must be >= 0 and -r >= 1");
    const bool bw_on = !r.count("no-bandwidth");
    const int busy_n = tool::in_range(r, "busy", 0, 256, "a count from 0 to 256");
    tool::BusyCores busy(busy_n);  // until the end of the measurement

    const int ngl = r["n-gpu-layers"].as<int>();
    double gpu_bw = 0;  // GB/s
    if (ngl > 0 && bw_on) gpu_bw = ggml::cuda_read_bandwidth();
    bool header = false;  // printed with the first model (an offload line first)
    std::mt19937 rng(1234);
    for (const auto& path : r["model"].as<std::vector<std::string>>()) {
      const llm::LoadOptions lo = tool::load_options(r);
      auto m = llm::Model::load(path, lo);
      if (fmt == "md" && !header) {
        header = true;
        if (ngl > 0)
          std::printf("offload: -ngl %d, %d of %lld layers on %s%s\n\n", ngl, m->n_gpu_layers(), (long long)m->hp.n_layer,
                      m->device_name().c_str(),
                      gpu_bw > 0 ? ("; GPU read bandwidth " + std::to_string(int(gpu_bw)) + " GB/s").c_str() : "");
        if (busy_n) std::printf("%d other process%s spinning\n\n", busy_n, busy_n == 1 ? "" : "es");
        std::printf("| model | type | size | params | test | threads | t/s | roofline |\n|---|---|---|---|---|---|---|---|\n");
        std::fflush(stdout);
      }
      llm::SessionParams sp;
      sp.n_ctx = std::max(depth + std::max(n_prompt, n_gen) + 8, 64);
      sp.n_batch = std::max(n_prompt, 1);
      sp.n_threads = threads;
      llm::Session s(*m, sp);
      std::uniform_int_distribution<int32_t> tok(0, (int32_t)m->hp.n_vocab - 1);
      std::vector<int32_t> prefill(depth);
      for (auto& t : prefill) t = tok(rng);
      auto reset = [&] {
        s.rewind(0);
        if (depth > 0) s.eval(prefill);
      };
      struct Test {
        std::string name;
        int n;
        bool prompt;
      };
      std::vector<Test> tests;
      const std::string at = depth ? "@d" + std::to_string(depth) : "";
      if (n_prompt > 0) tests.push_back({"pp" + std::to_string(n_prompt) + at, n_prompt, true});
      if (n_gen > 0) tests.push_back({"tg" + std::to_string(n_gen) + at, n_gen, false});
      for (const auto& t : tests) {
        std::vector<double> tps, bws;
        for (int rep = -1; rep < reps; rep++) {  // rep -1 warms up (page faults, caches)
          reset();
          std::vector<int32_t> ids(t.n);
          for (auto& x : ids) x = tok(rng);
          // Bandwidth before the warm-up and after the last repetition, not
          // between repetitions: streaming the 512 MiB probe evicts the L3,
          // and SmolLM2 (92 MiB, which this VM's L3 holds) then ran its next
          // ~10 tokens 20-30% slower than the steady state the repetitions
          // are meant to measure (a throwaway per-token timing).
          if (!t.prompt && bw_on && rep == -1 && ngl == 0) bws.push_back(measure_read_bandwidth(threads, size_t(512) << 20));
          auto t0 = Clock::now();
          if (t.prompt) {
            s.eval(ids);
          } else {
            for (int i = 0; i < t.n; i++) s.eval(&ids[i], 1);
          }
          double sec = std::chrono::duration<double>(Clock::now() - t0).count();
          if (rep >= 0) tps.push_back(t.n / sec);
        }
        if (!t.prompt && bw_on) bws.push_back(ngl > 0 ? gpu_bw : measure_read_bandwidth(threads, size_t(512) << 20));
        Stat st = stats(tps);
        double roof = 0;
        if (!t.prompt && bw_on) {
          // With every layer offloaded the weights stream from the GPU's memory.
          const double bw = stats(bws).mean * 1e9;
          roof = bw > 0 ? st.mean * (double)bytes_per_token(*m) / bw : 0;
        }
        if (fmt == "md") {
          std::printf("| %s | %s | %.1f MiB | %.1f M | %s | %d | %.2f ± %.2f | %s |\n", m->name().c_str(),
                      m->type_name().c_str(), m->weight_bytes() / 1048576.0, m->n_params() / 1e6, t.name.c_str(),
                      threads, st.mean, st.sd, roof > 0 ? (std::to_string((int)std::lround(roof * 100)) + "%").c_str() : "-");
        } else {
          std::printf("{\"model\": \"%s\", \"file\": \"%s\", \"type\": \"%s\", \"size_bytes\": %llu, \"n_params\": %llu, "
                      "\"test\": \"%s\", \"threads\": %d, \"busy\": %d, \"tokens_per_s\": %.3f, \"stddev\": %.3f, \"samples\": [",
                      json_escape(m->name()).c_str(), json_escape(path).c_str(), m->type_name().c_str(),
                      (unsigned long long)m->weight_bytes(), (unsigned long long)m->n_params(), t.name.c_str(), threads,
                      busy_n, st.mean, st.sd);
          for (size_t i = 0; i < tps.size(); i++) std::printf("%s%.3f", i ? ", " : "", tps[i]);
          std::printf("]");
          if (ngl > 0) std::printf(", \"n_gpu_layers\": %d, \"gpu\": \"%s\"", m->n_gpu_layers(), json_escape(m->device_name()).c_str());
          if (!t.prompt && bw_on)
            std::printf(", \"read_bw_gbs\": %.2f, \"bytes_per_token\": %llu, \"roofline_fraction\": %.4f",
                        stats(bws).mean, (unsigned long long)bytes_per_token(*m), roof);
          std::printf("}\n");
        }
        std::fflush(stdout);
      }
    }
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) { return tool::guarded_main("bench", run, argc, argv); }
