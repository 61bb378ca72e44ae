// perplexity: chunked perplexity of a text, and KL-divergence against a base model.
#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common.h"
#include "llm/model.h"
#include "llm/perplexity.h"

static int run(int argc, char** argv) {
  cxxopts::Options opts("perplexity", "Perplexity of a text under a model; KL-divergence against a base model.");
  opts.add_options()
      ("m,model", "GGUF model", cxxopts::value<std::string>())
      ("f,file", "text file ('-': standard input; e.g. models/kjv.txt from scripts/fetch-eval-text.sh)", cxxopts::value<std::string>())
      ("c,ctx-size", "window length; the second half of each window is scored", cxxopts::value<int64_t>()->default_value("512"))
      ("b,batch-size", "tokens per evaluation", cxxopts::value<int64_t>()->default_value("512"))
      ("chunks", "at most this many windows (-1: all)", cxxopts::value<int64_t>()->default_value("-1"))
      ("kl-base", "save this model's top-k log-probabilities as the base for --kl", cxxopts::value<std::string>())
      ("kl", "compare against a base file: mean KL-divergence, top-1 agreement, perplexity ratio", cxxopts::value<std::string>())
      ("top-k", "entries per position in a --kl-base file", cxxopts::value<int>()->default_value("32"));
  tool::add_model_options(opts);
  tool::add_lora_options(opts);
  tool::add_standard_options(opts);
  {
    auto r = opts.parse(argc, argv);
    if (tool::answer_standard_options(r, opts, "perplexity",
                                      "\nExample: perplexity -m base.gguf -f models/kjv.txt --chunks 100 --kl-base base.kl\n"
                                      "         perplexity -m q4_0.gguf -f models/kjv.txt --chunks 100 --kl base.kl\n"
                                      "A --kl-base file (OUT) appears only when complete: they are written to a temporary in OUT's directory (unnamed, O_TMPFILE, where the filesystem allows; else OUT.XXXXXX.tmp) and renamed into place.\n"))
      return 0;
    if (!r.count("model") || !r.count("file")) throw llm::Error("-m MODEL and -f TEXT are required (see --help)");
    if (r.count("kl") && r.count("kl-base")) throw llm::Error("give --kl-base or --kl, not both");
    const int64_t n_ctx = tool::in_range<int64_t>(r, "ctx-size", 8, int64_t(1) << 20, "at least 8");
    const int64_t n_batch = tool::in_range<int64_t>(r, "batch-size", 1, INT64_MAX, "at least 1");
    const int n_threads = tool::threads(r);
    const int64_t n_chunks = tool::in_range<int64_t>(r, "chunks", -1, INT64_MAX, "-1 (all) or a count of 1 or more");
    if (n_chunks == 0) throw llm::Error("--chunks must be -1 (all) or a count of 1 or more");
    const int top_k = tool::in_range(r, "top-k", 1, 1024, "between 1 and 1024");
    const std::string text = tool::read_text(r["file"].as<std::string>());
    auto model = llm::Model::load(r["model"].as<std::string>(),
                                  tool::load_options(r));
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> tokens = model->tokenizer->encode(text, false, false);
    std::fprintf(stderr, "perplexity: %s: %zu token%s (tokenized in %.1f s)\n", r["file"].as<std::string>().c_str(),
                 tokens.size(), tokens.size() == 1 ? "" : "s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    const tool::Loras loras = tool::load_loras(r, *model);
    llm::PerplexityOptions o;
    o.loras = loras.applied;
    o.n_ctx = n_ctx;
    o.n_batch = n_batch;
    o.n_threads = n_threads;
    o.n_chunks = n_chunks;
    o.top_k = top_k;
    if (r.count("kl-base")) o.kl_base_out = r["kl-base"].as<std::string>();
    if (r.count("kl")) o.kl_in = r["kl"].as<std::string>();
    auto t1 = std::chrono::steady_clock::now();
    o.progress = [&](int64_t d, int64_t n, double ppl) {
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      std::fprintf(stderr, "[%lld/%lld] ppl %.4f  (%.1f s, ~%.0f s left)\n", (long long)d, (long long)n, ppl, el,
                   el / (double)d * (double)(n - d));
    };
    llm::PerplexityResult res = llm::perplexity(*model, tokens, o);
    std::printf("model %s  type %s\n", model->path().c_str(), model->type_name().c_str());
    std::printf("windows %lld x %lld tokens, %lld scored\n", (long long)res.n_chunks, (long long)o.n_ctx, (long long)res.n_scored);
    std::printf("perplexity %.4f +/- %.4f\n", res.ppl, res.ppl_se);
    if (res.has_kl) {
      std::printf("base perplexity %.4f, ratio %.4f\n", res.base_ppl, res.ppl / res.base_ppl);
      std::printf("mean KL-divergence %.6f +/- %.6f nats\n", res.kl_mean, res.kl_se);
      std::printf("top-1 agreement %.2f%%\n", 100 * res.top1);
    }
    if (!o.kl_base_out.empty()) std::printf("wrote KL base %s\n", o.kl_base_out.c_str());
    return 0;
  }
}

int main(int argc, char** argv) { return tool::guarded_main("perplexity", run, argc, argv); }
