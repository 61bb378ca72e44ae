// quantize: rewrite a GGUF model's weight matrices in another type.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <iostream>

#include "common.h"
#include "llm/gguf.h"
#include "llm/quantize.h"

static int run(int argc, char** argv) {
  cxxopts::Options opts("quantize", "Rewrite a GGUF model's weights in another type.");
  opts.positional_help("IN.gguf OUT.gguf TYPE");
  opts.add_options()
      ("in", "input model", cxxopts::value<std::string>())
      ("out", "output model", cxxopts::value<std::string>())
      ("type", "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1", cxxopts::value<std::string>())
      ("t,threads", "threads (0: one per physical core)", cxxopts::value<int>()->default_value("0"))
      ("pure", "every 2-D tensor in TYPE (by default 4/5-bit types keep the output matrix at q8_0)")
      ("allow-requantize", "accept an already quantized input (dequantized first; errors add up)")
      ("q,quiet", "no per-tensor lines");
  tool::add_standard_options(opts);
  opts.parse_positional({"in", "out", "type"});
  {
    auto r = opts.parse(argc, argv);
    if (tool::answer_standard_options(r, opts, "quantize", "\n1-D tensors (norms, biases) always stay f32.\n" "Files written (OUT.gguf) appear only when complete: they are written to a temporary in OUT.gguf's directory (unnamed, O_TMPFILE, where the filesystem allows; else OUT.gguf.XXXXXX.tmp) and renamed into place.\n")) return 0;
    if (!r.count("in") || !r.count("out") || !r.count("type")) throw llm::Error("usage: quantize IN.gguf OUT.gguf TYPE (see --help)");
    llm::QuantizeOptions o;
    o.in_path = r["in"].as<std::string>();
    o.out_path = r["out"].as<std::string>();
    o.type = llm::parse_quant_type(r["type"].as<std::string>());
    o.n_threads = r["threads"].as<int>();
    if (o.n_threads < 0) throw llm::Error("--threads must not be negative");
    o.pure = r.count("pure") > 0;
    o.allow_requantize = r.count("allow-requantize") > 0;
    const bool quiet = r.count("quiet") > 0;
    o.warn = [](const std::string& m) { std::fprintf(stderr, "quantize: warning: %s\n", m.c_str()); };
    o.progress = [&](size_t d, size_t n, const llm::QuantizeOptions::TensorReport& t) {
      if (quiet) return;
      std::fprintf(stderr, "[%4zu/%zu] %-32s %5s -> %-5s %10lld values  rms error %.3e (%.2f%% of rms)\n", d, n,
                   t.name.c_str(), ggml::type_name(t.from), ggml::type_name(t.to), (long long)t.n_elements, t.rms_error,
                   t.rms_value > 0 ? 100.0 * t.rms_error / t.rms_value : 0.0);
    };
    auto t0 = std::chrono::steady_clock::now();
    llm::QuantizeSummary s = llm::quantize_file(o);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr,
                 "quantize: %s: %.2f MiB -> %.2f MiB (weights %.2f -> %.2f MiB), %.2f bits per weight, %.1f M values, "
                 "%.1f s\n",
                 o.out_path.c_str(), s.in_bytes / 1048576.0, s.out_bytes / 1048576.0, s.in_weight_bytes / 1048576.0,
                 s.out_weight_bytes / 1048576.0, s.bits_per_weight(), s.n_elements / 1e6, secs);
    return 0;
  }
}

int main(int argc, char** argv) { return tool::guarded_main("quantize", run, argc, argv); }
