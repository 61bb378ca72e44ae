// The real model (SmolLM2-135M-Instruct.Q4_1.gguf, fetched by
// scripts/fetch-models.sh): every key and tensor as our reader sees it must
// equal the index the gguf Python package made of the same file
// (data/gguf/smollm2.index), and a dequantized embedding row must match the
// package's. Skipped with a warning when the model is absent, unless
// LLM_REQUIRE_MODELS=1 (CI sets it after fetching).
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "helpers.h"
#include "llm/gguf.h"

using namespace llm::gguf;

namespace {
std::string fnv(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, h);
  return buf;
}
std::string scalar(const Value& v) {
  char buf[64];
  switch (v.type) {
    case ValueType::F32: case ValueType::F64: std::snprintf(buf, sizeof(buf), "%.9g", v.f); return buf;
    case ValueType::BOOL: return v.u ? "1" : "0";
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return std::to_string(v.i);
    default: return std::to_string(v.u);
  }
}
std::string model_path() {
  const char* root = std::getenv("GGML_TEST_DATA");
  return std::string(root ? root : ".") + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
}
}  // namespace

TEST_CASE("SmolLM2 GGUF: our reader agrees with the gguf package on every key and tensor") {
  const std::string path = model_path();
  if (!std::filesystem::exists(path)) {
    const char* req = std::getenv("LLM_REQUIRE_MODELS");
    REQUIRE_MESSAGE(!(req && std::string(req) == "1"), "model missing: run scripts/fetch-models.sh");
    WARN_MESSAGE(false, "skipped: " << path << " is absent (scripts/fetch-models.sh fetches it)");
    return;
  }
  auto f = File::open(path);
  std::vector<std::string> got;
  for (const auto& [key, v] : f->metadata()) {
    if (v.type == ValueType::STRING) {
      got.push_back("kv " + key + " string " + std::to_string(v.s.size()) + " " + fnv(v.s));
    } else if (v.type == ValueType::ARRAY) {
      std::string blob;
      for (size_t k = 0; k < v.size(); k++) {
        const Value e = v.at(k);
        blob += (e.type == ValueType::STRING ? e.s : scalar(e)) + "\n";
      }
      got.push_back("kv " + key + " array " + std::to_string(uint32_t(v.elem)) + " " + std::to_string(v.size()) +
                    " " + fnv(blob));
    } else {
      got.push_back("kv " + key + " " + std::to_string(uint32_t(v.type)) + " " + scalar(v));
    }
  }
  for (const TensorInfo& t : f->tensors()) {
    std::ostringstream s;
    s << "tensor " << t.name << " " << uint32_t(t.type) << " ";
    for (int d = 0; d < t.n_dims; d++) s << (d ? "," : "") << t.ne[d];
    s << " " << f->data_offset() + t.offset << " " << t.nbytes << " ";
    char hex[3];
    for (int k = 0; k < 8; k++) {
      std::snprintf(hex, sizeof(hex), "%02x", static_cast<const unsigned char*>(t.data)[k]);
      s << hex;
    }
    got.push_back(s.str());
  }
  // The first embedding row, dequantized by ggml's reference (Q8_0 here).
  const TensorInfo* emb = f->find_tensor("token_embd.weight");
  REQUIRE(emb);
  std::vector<float> row(size_t(emb->ne[0]));
  ggml::traits(emb->type).to_float(emb->data, row.data(), emb->ne[0]);
  std::string r = "row0 token_embd.weight";
  for (int k = 0; k < 32; k++) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), " %.9g", double(row[size_t(k)]));
    r += buf;
  }
  got.push_back(r);

  std::istringstream want_text(std::string(reinterpret_cast<const char*>(th::read_file(th::data_path("gguf/smollm2.index")).data()),
                                           th::read_file(th::data_path("gguf/smollm2.index")).size()));
  std::vector<std::string> want;
  for (std::string line; std::getline(want_text, line);) want.push_back(line);
  REQUIRE(got.size() == want.size());
  for (size_t k = 0; k < got.size(); k++) REQUIRE(got[k] == want[k]);
  CHECK(f->get_string("general.architecture") == "llama");
  CHECK(f->tensors().size() == 272);
}
