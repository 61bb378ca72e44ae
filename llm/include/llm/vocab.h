#pragma once
// A model's vocabulary as GGUF stores it (llama.cpp's `tokenizer.ggml.*` keys):
// token texts, scores, types, BPE merges, special ids and the add-BOS/EOS and
// dummy-prefix rules. Tokenizer (tokenizer.h) turns text into ids with it.
#include <cstdint>
#include <string>
#include <vector>

namespace llm {

namespace gguf {
class File;
class Writer;
}  // namespace gguf

// Values of tokenizer.ggml.token_type (SentencePiece's piece types + 1).
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct Vocab {
  // The most tokens a vocabulary may have: 8x the largest in use (Gemma's
  // 262k), so a file claiming more is refused before anything is sized from
  // it (each token costs ~100 bytes in the tokenizer's tables).
  static constexpr int64_t kMaxTokens = int64_t(1) << 21;
  enum class Model { SPM, BPE };  // "llama" (SentencePiece) and "gpt2" (byte-level BPE)
  Model model = Model::BPE;
  std::string pre = "default";  // BPE pre-tokenizer name (tokenizer.ggml.pre)
  std::vector<std::string> tokens;
  std::vector<float> scores;      // SPM merge priorities; may be empty for BPE
  std::vector<TokenType> types;
  std::vector<std::string> merges;  // BPE, "left right", best first
  int32_t bos = -1, eos = -1, unk = -1, pad = -1, sep = -1;
  // Defaults when the file has no key: SPM adds BOS and a dummy prefix space,
  // BPE adds neither (llama.cpp's rules).
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::string chat_template;

  int32_t size() const { return (int32_t)tokens.size(); }
  // Throws llm::Error on inconsistent sizes or out-of-range special ids.
  void validate(const std::string& where) const;
  // Reads the tokenizer keys of a model or vocab-only file.
  static Vocab from_gguf(const gguf::File& f);
  void write_gguf(gguf::Writer& w) const;
};

const char* model_name(Vocab::Model m);

}  // namespace llm
