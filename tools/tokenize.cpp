// tokenize: print the token ids of a prompt or a file's whole content with a
// GGUF model's (or vocab-only file's) tokenizer.
#include <cstdio>
#include <cxxopts.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common.h"
#include "llm/gguf.h"
#include "llm/tokenizer.h"

namespace {

// Shows control characters and invalid UTF-8 escaped so one token stays on one line.
std::string printable(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else if (c == '\\') o += "\\\\";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      o += b;
    } else if (c >= 0x80) {
      size_t n = llm::utf8_len(c);
      bool ok = n > 1 && i + n <= s.size();
      for (size_t k = 1; ok && k < n; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
      if (ok) {
        o.append(s, i, n);
        i += n - 1;
      } else {
        char b[8];
        std::snprintf(b, sizeof b, "\\x%02x", c);
        o += b;
      }
    } else {
      o += (char)c;
    }
  }
  return o;
}

}  // namespace

static int run(int argc, char** argv) {
  cxxopts::Options opts("tokenize", "Print the token ids of a text with a GGUF file's tokenizer.");
  opts.add_options()
      ("m,model", "GGUF model or vocab-only file", cxxopts::value<std::string>())
      ("f,file", "tokenize this file's whole content ('-': standard input)", cxxopts::value<std::string>())
      ("p,prompt", "tokenize this text", cxxopts::value<std::string>())
      ("no-bos", "do not add BOS/EOS even when the vocabulary asks for them")
      ("parse-special", "match special tokens written in the text (e.g. <|im_start|>)")
      ("show", "print one token per line: id, then its text");
  tool::add_standard_options(opts);
  {
    auto r = opts.parse(argc, argv);
    if (tool::answer_standard_options(r, opts, "tokenize", "\nExactly one of -f or -p is required.\n")) return 0;
    if (!r.count("model")) throw llm::Error("-m MODEL.gguf is required (see --help)");
    if (r.count("file") + r.count("prompt") != 1) throw llm::Error("give exactly one of -f FILE or -p TEXT");
    std::string text = r.count("file") ? tool::read_text(r["file"].as<std::string>()) : r["prompt"].as<std::string>();
    auto file = llm::gguf::File::open(r["model"].as<std::string>());
    llm::Tokenizer tok(llm::Vocab::from_gguf(*file));
    auto ids = tok.encode(text, !r.count("no-bos"), r.count("parse-special") > 0);
    if (r.count("show")) {
      for (int32_t id : ids) std::printf("%6d  '%s'\n", id, printable(tok.piece(id)).c_str());
    } else {
      std::string line;
      for (size_t i = 0; i < ids.size(); i++) line += (i ? " " : "") + std::to_string(ids[i]);
      std::printf("%s\n", line.c_str());
    }
    return 0;
  }
}

int main(int argc, char** argv) { return tool::guarded_main("tokenize", run, argc, argv); }
