// libFuzzer target for the checkpoint and tokenizer-file readers. The first
// byte picks the reader (safetensors, PyTorch zip, tokenizer.model,
// tokenizer.json); the rest is the file. Any input must be read (and every
// tensor gathered inside its file) or refused with llm::Error.
// `make fuzz-checkpoint`; seeds come from tests/data/hf and tests/data/tokenizer.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "llm/checkpoint.h"
#include "llm/error.h"
#include "llm/hf_tokenizer.h"
#include "llm/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const std::string path = "/tmp/fuzz_checkpoint_" + std::to_string(::getpid());
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data + 1), std::streamsize(size - 1));
  }
  try {
    switch (data[0] % 4) {
      case 0:
      case 1: {
        auto ck = data[0] % 4 == 0 ? llm::Checkpoint::open_safetensors({path}) : llm::Checkpoint::open_pytorch({path});
        double sum = 0;
        // Every tensor, however large it claims to be: a view may not hold
        // more elements than its storage, so this is bounded by the input.
        for (const auto& t : ck->tensors()) {
          try {
            for (float v : t.to_f32()) sum += v;
          } catch (const llm::Error&) {  // integer tensors
          }
        }
        return int(sum * 0);
      }
      case 2: {
        auto t = llm::load_sentencepiece_model(path);
        llm::Tokenizer tok(t.vocab);
        return int(tok.encode("fuzz the tokenizer 123 ☃", true, true).size() * 0);
      }
      default: {
        auto t = llm::load_tokenizer_json(path);
        llm::Tokenizer tok(t.vocab);
        return int(tok.encode("fuzz the tokenizer 123 ☃", true, true).size() * 0);
      }
    }
  } catch (const llm::Error&) {
    return 0;
  }
}
