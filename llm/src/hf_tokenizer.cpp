#include "llm/hf_tokenizer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "llm/error.h"

namespace llm {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t MAX_TOKENIZER_FILE = size_t(1) << 30;

std::string read_all(const std::string& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) throw Error(path + ": cannot open (" + ec.message() + ")");
  if (size > MAX_TOKENIZER_FILE) throw Error(path + ": " + std::to_string(size) + " bytes is too large for a tokenizer file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  std::string s(size, '\0');
  f.read(s.data(), (std::streamsize)size);
  if ((size_t)f.gcount() != size) throw Error(path + ": read error");
  return s;
}

json parse_json(const std::string& path) {
  std::string text = read_all(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    // nlohmann's messages are one line and give the byte offset.
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// ---- protobuf wire format, just enough for sentencepiece's ModelProto -------

struct PbReader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& path;
  [[noreturn]] void fail(const char* what) const { throw Error(path + ": corrupt SentencePiece model (" + what + ")"); }
  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) fail("truncated varint");
      uint8_t b = *p++;
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint too long");
  }
  PbReader sub(uint64_t len) {
    if (len > uint64_t(end - p)) fail("field runs past the end");
    PbReader r{p, p + len, path};
    p += len;
    return r;
  }
  uint32_t fixed32() {
    if (end - p < 4) fail("truncated fixed32");
    uint32_t v;
    std::memcpy(&v, p, 4);
    p += 4;
    return v;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end - p < 8) fail("truncated fixed64"); p += 8; break;
      case 2: sub(varint()); break;
      case 5: fixed32(); break;
      default: fail("unknown wire type");
    }
  }
};

int32_t token_id_of(const Vocab& v, const std::string& text) {
  for (int32_t i = 0; i < v.size(); i++)
    if (v.tokens[i] == text) return i;
  return -1;
}

// tokenizer_config.json writes special tokens as a string or {"content": ...}.
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return {};
}

// Maps a tokenizer.json pre-tokenizer to the llama.cpp name our regex table knows.
std::string pre_name(const json& pre, const std::string& path) {
  auto is_byte_level = [](const json& j, bool use_regex) {
    return j.is_object() && j.value("type", "") == "ByteLevel" && j.value("use_regex", true) == use_regex &&
           !j.value("add_prefix_space", false);
  };
  if (is_byte_level(pre, true)) return "gpt-2";
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers")) {
    const json& seq = pre["pretokenizers"];
    if (seq.size() == 2 && seq[0].value("type", "") == "Digits" && seq[0].value("individual_digits", false) &&
        is_byte_level(seq[1], true))
      return "smollm";
    if (seq.size() == 2 && seq[0].value("type", "") == "Split" && is_byte_level(seq[1], false)) {
      const json& split = seq[0];
      std::string re = split.contains("pattern") && split["pattern"].is_object()
                           ? split["pattern"].value("Regex", std::string())
                           : std::string();
      if (re.find("\\p{N}{1,3}") != std::string::npos && re.find("(?i:'s|'t|'re|'ve|'m|'ll|'d)") != std::string::npos)
        return "llama-bpe";
    }
  }
  std::string dump = pre.dump();
  if (dump.size() > 160) dump = dump.substr(0, 160) + "...";
  throw Error(path + ": pre-tokenizer " + dump + " is not supported");
}

}  // namespace

HfTokenizer load_sentencepiece_model(const std::string& path) {
  const std::string data = read_all(path);
  HfTokenizer out;
  out.source = path;
  Vocab& v = out.vocab;
  v.model = Vocab::Model::SPM;
  int64_t model_type = 1, unk = 0, bos = 1, eos = 2, pad = -1;
  bool byte_fallback = false, dummy_prefix = true, remove_ws = true, escape_ws = true, ws_suffix = false;
  std::string norm_name;
  PbReader r{(const uint8_t*)data.data(), (const uint8_t*)data.data() + data.size(), path};
  while (!r.done()) {
    uint64_t key = r.varint();
    int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 2) {  // SentencePiece
      PbReader s = r.sub(r.varint());
      std::string piece;
      float score = 0;
      int64_t type = 1;
      while (!s.done()) {
        uint64_t k = s.varint();
        int f = int(k >> 3), w = int(k & 7);
        if (f == 1 && w == 2) {
          PbReader t = s.sub(s.varint());
          piece.assign((const char*)t.p, (size_t)(t.end - t.p));
        } else if (f == 2 && w == 5) {
          uint32_t bits = s.fixed32();
          std::memcpy(&score, &bits, 4);
        } else if (f == 3 && w == 0) {
          type = (int64_t)s.varint();
        } else {
          s.skip(w);
        }
      }
      if (type < 1 || type > 6) r.fail("unknown piece type");
      if ((int64_t)v.tokens.size() >= Vocab::kMaxTokens) r.fail("more pieces than a vocabulary may have");
      v.tokens.push_back(std::move(piece));
      v.scores.push_back(score);
      v.types.push_back((TokenType)type);
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      PbReader s = r.sub(r.varint());
      while (!s.done()) {
        uint64_t k = s.varint();
        int f = int(k >> 3), w = int(k & 7);
        if (w != 0) {
          s.skip(w);
          continue;
        }
        int64_t x = (int64_t)s.varint();
        switch (f) {
          case 3: model_type = x; break;
          case 24: ws_suffix = x != 0; break;
          case 35: byte_fallback = x != 0; break;
          case 40: unk = (int32_t)x; break;
          case 41: bos = (int32_t)x; break;
          case 42: eos = (int32_t)x; break;
          case 43: pad = (int32_t)x; break;
          default: break;
        }
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      PbReader s = r.sub(r.varint());
      while (!s.done()) {
        uint64_t k = s.varint();
        int f = int(k >> 3), w = int(k & 7);
        if (f == 1 && w == 2) {
          PbReader t = s.sub(s.varint());
          norm_name.assign((const char*)t.p, (size_t)(t.end - t.p));
        } else if (w == 0 && (f == 3 || f == 4 || f == 5)) {
          bool b = s.varint() != 0;
          (f == 3 ? dummy_prefix : f == 4 ? remove_ws : escape_ws) = b;
        } else {
          s.skip(w);
        }
      }
    } else {
      r.skip(wire);
    }
  }
  if (v.tokens.empty()) throw Error(path + ": SentencePiece model has no pieces");
  if (model_type != 2)
    throw Error(path + ": SentencePiece model type " + std::to_string(model_type) +
                (model_type == 1 ? " (unigram)" : "") + " is not supported; only BPE models (LLaMA) are");
  if (ws_suffix || !escape_ws) throw Error(path + ": SentencePiece whitespace settings other than LLaMA's are not supported");
  if (!norm_name.empty() && norm_name != "identity")
    out.warnings.push_back("normalizer '" + norm_name + "' is not applied (text needing normalization may tokenize differently)");
  if (remove_ws)
    out.warnings.push_back("remove_extra_whitespaces is not applied (runs of spaces tokenize as written)");
  (void)byte_fallback;  // the <0xXX> pieces themselves say whether bytes can fall back
  auto id = [&](int64_t x) { return x >= 0 && x < (int64_t)v.tokens.size() ? (int32_t)x : -1; };
  v.unk = id(unk);
  v.bos = id(bos);
  v.eos = id(eos);
  v.pad = id(pad);
  v.add_bos = true;
  v.add_space_prefix = dummy_prefix;
  v.validate(path);
  return out;
}

HfTokenizer load_tokenizer_json(const std::string& path) {
  json j = parse_json(path);
  HfTokenizer out;
  out.source = path;
  Vocab& v = out.vocab;
  v.model = Vocab::Model::BPE;
  try {
    const json& m = j.at("model");
    std::string type = m.value("type", "BPE");
    if (type != "BPE") throw Error(path + ": tokenizer model '" + type + "' is not supported (BPE only)");
    if (m.value("byte_fallback", false))
      throw Error(path + ": a SentencePiece-style tokenizer.json (byte_fallback) needs its tokenizer.model");
    if (m.value("ignore_merges", false)) out.warnings.push_back("ignore_merges is not applied");
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      out.warnings.push_back("normalizer " + j["normalizer"].value("type", std::string("?")) + " is not applied");
    v.pre = pre_name(j.at("pre_tokenizer"), path);
    const json& vocab = m.at("vocab");
    if (!vocab.is_object()) throw Error(path + ": model.vocab is not an object");
    const json added = j.value("added_tokens", json::array());
    if (!added.is_array()) throw Error(path + ": added_tokens is not an array");
    // Ids are checked before anything is sized from them: within the
    // vocabulary cap, and dense enough that the table is bounded by the
    // entries the file really has (holes are filled with placeholders).
    auto checked_id = [&](const json& x, const std::string& what) {
      // (A float converts by a cast, undefined outside int64's range.)
      if (!x.is_number_integer()) throw Error(path + ": the id of " + what + " is not an integer");
      int64_t id = x.is_number_unsigned() && x.get<uint64_t>() > (uint64_t)INT64_MAX ? -1 : x.get<int64_t>();
      if (id < 0 || id >= Vocab::kMaxTokens)
        throw Error(path + ": token id " + std::to_string(id) + " of " + what + " is outside 0.." +
                    std::to_string(Vocab::kMaxTokens - 1));
      return id;
    };
    int64_t n = 0;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) n = std::max<int64_t>(n, checked_id(it.value(), "'" + it.key() + "'") + 1);
    for (const auto& a : added) n = std::max<int64_t>(n, checked_id(a.at("id"), "an added token") + 1);
    const int64_t entries = (int64_t)vocab.size() + (int64_t)added.size();
    if (n <= 0) throw Error(path + ": the vocabulary is empty");
    if (n > 2 * entries + 1024)
      throw Error(path + ": token ids reach " + std::to_string(n - 1) + " but the file has only " +
                  std::to_string(entries) + " tokens (more holes than tokens)");
    v.tokens.assign((size_t)n, std::string());
    v.types.assign((size_t)n, TokenType::Unused);
    std::vector<bool> set((size_t)n, false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int64_t id = it.value().get<int64_t>();  // range-checked above
      if (set[id]) throw Error(path + ": token id " + std::to_string(id) + " is used twice");
      v.tokens[id] = it.key();
      v.types[id] = TokenType::Normal;
      set[id] = true;
    }
    for (const auto& a : added) {
      int64_t id = a.at("id").get<int64_t>();
      v.tokens[id] = a.at("content").get<std::string>();
      v.types[id] = a.value("special", false) ? TokenType::Control : TokenType::UserDefined;
      set[id] = true;
    }
    for (size_t i = 0; i < set.size(); i++)
      if (!set[i]) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
    for (const auto& mg : m.value("merges", json::array())) {
      if (mg.is_string()) v.merges.push_back(mg.get<std::string>());
      else if (mg.is_array() && mg.size() == 2) v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
      else throw Error(path + ": a merge is neither \"a b\" nor [a, b]");
    }
    if (m.contains("unk_token") && m["unk_token"].is_string()) v.unk = token_id_of(v, m["unk_token"].get<std::string>());
  } catch (const json::exception& e) {
    throw Error(path + ": unexpected tokenizer.json layout: " + e.what());
  }
  // GPT-2 convention when no tokenizer_config.json says otherwise.
  int32_t eot = token_id_of(v, "<|endoftext|>");
  v.bos = v.eos = eot;
  v.add_bos = false;
  v.add_space_prefix = false;
  v.validate(path);
  return out;
}

void apply_tokenizer_config(HfTokenizer& t, const std::string& path) {
  json j = parse_json(path);
  Vocab& v = t.vocab;
  auto special = [&](const char* key, int32_t& id) {
    if (!j.contains(key) || j[key].is_null()) return;
    std::string text = token_text(j[key]);
    if (text.empty()) return;
    int32_t found = token_id_of(v, text);
    if (found < 0) t.warnings.push_back(std::string(key) + " '" + text + "' is not in the vocabulary");
    else id = found;
  };
  special("bos_token", v.bos);
  special("eos_token", v.eos);
  special("unk_token", v.unk);
  special("pad_token", v.pad);
  if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) v.add_bos = j["add_bos_token"].get<bool>();
  if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) v.add_eos = j["add_eos_token"].get<bool>();
  if (j.contains("chat_template")) {
    const json& ct = j["chat_template"];
    if (ct.is_string()) {
      v.chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": ..., "template": ...}]: take "default"
      for (const auto& e : ct)
        if (e.value("name", "") == "default") v.chat_template = e.value("template", "");
    }
  }
  // Added tokens declared only here (older checkpoints) mark existing tokens special.
  if (j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
    for (auto it = j["added_tokens_decoder"].begin(); it != j["added_tokens_decoder"].end(); ++it) {
      long id = std::strtol(it.key().c_str(), nullptr, 10);
      if (id < 0 || id >= v.size() || !it.value().is_object()) continue;
      if (v.tokens[id] != it.value().value("content", "")) continue;
      if (v.types[id] == TokenType::Normal)
        v.types[id] = it.value().value("special", false) ? TokenType::Control : TokenType::UserDefined;
    }
  }
  v.validate(path);
}

HfTokenizer load_hf_tokenizer(const std::string& dir) {
  fs::path d(dir);
  HfTokenizer t;
  if (fs::exists(d / "tokenizer.model")) t = load_sentencepiece_model((d / "tokenizer.model").string());
  else if (fs::exists(d / "tokenizer.json")) t = load_tokenizer_json((d / "tokenizer.json").string());
  else throw Error(dir + ": no tokenizer.model or tokenizer.json");
  if (fs::exists(d / "tokenizer_config.json")) apply_tokenizer_config(t, (d / "tokenizer_config.json").string());
  return t;
}

}  // namespace llm
