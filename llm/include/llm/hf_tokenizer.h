#pragma once
// Reads Hugging Face tokenizer files into a Vocab (no Python):
//  - tokenizer.model: SentencePiece's ModelProto (protobuf), BPE models only;
//  - tokenizer.json: `tokenizers` byte-level BPE with a known pre-tokenizer;
//  - tokenizer_config.json: BOS/EOS/UNK/PAD tokens, add_bos/add_eos, chat template.
#include <string>
#include <vector>

#include "llm/vocab.h"

namespace llm {

struct HfTokenizer {
  Vocab vocab;
  std::string source;                 // which file the vocabulary came from
  std::vector<std::string> warnings;  // settings we read but do not reproduce
};

HfTokenizer load_sentencepiece_model(const std::string& path);
HfTokenizer load_tokenizer_json(const std::string& path);
// Applies tokenizer_config.json on top of a loaded vocabulary.
void apply_tokenizer_config(HfTokenizer& t, const std::string& path);
// A checkpoint directory: tokenizer.model when present, else tokenizer.json,
// then tokenizer_config.json when present. Throws llm::Error when neither exists.
HfTokenizer load_hf_tokenizer(const std::string& dir);

}  // namespace llm
