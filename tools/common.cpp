#include <cstdlib>
#include <cmath>
#include "common.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "llm_version.h"

namespace tool {

std::string version_line(const std::string& name) {
  return name + " (llmengine) " LLM_VERSION ", commit " LLM_GIT_COMMIT;
}

void add_standard_options(cxxopts::Options& opts) {
  opts.add_options()("h,help", "show this help")("version", "show the version and exit");
}

bool answer_standard_options(const cxxopts::ParseResult& r, const cxxopts::Options& opts, const std::string& name,
                             const std::string& help_extra) {
  if (r.count("help")) {
    std::cout << opts.help() << help_extra;
    return true;
  }
  if (r.count("version")) {
    std::cout << version_line(name) << "\n";
    return true;
  }
  if (!r.unmatched().empty()) throw Error("unexpected argument '" + r.unmatched()[0] + "' (see --help)");
  return false;
}

namespace {
// Reads at most kMaxText bytes; a stream with more (/dev/zero, a wrong file)
// is refused rather than read until memory runs out.
std::string read_capped(std::istream& in, const std::string& name) {
  std::string out;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    out.append(buf, (size_t)in.gcount());
    if (out.size() > kMaxText)
      throw Error(name + ": more than " + std::to_string(kMaxText >> 20) + " MiB of text; refusing to read it all");
  }
  if (in.bad()) throw Error(name + ": read error");
  return out;
}
}  // namespace

std::string read_text(const std::string& path) {
  if (path == "-") return read_capped(std::cin, "standard input");
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(path + ": is a directory, not a text file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open: " + std::strerror(errno));
  return read_capped(f, path);
}

std::vector<std::string> all_values(const cxxopts::ParseResult& r, const std::string& long_name) {
  std::vector<std::string> v;
  for (const auto& kv : r.arguments())
    if (kv.key() == long_name) v.push_back(kv.value());
  return v;
}

template <class T>
T in_range(const cxxopts::ParseResult& r, const std::string& name, T lo, T hi, const std::string& must) {
  T v = r[name].as<T>();
  if (!(v >= lo && v <= hi)) throw Error("--" + name + " must be " + must);  // NaN fails too
  return v;
}
template int in_range(const cxxopts::ParseResult&, const std::string&, int, int, const std::string&);
template int64_t in_range(const cxxopts::ParseResult&, const std::string&, int64_t, int64_t, const std::string&);
template float in_range(const cxxopts::ParseResult&, const std::string&, float, float, const std::string&);

int guarded_main(const std::string& name, int (*body)(int, char**), int argc, char** argv) {
  // llama.cpp's spelling, which cxxopts would read as -n -g -l.
  static char ngl[] = "--n-gpu-layers";
  for (int i = 1; i < argc; i++)
    if (std::strcmp(argv[i], "-ngl") == 0) argv[i] = ngl;
  try {
    return body(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", name.c_str(), e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
  }
  return 1;
}

void add_model_options(cxxopts::Options& opts) {
  opts.add_options("model loading")
      ("t,threads", "threads (0: one per physical core)", cxxopts::value<int>()->default_value("0"))
      ("mmap", "compute with the weights straight from the file map as stored (instant load, pages shared "
               "between processes; generation slower on some machines; implies --no-repack)")
      ("no-repack", "keep every weight in its stored layout (no load-time rearranging for the CPU's faster "
                    "kernels; the results are the same)")
      ("n-gpu-layers", "offload the last N layers to the GPU (-ngl N; past the layer count the output "
                           "matrix too: -ngl 99 offloads everything); needs the CUDA build",
       cxxopts::value<int>()->default_value("0"));
}

llm::LoadOptions load_options(const cxxopts::ParseResult& r) {
  llm::LoadOptions o = llm::LoadOptions::for_flags(r.count("mmap") > 0, r.count("no-repack") > 0);
  o.n_gpu_layers = r["n-gpu-layers"].as<int>();
  if (o.n_gpu_layers < 0) throw std::runtime_error("--n-gpu-layers must be 0 or more");
  return o;
}

void add_lora_options(cxxopts::Options& opts) {
  opts.add_options("LoRA")
      ("lora", "apply a LoRA adapter (a GGUF adapter as llama.cpp's, or a PEFT directory), never merged; repeatable",
       cxxopts::value<std::vector<std::string>>())
      ("lora-scale", "the scale of the matching --lora's update (the n-th for the n-th; default 1); repeatable",
       cxxopts::value<std::vector<std::string>>());
}

Loras load_loras(const cxxopts::ParseResult& r, const llm::Model& model) {
  Loras l;
  const std::vector<std::string> files = all_values(r, "lora"), scales = all_values(r, "lora-scale");
  if (scales.size() > files.size()) throw llm::Error("--lora-scale given " + std::to_string(scales.size()) +
                                                     " times for " + std::to_string(files.size()) + " --lora");
  for (size_t i = 0; i < files.size(); i++) {
    float s = 1.0f;
    if (i < scales.size()) {
      char* end = nullptr;
      s = std::strtof(scales[i].c_str(), &end);
      if (end == scales[i].c_str() || *end || !std::isfinite(s))
        throw llm::Error("--lora-scale must be a number, not '" + scales[i] + "'");
    }
    l.held.push_back(llm::Lora::load(model, files[i]));
    l.applied.push_back({l.held.back().get(), s});
  }
  return l;
}

int threads(const cxxopts::ParseResult& r) {
  return in_range(r, "threads", 0, 1024, "0 (one per physical core) or a count up to 1024");
}

}  // namespace tool
