// libFuzzer target for the tokenizers on mutated vocabularies: the input is
// a vocabulary and a text, [model u8][pre-tokenizer u8] then token entries
// "type text" separated by '\n' up to a NUL, then merges "a b" separated by
// '\n' up to a NUL, then the text. A vocabulary the Tokenizer accepts must
// encode any text (special tokens parsed and not) and decode the ids, or
// refuse with llm::Error.
// `make fuzz-tokenize`; seeds: scripts/make_fuzz_seeds.py.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "llm/error.h"
#include "llm/tokenizer.h"
#include "../../llm/src/pretokenize.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const std::vector<std::string> pres = llm::PreTokenizer::known_names();
  std::string_view in((const char*)data + 2, size - 2);
  llm::Vocab v;
  v.model = data[0] % 2 ? llm::Vocab::Model::SPM : llm::Vocab::Model::BPE;
  v.pre = pres[data[1] % pres.size()];
  auto section = [&] {
    size_t z = in.find('\0');
    std::string_view s = in.substr(0, z);
    in = z == std::string_view::npos ? std::string_view() : in.substr(z + 1);
    return s;
  };
  auto lines = [](std::string_view s, auto&& f) {
    while (!s.empty()) {
      size_t nl = s.find('\n');
      f(s.substr(0, nl));
      if (nl == std::string_view::npos) break;
      s = s.substr(nl + 1);
    }
  };
  lines(section(), [&](std::string_view e) {
    if (e.empty() || v.tokens.size() >= 4096) return;
    v.types.push_back((llm::TokenType)(1 + (uint8_t)e[0] % 6));
    v.tokens.emplace_back(e.substr(1));
    v.scores.push_back(-(float)v.tokens.size());
  });
  lines(section(), [&](std::string_view m) {
    if (v.merges.size() < 8192) v.merges.emplace_back(m);
  });
  if (v.model == llm::Vocab::Model::BPE) v.scores.clear();
  if (!v.tokens.empty()) v.unk = 0;
  std::string_view text = in;
  try {
    llm::Tokenizer tok(v);
    for (bool special : {false, true}) {
      auto ids = tok.encode(text, true, special);
      for (int32_t id : ids)
        if (id < 0 || id >= v.size()) __builtin_trap();  // an id outside the vocabulary
      (void)tok.decode(ids, special);
    }
  } catch (const llm::Error&) {
  }
  return 0;
}
