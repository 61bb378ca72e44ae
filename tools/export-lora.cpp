// export-lora: a base model with LoRA adapters merged into its weights
// (W + s * scale * B A), written as a new GGUF in one type.
#include <cxxopts.hpp>
#include <map>

#include "common.h"
#include "llm/quantize.h"

namespace {
int run(int argc, char** argv) {
  cxxopts::Options opts("export-lora", "Merge LoRA adapters into a base model: each adapted weight becomes W + s * "
                                       "alpha/r * B A, every matrix is written in --outtype.");
  opts.add_options()
      ("m,model", "base model (GGUF)", cxxopts::value<std::string>())
      ("o,output", "the merged model (GGUF)", cxxopts::value<std::string>())
      ("outtype", "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1", cxxopts::value<std::string>()->default_value("f16"))
      ("t,threads", "threads (0: one per physical core)", cxxopts::value<int>()->default_value("0"));
  tool::add_lora_options(opts);
  tool::add_standard_options(opts);
  auto r = opts.parse(argc, argv);
  if (tool::answer_standard_options(r, opts, "export-lora",
                                    "\nExample: export-lora -m base.gguf --lora adapter.gguf -o merged.gguf --outtype q8_0\n"
                                    "The merged file appears only when complete (a temporary beside it, renamed).\n"))
    return 0;
  if (!r.count("model") || !r.count("output") || !r.count("lora"))
    throw llm::Error("-m BASE.gguf, --lora ADAPTER and -o MERGED.gguf are required (see --help)");
  const ggml::Type type = llm::parse_quant_type(r["outtype"].as<std::string>());
  const std::string base = r["model"].as<std::string>();
  auto model = llm::Model::load(base, llm::LoadOptions::for_flags(true, true));
  const tool::Loras loras = tool::load_loras(r, *model);
  // weight name -> its adapters and their scales
  std::map<std::string, std::vector<std::pair<const llm::LoraAdapter*, float>>> by_name;
  for (const auto& [l, s] : loras.applied)
    for (const llm::LoraAdapter& a : l->adapters()) by_name[l->weight_name(a)].push_back({&a, s * a.scale});
  llm::QuantizeOptions q;
  q.in_path = base;
  q.out_path = r["output"].as<std::string>();
  q.type = type;
  q.pure = true;
  q.allow_requantize = true;
  q.n_threads = tool::in_range(r, "threads", 0, 1024, "0 (one per physical core) or a count up to 1024");
  q.adjust_row = [&](const std::string& name, int64_t row, float* x, int64_t n) {
    auto it = by_name.find(name);
    if (it == by_name.end()) return;
    for (const auto& [a, s] : it->second) {
      const int64_t rank = a->a->ne[1];
      const float* b = a->b->as<float>() + row * rank;  // B's row: the output index
      for (int64_t k = 0; k < rank; k++) {
        const float c = s * b[k];
        const float* ar = a->a->as<float>() + k * n;
        for (int64_t j = 0; j < n; j++) x[j] += c * ar[j];
      }
    }
  };
  size_t merged = 0;
  for (const auto& [n, v] : by_name) merged += v.size();
  q.progress = [&](size_t done, size_t total, const llm::QuantizeOptions::TensorReport&) {
    if (done == total) std::fprintf(stderr, "export-lora: %zu tensors written, %zu adapted weights merged\n", total, merged);
  };
  const llm::QuantizeSummary s = llm::quantize_file(q);
  std::fprintf(stderr, "wrote %s (%.1f MiB, %s)\n", q.out_path.c_str(), double(s.out_bytes) / (1 << 20),
               ggml::type_name(type));
  return 0;
}
}  // namespace

int main(int argc, char** argv) { return tool::guarded_main("export-lora", run, argc, argv); }
