#include "llm/arch.h"

#include "llm/error.h"

namespace llm {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::LLAMA: return "llama";
    case Arch::GPTNEOX: return "gptneox";
    case Arch::GPTJ: return "gptj";
  }
  return "?";
}

Arch arch_from_name(const std::string& s) {
  for (Arch a : {Arch::LLAMA, Arch::GPTNEOX, Arch::GPTJ})
    if (s == arch_name(a)) return a;
  throw Error("architecture '" + s + "' is not supported (llama, gptneox, gptj)");
}

std::string key(Arch a, const char* suffix) { return std::string(arch_name(a)) + "." + suffix; }

std::string tn::blk(int layer, const char* name) { return "blk." + std::to_string(layer) + "." + name; }

}  // namespace llm
