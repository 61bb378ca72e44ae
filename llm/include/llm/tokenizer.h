#pragma once
// Text <-> token ids for the two tokenizer families GGUF files carry:
//  - SentencePiece BPE (LLaMA): dummy prefix "▁", spaces as "▁", highest-score
//    pair merged first, byte fallback to <0xXX> pieces, else the unknown id.
//  - Byte-level BPE (GPT-2, GPT-J, GPT-NeoX, SmolLM2): a Unicode regex
//    pre-tokenizer (PCRE2), bytes mapped to printable characters, merges
//    applied by rank.
// Control tokens are matched in the text only when parse_special is set;
// user-defined tokens always are (as sentencepiece and llama.cpp do).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "llm/vocab.h"

namespace llm {

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab);  // throws llm::Error on an unknown pre-tokenizer
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  const Vocab& vocab() const;
  // add_special: BOS/EOS as the vocabulary asks (add_bos / add_eos).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // The bytes of one token. Control tokens give their text when special is
  // set, nothing otherwise. A piece may end inside a UTF-8 character.
  std::string piece(int32_t id, bool special = true) const;
  // Whole-sequence decode: drops the dummy prefix space that encode added.
  std::string decode(const std::vector<int32_t>& ids, bool special = true) const;
  int32_t find(std::string_view token_text) const;  // -1 when absent

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: returns only whole UTF-8 characters, holding back a
// character whose bytes span several tokens until it is complete.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool special = true) : tok_(tok), special_(special) {}
  std::string push(int32_t id);
  std::string flush();  // whatever is pending, incomplete or not

 private:
  const Tokenizer& tok_;
  bool special_;
  bool first_ = true;
  std::string pending_;
};

// Byte-level BPE's byte <-> printable character map (GPT-2's bytes_to_unicode).
uint32_t byte_to_codepoint(uint8_t b);
int codepoint_to_byte(uint32_t cp);  // -1 when cp is not in the map
// UTF-8 helpers: length of the sequence a lead byte starts (1 for a stray byte).
size_t utf8_len(uint8_t lead);
std::string utf8_encode(uint32_t cp);
// Length of the longest prefix of s that ends on a UTF-8 character boundary.
size_t utf8_complete_prefix(std::string_view s);
// s with every byte that is not part of a well-formed character (Unicode's
// table 3-7) replaced by U+FFFD: text a UI toolkit accepts.
std::string utf8_sanitize(std::string_view s);

}  // namespace llm
