// Tokenizers against the reference libraries' ids (sentencepiece, tokenizers),
// committed by scripts/gen_tokenizer_fixtures.py.
#include <doctest/doctest.h>

#include "helpers.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llm/gguf.h"
#include "llm/hf_tokenizer.h"
#include "llm/tokenizer.h"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using th::data_dir;
using th::temp_dir;

json load_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "missing fixture " << path);
  return json::parse(f);
}

std::vector<std::string> hard_strings() { return load_json(data_dir() + "/tokenizer/hard_strings.json"); }

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = llm::utf8_len((uint8_t)s[i]);
    if (n == 1 && (uint8_t)s[i] >= 0x80) return false;
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; k++)
      if (((uint8_t)s[i + k] & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

// Checks ids against the reference, the round trip, and streaming decode.
void check_tokenizer(const llm::Tokenizer& tok, const json& expected, bool round_trip_all) {
  auto strings = hard_strings();
  const json& raw = expected["raw"];
  REQUIRE(raw.size() == strings.size());
  for (size_t i = 0; i < strings.size(); i++) {
    const std::string& s = strings[i];
    CAPTURE(s);
    auto ids = tok.encode(s, false, false);
    std::vector<int32_t> want = raw[i];
    CHECK_MESSAGE(ids == want, "got " << show(ids) << " want " << show(want));
    if (expected.contains("special")) {
      std::vector<int32_t> want_sp = expected["special"][i];
      auto sp = tok.encode(s, false, true);
      CHECK_MESSAGE(sp == want_sp, "parse_special: got " << show(sp) << " want " << show(want_sp));
    }
    bool has_unk = tok.vocab().unk >= 0 && std::find(ids.begin(), ids.end(), tok.vocab().unk) != ids.end();
    if (round_trip_all || !has_unk) CHECK(tok.decode(ids) == s);
    // Streaming: each chunk is whole UTF-8 characters and they add up to the text.
    llm::StreamDecoder d(tok);
    std::string streamed;
    for (int32_t id : ids) {
      std::string chunk = d.push(id);
      CHECK(valid_utf8(chunk));
      streamed += chunk;
    }
    streamed += d.flush();
    CHECK(streamed == tok.decode(ids));
  }
}

// The vocabulary survives a trip through GGUF metadata unchanged.
void check_gguf_round_trip(const llm::Vocab& v) {
  llm::gguf::Writer w;
  w.set("general.architecture", llm::gguf::Value::make_string("llama"));
  v.write_gguf(w);
  fs::path p = fs::temp_directory_path() / ("vocab_rt_" + std::to_string(::getpid()) + ".gguf");
  w.write(p.string());
  auto f = llm::gguf::File::open(p.string());
  CHECK(f->tensors().empty());
  llm::Vocab r = llm::Vocab::from_gguf(*f);
  fs::remove(p);
  CHECK(r.model == v.model);
  CHECK(r.pre == v.pre);
  CHECK(r.tokens == v.tokens);
  CHECK(r.scores == v.scores);
  CHECK(r.types == v.types);
  CHECK(r.merges == v.merges);
  CHECK(r.bos == v.bos);
  CHECK(r.eos == v.eos);
  CHECK(r.unk == v.unk);
  CHECK(r.add_bos == v.add_bos);
  CHECK(r.add_space_prefix == v.add_space_prefix);
  CHECK(r.chat_template == v.chat_template);
}

}  // namespace

TEST_CASE("sentencepiece BPE with byte fallback matches sentencepiece") {
  auto t = llm::load_sentencepiece_model(data_dir() + "/tokenizer/spm_bytes/tokenizer.model");
  CHECK(t.warnings.empty());
  llm::Tokenizer tok(t.vocab);
  check_tokenizer(tok, load_json(data_dir() + "/tokenizer/spm_bytes/expected.json"), true);
  // BOS is added by default for SentencePiece vocabularies.
  auto ids = tok.encode("Hello", true, false);
  REQUIRE(!ids.empty());
  CHECK(ids[0] == tok.vocab().bos);
  CHECK(tok.decode(ids, false) == "Hello");
  check_gguf_round_trip(t.vocab);
}

TEST_CASE("sentencepiece BPE without byte fallback gives <unk> like sentencepiece") {
  auto t = llm::load_sentencepiece_model(data_dir() + "/tokenizer/spm_unk/tokenizer.model");
  llm::Tokenizer tok(t.vocab);
  check_tokenizer(tok, load_json(data_dir() + "/tokenizer/spm_unk/expected.json"), false);
}

TEST_CASE("byte-level BPE (GPT-2 pre-tokenizer) matches tokenizers") {
  auto t = llm::load_tokenizer_json(data_dir() + "/tokenizer/bpe_gpt2/tokenizer.json");
  CHECK(t.vocab.pre == "gpt-2");
  llm::Tokenizer tok(t.vocab);
  check_tokenizer(tok, load_json(data_dir() + "/tokenizer/bpe_gpt2/expected.json"), true);
  check_gguf_round_trip(t.vocab);
}

TEST_CASE("byte-level BPE (digits split first) matches tokenizers") {
  auto t = llm::load_tokenizer_json(data_dir() + "/tokenizer/bpe_digits/tokenizer.json");
  CHECK(t.vocab.pre == "smollm");
  llm::Tokenizer tok(t.vocab);
  check_tokenizer(tok, load_json(data_dir() + "/tokenizer/bpe_digits/expected.json"), true);
}

TEST_CASE("streaming decode holds back a split UTF-8 character") {
  auto t = llm::load_tokenizer_json(data_dir() + "/tokenizer/bpe_gpt2/tokenizer.json");
  llm::Tokenizer tok(t.vocab);
  // A rare CJK character is several byte tokens in this small vocabulary.
  auto ids = tok.encode("語", false, false);
  REQUIRE(ids.size() >= 2);
  llm::StreamDecoder d(tok);
  for (size_t i = 0; i + 1 < ids.size(); i++) CHECK(d.push(ids[i]).empty());
  CHECK(d.push(ids.back()) == "語");
  CHECK(d.flush().empty());
}

TEST_CASE("bad tokenizer files are refused with one-line errors") {
  fs::path dir = fs::temp_directory_path() / ("tok_bad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir / name, std::ios::binary) << content;
    return (dir / name).string();
  };
  auto expect_error = [](auto fn, const std::string& needle) {
    try {
      fn();
      FAIL("no error");
    } catch (const llm::Error& e) {
      std::string m = e.what();
      CHECK_MESSAGE(m.find(needle) != std::string::npos, m);
      CHECK(m.find('\n') == std::string::npos);
    }
  };
  expect_error([&] { llm::load_tokenizer_json(write("a.json", "{not json")); }, "invalid JSON");
  expect_error([&] { llm::load_tokenizer_json(write("b.json", R"({"model":{"type":"WordPiece","vocab":{}}})")); },
               "WordPiece");
  expect_error([&] { llm::load_tokenizer_json(write("c.json", R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Whitespace"}})")); },
               "pre-tokenizer");
  // A truncated and a bit-flipped SentencePiece model.
  std::ifstream in(data_dir() + "/tokenizer/spm_bytes/tokenizer.model", std::ios::binary);
  std::string model((std::istreambuf_iterator<char>(in)), {});
  expect_error([&] { llm::load_sentencepiece_model(write("t.model", model.substr(0, model.size() / 2 + 3))); },
               "corrupt SentencePiece");
  expect_error([&] { llm::load_sentencepiece_model(write("missing.model", "") + "x"); }, "cannot open");
  std::string flipped = model;
  flipped[1] = (char)0xFF;  // a piece's length varint now runs off the end
  for (int i = 2; i < 11; i++) flipped[i] = (char)0xFF;
  expect_error([&] { llm::load_sentencepiece_model(write("f.model", flipped)); }, "corrupt SentencePiece");
  fs::remove_all(dir);
}

TEST_CASE("SmolLM2's vocabulary matches tokenizers built from the same GGUF") {
  const std::string path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string root = data_dir() + "/../../" + path;
  if (!fs::exists(root)) {
    if (std::getenv("LLM_REQUIRE_MODELS")) FAIL("missing " << path << " (scripts/fetch-models.sh)");
    MESSAGE("skipped: " << path << " not fetched");
    return;
  }
  auto f = llm::gguf::File::open(root);
  llm::Vocab v = llm::Vocab::from_gguf(*f);
  CHECK(v.model == llm::Vocab::Model::BPE);
  CHECK(v.pre == "smollm");
  llm::Tokenizer tok(v);
  check_tokenizer(tok, load_json(data_dir() + "/tokenizer/smollm2.json"), true);
  CHECK(tok.encode("hi", true, false).size() == 1);  // add_bos_token is false in this file
}

TEST_CASE("byte-level BPE (LLaMA-3 split regex) matches tokenizers") {
  auto t = llm::load_tokenizer_json(data_dir() + "/tokenizer/bpe_llama3/tokenizer.json");
  CHECK(t.vocab.pre == "llama-bpe");
  llm::Tokenizer tok(t.vocab);
  check_tokenizer(tok, load_json(data_dir() + "/tokenizer/bpe_llama3/expected.json"), true);
}

TEST_CASE("SmolLM2: bytes that are not UTF-8 become byte tokens, or U+FFFD where the vocabulary has none") {
  const std::string root = data_dir() + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(root)) {
    if (std::getenv("LLM_REQUIRE_MODELS")) FAIL("missing " << root << " (scripts/fetch-models.sh)");
    MESSAGE("skipped: SmolLM2 not fetched");
    return;
  }
  auto f = llm::gguf::File::open(root);
  llm::Tokenizer tok(llm::Vocab::from_gguf(*f));
  const int32_t unk = tok.vocab().unk, eos = tok.vocab().eos;
  REQUIRE(unk >= 0);
  const auto fffd = tok.encode("\xEF\xBF\xBD", false, false);
  int n_lossless = 0, n_replaced = 0;
  for (int b = 0x80; b < 0x100; b++) {
    // An isolated lead or continuation byte between words: invalid UTF-8.
    const std::string s = std::string("see ") + (char)b + " here";
    CAPTURE(b);
    auto ids = tok.encode(s, false, false);
    CHECK(std::find(ids.begin(), ids.end(), unk) == ids.end());
    CHECK(std::find(ids.begin(), ids.end(), eos) == ids.end());
    if (tok.decode(ids) == s) {
      n_lossless++;  // the byte had a token of its own
    } else {
      // What Python's errors="replace" decoding would hand to tokenizers.
      CHECK(ids == tok.encode("see \xEF\xBF\xBD here", false, false));
      n_replaced++;
    }
  }
  // SmolLM2's vocabulary has tokens for all but a few bytes (0xC0, 0xC1, 0xF1, 0xF2, 0xF5-0xFF).
  CHECK(n_lossless >= 100);
  CHECK(n_replaced <= 16);
  // Random invalid byte strings round-trip wherever every byte has a token.
  std::mt19937 rng(5);
  for (int it = 0; it < 200; it++) {
    std::string s;
    for (int k = 0; k < 12; k++) s += (char)(0x80 + rng() % 0x40);  // continuation bytes only: invalid
    CHECK(tok.decode(tok.encode(s, false, false)) == s);
  }
  CHECK(fffd.size() >= 1);
}
