#include "llm/vocab.h"

#include "llm/gguf.h"

namespace llm {

const char* model_name(Vocab::Model m) { return m == Vocab::Model::SPM ? "llama" : "gpt2"; }

void Vocab::validate(const std::string& where) const {
  const size_t n = tokens.size();
  if (n == 0) throw Error(where + ": the vocabulary is empty");
  if ((int64_t)n > kMaxTokens)
    throw Error(where + ": " + std::to_string(n) + " tokens is more than " + std::to_string(kMaxTokens));
  if (!scores.empty() && scores.size() != n)
    throw Error(where + ": " + std::to_string(scores.size()) + " scores for " + std::to_string(n) + " tokens");
  if (types.size() != n)
    throw Error(where + ": " + std::to_string(types.size()) + " token types for " + std::to_string(n) + " tokens");
  for (size_t i = 0; i < n; i++) {
    int t = (int)types[i];
    if (t < 0 || t > 6) throw Error(where + ": token " + std::to_string(i) + " has unknown type " + std::to_string(t));
  }
  auto check_id = [&](int32_t id, const char* what) {
    if (id < -1 || id >= (int32_t)n)
      throw Error(where + ": " + what + " token id " + std::to_string(id) + " is outside the vocabulary of " +
                  std::to_string(n));
  };
  check_id(bos, "BOS");
  check_id(eos, "EOS");
  check_id(unk, "unknown");
  check_id(pad, "padding");
  check_id(sep, "separator");
  if (model == Model::SPM && scores.empty()) throw Error(where + ": a SentencePiece vocabulary needs scores");
}

static int32_t opt_id(const gguf::File& f, const char* key) {
  const gguf::Value* v = f.find(key);
  if (!v) return -1;
  int64_t id = f.get_int(key);
  // llama.cpp writes -1 as 0xFFFFFFFF in a uint32 for "none".
  if (id == 0xFFFFFFFFll || id == -1) return -1;
  if (id < 0 || id > INT32_MAX) throw Error(f.path() + ": " + key + " = " + std::to_string(id) + " is not a token id");
  return (int32_t)id;
}

static bool opt_bool(const gguf::File& f, const char* key, bool def) {
  const gguf::Value* v = f.find(key);
  if (!v) return def;
  if (v->type != gguf::ValueType::BOOL) throw Error(f.path() + ": " + key + " is not a bool");
  return v->u != 0;
}

Vocab Vocab::from_gguf(const gguf::File& f) {
  Vocab v;
  const std::string& m = f.get_string("tokenizer.ggml.model");
  if (m == "llama") v.model = Model::SPM;
  else if (m == "gpt2") v.model = Model::BPE;
  else throw Error(f.path() + ": tokenizer model '" + m + "' is not supported (llama or gpt2)");
  if (const gguf::Value* p = f.find("tokenizer.ggml.pre")) {
    if (p->type != gguf::ValueType::STRING) throw Error(f.path() + ": tokenizer.ggml.pre is not a string");
    v.pre = p->s;
  }
  const gguf::Value& toks = f.get_array("tokenizer.ggml.tokens", gguf::ValueType::STRING);
  v.tokens = toks.strs;
  if (f.find("tokenizer.ggml.scores")) {
    const gguf::Value& sc = f.get_array("tokenizer.ggml.scores", gguf::ValueType::F32);
    for (size_t k = 0; k < sc.size(); k++) v.scores.push_back((float)sc.float_at(k));
  }
  if (f.find("tokenizer.ggml.token_type")) {
    const gguf::Value& tt = *f.find("tokenizer.ggml.token_type");
    if (tt.type != gguf::ValueType::ARRAY) throw Error(f.path() + ": tokenizer.ggml.token_type is not an array");
    // llama.cpp writes I32; accept any integer width.
    const gguf::ValueType e = tt.elem;
    if (e == gguf::ValueType::STRING || e == gguf::ValueType::F32 || e == gguf::ValueType::F64 ||
        e == gguf::ValueType::ARRAY || e == gguf::ValueType::BOOL)
      throw Error(f.path() + ": tokenizer.ggml.token_type is not an array of integers");
    for (size_t k = 0; k < tt.size(); k++) {
      const int64_t x = tt.int_at(k);
      if (x < 0 || x > 6) throw Error(f.path() + ": tokenizer.ggml.token_type holds a value that is not a token type");
      v.types.push_back((TokenType)x);
    }
  } else {
    v.types.assign(v.tokens.size(), TokenType::Normal);
  }
  if (f.find("tokenizer.ggml.merges")) {
    const gguf::Value& mg = f.get_array("tokenizer.ggml.merges", gguf::ValueType::STRING);
    v.merges = mg.strs;
  }
  v.bos = opt_id(f, "tokenizer.ggml.bos_token_id");
  v.eos = opt_id(f, "tokenizer.ggml.eos_token_id");
  v.unk = opt_id(f, "tokenizer.ggml.unknown_token_id");
  v.pad = opt_id(f, "tokenizer.ggml.padding_token_id");
  v.sep = opt_id(f, "tokenizer.ggml.seperator_token_id");  // sic, llama.cpp's spelling
  const bool spm = v.model == Model::SPM;
  v.add_bos = opt_bool(f, "tokenizer.ggml.add_bos_token", spm);
  v.add_eos = opt_bool(f, "tokenizer.ggml.add_eos_token", false);
  v.add_space_prefix = opt_bool(f, "tokenizer.ggml.add_space_prefix", spm);
  if (const gguf::Value* t = f.find("tokenizer.chat_template"); t && t->type == gguf::ValueType::STRING)
    v.chat_template = t->s;
  v.validate(f.path());
  return v;
}

void Vocab::write_gguf(gguf::Writer& w) const {
  using gguf::Value;
  using gguf::ValueType;
  w.set("tokenizer.ggml.model", Value::make_string(model_name(model)));
  if (model == Model::BPE) w.set("tokenizer.ggml.pre", Value::make_string(pre));
  std::vector<Value> a;
  a.reserve(tokens.size());
  for (const auto& t : tokens) a.push_back(Value::make_string(t));
  w.set("tokenizer.ggml.tokens", Value::make_array(ValueType::STRING, std::move(a)));
  if (!scores.empty()) {
    a.clear();
    for (float s : scores) a.push_back(Value::make_float(ValueType::F32, s));
    w.set("tokenizer.ggml.scores", Value::make_array(ValueType::F32, std::move(a)));
  }
  a.clear();
  for (TokenType t : types) a.push_back(Value::make_int(ValueType::I32, (int32_t)t));
  w.set("tokenizer.ggml.token_type", Value::make_array(ValueType::I32, std::move(a)));
  if (!merges.empty()) {
    a.clear();
    for (const auto& m : merges) a.push_back(Value::make_string(m));
    w.set("tokenizer.ggml.merges", Value::make_array(ValueType::STRING, std::move(a)));
  }
  auto id = [&](const char* key, int32_t v) {
    if (v >= 0) w.set(key, Value::make_uint(ValueType::U32, (uint32_t)v));
  };
  id("tokenizer.ggml.bos_token_id", bos);
  id("tokenizer.ggml.eos_token_id", eos);
  id("tokenizer.ggml.unknown_token_id", unk);
  id("tokenizer.ggml.padding_token_id", pad);
  id("tokenizer.ggml.seperator_token_id", sep);
  w.set("tokenizer.ggml.add_bos_token", Value::make_bool(add_bos));
  w.set("tokenizer.ggml.add_eos_token", Value::make_bool(add_eos));
  w.set("tokenizer.ggml.add_space_prefix", Value::make_bool(add_space_prefix));
  if (!chat_template.empty()) w.set("tokenizer.chat_template", Value::make_string(chat_template));
}

}  // namespace llm
