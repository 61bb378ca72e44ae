// Chat prompts against Jinja2's rendering of the same templates (what
// transformers' apply_chat_template runs), committed by
// scripts/gen_chat_fixtures.py: the default system turn, then the turns.
#include <doctest/doctest.h>

#include "helpers.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llm/chat.h"
#include "llm/chat_context.h"
#include "llm/convert.h"
#include "llm/session.h"
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

TEST_CASE("ChatContext: a long chat drops its oldest turns and keeps the cache exact") {
  namespace fs = std::filesystem;
  const fs::path gguf = th::temp_dir() / "chat-llama.gguf";
  llm::ConvertOptions co;
  co.model_dir = th::data_dir() + "/hf/llama_st";
  co.out_path = gguf.string();
  co.outtype = ggml::Type::F32;
  llm::convert_hf_checkpoint(co);
  auto model = llm::Model::load(gguf.string());
  llm::SessionParams sp;
  sp.n_ctx = 64;
  sp.kv_type = ggml::Type::F32;
  llm::Session s(*model, sp);
  llm::ChatContext chat(s);

  std::mt19937 rng(11);
  auto random_tokens = [&](size_t n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = (int32_t)(rng() % (uint32_t)model->hp.n_vocab);
    return t;
  };
  const auto prefix = random_tokens(7);
  chat.set_prefix(prefix);
  std::vector<std::vector<int32_t>> history;  // every exchange ever begun, as the test sees it
  int shifts = 0;
  for (int turn = 0; turn < 30; turn++) {
    auto user = random_tokens(3 + rng() % 6);
    shifts += chat.begin_exchange(user).turns > 0;
    history.push_back(user);
    for (int k = 0; k < (int)(rng() % 12); k++) {  // an answer, token by token
      auto id = random_tokens(1);
      shifts += chat.append(id).turns > 0;
      history.back().push_back(id[0]);
    }
    // The cache holds the prefix and the newest exchanges, whole, in order.
    const auto have = chat.tokens();
    REQUIRE(s.n_past() == (int64_t)have.size());
    REQUIRE(s.n_past() <= s.n_ctx());
    REQUIRE(std::equal(prefix.begin(), prefix.end(), have.begin()));
    std::vector<int32_t> want = prefix;
    for (size_t e = history.size() - chat.n_exchanges(); e < history.size(); e++)
      want.insert(want.end(), history[e].begin(), history[e].end());
    REQUIRE(have == want);
    // The logits are what a fresh session computes for those tokens in one batch.
    llm::Session fresh(*model, sp);
    fresh.eval(have);
    double d = 0;
    for (int64_t i = 0; i < s.n_vocab(); i++) d = std::max(d, (double)std::fabs(s.logits()[i] - fresh.logits()[i]));
    CHECK(d < 1e-4);
  }
  CHECK(shifts >= 3);  // 30 turns of ~11 tokens in 64: the context was shifted, more than once
  // A turn longer than the context with the prefix is refused; the chat goes on.
  CHECK_THROWS_WITH_AS(chat.begin_exchange(random_tokens(60)), doctest::Contains("raise -c"), llm::Error);
  chat.begin_exchange(random_tokens(4));
  CHECK(s.n_past() == (int64_t)chat.tokens().size());
}
