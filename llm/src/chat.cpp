#include "llm/chat.h"

namespace llm {

ChatFormat::ChatFormat(const Vocab& v) {
  const std::string& t = v.chat_template;
  chatml_ = t.find("<|im_start|>") != std::string::npos;
  end_of_turn_ = v.eos;
  if (chatml_) {
    for (int32_t i = 0; i < v.size(); i++)
      if (v.tokens[i] == "<|im_end|>") end_of_turn_ = i;
    // A literal default system turn: '<|im_start|>system\n...<|im_end|>' inside the template.
    const std::string open = "<|im_start|>system\\n";
    size_t a = t.find(open);
    if (a != std::string::npos) {
      size_t b = t.find("<|im_end|>", a);
      std::string s = t.substr(a + open.size(), b == std::string::npos ? 0 : b - a - open.size());
      if (s.find("{{") == std::string::npos && s.find('\'') == std::string::npos) default_system_ = s;
    }
  } else {
    stops_ = {"\nUser:"};
  }
}

std::vector<int32_t> ChatFormat::tokenize(const Tokenizer& tok, const std::vector<ChatMessage>& msgs,
                                          bool add_generation_prompt) const {
  std::vector<int32_t> out;
  auto markup = [&](const std::string& s) {
    auto ids = tok.encode(s, false, true);
    out.insert(out.end(), ids.begin(), ids.end());
  };
  auto text = [&](const std::string& s) {
    auto ids = tok.encode(s, false, false);
    out.insert(out.end(), ids.begin(), ids.end());
  };
  for (const auto& m : msgs) {
    if (chatml_) {
      markup("<|im_start|>" + m.role + "\n");
      text(m.content);
      markup("<|im_end|>\n");
    } else if (m.role == "system") {
      text(m.content + "\n\n");
    } else {
      text((m.role == "user" ? "User: " : "Assistant: ") + m.content + "\n");
    }
  }
  if (add_generation_prompt) {
    if (chatml_) markup("<|im_start|>assistant\n");
    else text("Assistant:");
  }
  return out;
}

}  // namespace llm
