// libFuzzer target for the GGUF reader: any input must either parse (and then
// every tensor's bytes must be readable) or raise llm::Error. `make fuzz-gguf`.
#include <cstddef>
#include <cstdint>

#include "llm/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = llm::gguf::File::from_memory(data, size, "fuzz");
    unsigned sum = 0;
    for (const auto& t : f->tensors()) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (size_t i = 0; i < t.nbytes; i++) sum += p[i];
    }
    for (const auto& kv : f->metadata()) sum += unsigned(kv.first.size());
    return int(sum & 0);
  } catch (const llm::Error&) {
    return 0;
  }
}
