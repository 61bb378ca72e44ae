#define PCRE2_CODE_UNIT_WIDTH 8
#include "pretokenize.h"

#include <pcre2.h>

#include <map>
#include <mutex>

#include "llm/error.h"

namespace llm {

namespace {
// GPT-2's pattern as Hugging Face's ByteLevel pre-tokenizer spells it.
const char* GPT2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// LLaMA-3's pattern (tokenizer.json Split pre-tokenizer).
const char* LLAMA3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Digits(individual_digits=true) ahead of the byte-level split.
const char* DIGIT = R"(\p{N})";

struct Entry {
  const char* name;
  std::vector<const char*> patterns;
};
const std::vector<Entry>& table() {
  static const std::vector<Entry> t = {
      {"default", {GPT2}},   {"gpt-2", {GPT2}},       {"gpt2", {GPT2}},
      {"smollm", {DIGIT, GPT2}}, {"starcoder", {DIGIT, GPT2}}, {"refact", {DIGIT, GPT2}},
      {"llama-bpe", {LLAMA3}}, {"llama3", {LLAMA3}},
  };
  return t;
}
}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::string& name) {
  const Entry* e = nullptr;
  for (const auto& t : table())
    if (name == t.name) e = &t;
  if (!e) {
    std::string known;
    for (const auto& t : table()) known += std::string(known.empty() ? "" : ", ") + t.name;
    throw Error("pre-tokenizer '" + name + "' is not supported (known: " + known + ")");
  }
  // Compiled once per process and shared: compiling and JIT-compiling the
  // Unicode patterns costs about a millisecond, more than tokenizing a
  // prompt, and a compiled pattern is safe to match from many threads.
  static std::mutex mu;
  static std::map<const char*, std::shared_ptr<const Regex>> compiled;
  std::lock_guard<std::mutex> lock(mu);
  for (const char* p : e->patterns) {
    auto& slot = compiled[p];
    if (!slot) {
      int err = 0;
      PCRE2_SIZE off = 0;
      auto r = std::make_shared<Regex>();
      r->code = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                              &err, &off, nullptr);
      if (!r->code) {
        compiled.erase(p);
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error(std::string("pre-tokenizer regex does not compile: ") + (const char*)msg);
      }
      pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter
      slot = std::move(r);
    }
    regexes_.push_back(slot);
  }
}

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::known_names() {
  std::vector<std::string> n;
  for (const auto& t : table()) n.push_back(t.name);
  return n;
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (!text.empty()) pieces.push_back(text);
  for (const auto& re : regexes_) {
    std::vector<std::string_view> out;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re->code, nullptr);
    for (std::string_view p : pieces) {
      size_t off = 0;
      while (off < p.size()) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)p.data(), p.size(), off, 0, md, nullptr);
        if (rc < 0) break;  // no further match (or invalid UTF at the end): the rest is one gap
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e == s) {  // none of our patterns matches empty; guard against a loop anyway
          break;
        }
        if (s > off) out.push_back(p.substr(off, s - off));
        out.push_back(p.substr(s, e - s));
        off = e;
      }
      if (off < p.size()) out.push_back(p.substr(off));
    }
    pcre2_match_data_free(md);
    pieces = std::move(out);
  }
  return pieces;
}

}  // namespace llm
