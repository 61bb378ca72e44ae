#pragma once
// Byte-level BPE pre-tokenizers: a named list of Unicode regexes applied in
// sequence (each splits the pieces the previous one made), as llama.cpp's
// tokenizer.ggml.pre names them. Matches and the text between them are both
// kept as pieces, as Hugging Face's Split(behavior=Isolated) does.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace llm {

class PreTokenizer {
 public:
  // Throws llm::Error for a name we have no regexes for.
  explicit PreTokenizer(const std::string& name);
  ~PreTokenizer();
  std::vector<std::string_view> split(std::string_view text) const;
  static std::vector<std::string> known_names();

 private:
  struct Regex;
  std::vector<std::shared_ptr<const Regex>> regexes_;
};

}  // namespace llm
