// libFuzzer target for the whole conversion path: the input is a checkpoint
// directory (config.json, weights, tokenizer files), each file a section
// [kind u8][length u32 LE][bytes]; it is written out, converted to GGUF, and
// when that succeeds the GGUF is loaded, tokenizes and evaluates two tokens.
// Any input must convert or be refused with llm::Error.
// `make fuzz-convert`; seeds: scripts/make_fuzz_seeds.py (a tiny LLaMA
// checkpoint in each weight format and tokenizer kind).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "llm/convert.h"
#include "llm/gguf.h"
#include "llm/model.h"
#include "llm/session.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* names[] = {"config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                                "tokenizer.model", "tokenizer_config.json"};
  static const fs::path dir = [] {
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    return base / ("fuzz_convert_" + std::to_string(::getpid()));
  }();
  if (size < 1) return 0;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const ggml::Type outtypes[] = {ggml::Type::F32, ggml::Type::F16, ggml::Type::Q8_0};
  const ggml::Type outtype = outtypes[data[0] % 3];
  for (size_t p = 1; p + 5 <= size;) {
    const uint8_t kind = data[p] % 6;
    uint32_t len;
    std::memcpy(&len, data + p + 1, 4);
    p += 5;
    len = (uint32_t)std::min<size_t>(len, size - p);
    std::ofstream(dir / names[kind], std::ios::binary | std::ios::app).write((const char*)data + p, len);
    p += len;
  }
  const std::string out = (dir / "out.gguf").string();
  try {
    llm::ConvertOptions o;
    o.model_dir = dir.string();
    o.out_path = out;
    o.outtype = outtype;
    llm::convert_hf_checkpoint(o);
    llm::LoadOptions lo;
    lo.copy_weights = false;
    auto m = llm::Model::load(out, lo);
    auto ids = m->tokenizer->encode("fuzz 123 \xe2\x98\x83", true, true);
    llm::SessionParams sp;
    sp.n_ctx = 16;
    sp.n_threads = 1;
    llm::Session s(*m, sp);
    if (ids.size() > 2) ids.resize(2);
    if (!ids.empty()) s.eval(ids);
  } catch (const llm::Error&) {
  }
  return 0;
}
