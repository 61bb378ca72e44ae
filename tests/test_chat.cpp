// Chat prompts against Jinja2's rendering of the same templates (what
// transformers' apply_chat_template runs), committed by
// scripts/gen_chat_fixtures.py: the default system turn, then the turns.
#include <doctest/doctest.h>

#include "helpers.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llm/chat.h"
#include "llm/gguf.h"
#include "llm/tokenizer.h"

using json = nlohmann::json;

namespace {

json templates() {
  std::ifstream f(th::data_dir() + "/chat/templates.json");
  REQUIRE_MESSAGE(f.good(), "missing fixture chat/templates.json");
  return json::parse(f);
}

std::vector<llm::ChatMessage> messages(const json& j) {
  std::vector<llm::ChatMessage> m;
  for (const auto& x : j) m.push_back({x["role"], x["content"]});
  return m;
}

llm::Vocab vocab_with(const std::string& tmpl) {
  llm::Vocab v;
  v.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  v.eos = 0;
  v.chat_template = tmpl;
  return v;
}

}  // namespace

TEST_CASE("ChatML templates render as Jinja renders them, default system turn included") {
  for (const auto& t : templates()) {
    CAPTURE(t["name"].get<std::string>());
    llm::ChatFormat fmt(vocab_with(t["template"]));
    CHECK(fmt.chatml());
    CHECK(fmt.end_of_turn() == 2);
    for (const auto& c : t["cases"]) {
      auto msgs = fmt.with_system(messages(c["messages"]));
      CHECK(fmt.render(msgs, true) == c["text"].get<std::string>());
    }
  }
}

TEST_CASE("the default system turn is read whether the template writes a newline or Jinja's \\n") {
  json ts = templates();
  auto find = [&](const std::string& name) {
    for (const auto& t : ts)
      if (t["name"] == name) return llm::ChatFormat(vocab_with(t["template"]));
    FAIL("no template " << name);
    return llm::ChatFormat(vocab_with(""));
  };
  auto a = find("smollm2_gguf"), b = find("smollm2_escaped");
  CHECK(!a.default_system().empty());
  CHECK(a.default_system() == b.default_system());
  CHECK(find("qwen2_style").default_system().find("'helpful'") != std::string::npos);  // \' decoded
  CHECK(find("chatml_no_default").default_system().empty());
  CHECK(find("system_expression").default_system().empty());  // an expression is not a default
}

TEST_CASE("SmolLM2: a chat turn's tokens are the Jinja text's, with the system turn") {
  const std::string p = th::data_dir() + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(p)) {
    if (std::getenv("LLM_REQUIRE_MODELS")) FAIL("missing " << p << " (scripts/fetch-models.sh)");
    MESSAGE("skipped: SmolLM2 not fetched (scripts/fetch-models.sh)");
    return;
  }
  auto f = llm::gguf::File::open(p);
  llm::Tokenizer tok(llm::Vocab::from_gguf(*f));
  llm::ChatFormat fmt(tok.vocab());
  for (const auto& t : templates()) {
    if (t["name"] != "smollm2_gguf") continue;
    REQUIRE(tok.vocab().chat_template == t["template"].get<std::string>());
    for (const auto& c : t["cases"]) {
      auto ids = fmt.tokenize(tok, fmt.with_system(messages(c["messages"])), true);
      CHECK(ids == tok.encode(c["text"].get<std::string>(), false, true));
    }
  }
}
