// convert: Hugging Face checkpoint directory -> GGUF (llama.cpp's names).
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <iostream>

#include "common.h"
#include "ggml/backend.h"
#include "llm/convert.h"
#include "llm/gguf.h"

namespace {

ggml::Type parse_outtype(const std::string& s) {
  if (s == "f32") return ggml::Type::F32;
  if (s == "f16") return ggml::Type::F16;
  if (s == "bf16") return ggml::Type::BF16;
  if (s == "q8_0") return ggml::Type::Q8_0;
  throw llm::Error("--outtype '" + s + "' is not one of f32, f16, bf16, q8_0");
}

// A bar redrawn in place on a terminal; on a pipe or file, a line per 10%.
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO)) {}
  void update(size_t done, size_t total, const std::string& name) {
    int pct = total ? int(100 * done / total) : 100;
    if (tty_) {
      const int width = 30;
      int fill = total ? int(width * done / total) : width;
      std::fprintf(stderr, "\r[%.*s%*s] %3d%% %zu/%zu %-40.40s", fill, "==============================", width - fill, "",
                   pct, done, total, name.c_str());
      if (done == total) std::fputc('\n', stderr);
    } else if (pct / 10 != last_ / 10 || done == total) {
      std::fprintf(stderr, "convert: %3d%% (%zu/%zu tensors)\n", pct, done, total);
    }
    last_ = pct;
  }

 private:
  bool tty_;
  int last_ = -1;
};

int run(int argc, char** argv) {
  cxxopts::Options opts("convert", "Convert a Hugging Face checkpoint directory (LLaMA, GPT-NeoX, GPT-J) to GGUF.");
  opts.positional_help("MODEL_DIR");
  opts.add_options()
      ("model_dir", "checkpoint directory: config.json, *.safetensors or pytorch_model*.bin, tokenizer files",
       cxxopts::value<std::string>())
      ("o,outfile", "output file (default: MODEL_DIR/<name>-<outtype>.gguf)", cxxopts::value<std::string>())
      ("outtype", "f32, f16, bf16 or q8_0 (1-D tensors stay f32)", cxxopts::value<std::string>()->default_value("f16"))
      ("vocab-only", "write the tokenizer metadata only (a vocab-only GGUF)")
      ("t,threads", "threads for quantizing (0: one per physical core)", cxxopts::value<int>()->default_value("0"))
      ("q,quiet", "no progress output");
  tool::add_standard_options(opts);
  opts.parse_positional({"model_dir"});
  {
    auto r = opts.parse(argc, argv);
    if (tool::answer_standard_options(r, opts, "convert", "\nFiles written (OUT) appear only when complete: they are written to a temporary in OUT's directory (unnamed, O_TMPFILE, where the filesystem allows; else OUT.XXXXXX.tmp) and renamed into place.\n")) return 0;
    if (!r.count("model_dir")) throw llm::Error("MODEL_DIR is required (see --help)");
    llm::ConvertOptions o;
    o.model_dir = r["model_dir"].as<std::string>();
    const std::string ot = r["outtype"].as<std::string>();
    o.outtype = parse_outtype(ot);
    o.vocab_only = r.count("vocab-only") > 0;
    if (r.count("outfile")) {
      o.out_path = r["outfile"].as<std::string>();
    } else {
      auto dir = std::filesystem::absolute(o.model_dir).lexically_normal();
      std::string name = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
      o.out_path = (std::filesystem::path(o.model_dir) / (name + (o.vocab_only ? "-vocab" : "-" + ot) + ".gguf")).string();
    }
    {
      const int t = tool::in_range(r, "threads", 0, 1024, "0 (one per physical core) or a count up to 1024");
      omp_set_num_threads(t > 0 ? t : ggml::physical_cores());
    }
    const bool quiet = r.count("quiet") > 0;
    Progress bar;
    if (!quiet) o.progress = [&](size_t d, size_t n, const std::string& name) { bar.update(d, n, name); };
    o.warn = [](const std::string& m) { std::fprintf(stderr, "convert: warning: %s\n", m.c_str()); };
    auto t0 = std::chrono::steady_clock::now();
    llm::ConvertSummary s = llm::convert_hf_checkpoint(o);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "convert: wrote %s: %s, %zu tensors, %.2f M parameters, %d tokens, %.1f MiB in %.1f s\n",
                 o.out_path.c_str(), llm::arch_name(s.arch), s.n_tensors, s.n_params / 1e6, s.n_vocab,
                 s.out_bytes / 1048576.0, secs);
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) { return tool::guarded_main("convert", run, argc, argv); }
