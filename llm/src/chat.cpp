#include "llm/chat.h"

namespace llm {

namespace {

// The literal default system turn of a ChatML template: the text after
// '<|im_start|>system' and a newline (written as a newline character, as
// SmolLM2's GGUF has it, or as Jinja's escape '\n', as tokenizer_config.json
// files usually have it) up to '<|im_end|>', inside one string literal.
// Jinja's escapes are decoded; a quote ends the literal, which means the
// system text is an expression (a message's content), not a default: "".
std::string literal_default_system(const std::string& t) {
  const std::string open = "<|im_start|>system";
  for (size_t a = t.find(open); a != std::string::npos; a = t.find(open, a + 1)) {
    size_t i = a + open.size();
    if (t.compare(i, 1, "\n") == 0) i += 1;
    else if (t.compare(i, 2, "\\n") == 0) i += 2;
    else continue;
    std::string s;
    for (; i < t.size(); i++) {
      if (t.compare(i, 10, "<|im_end|>") == 0) return s.find("{{") == std::string::npos ? s : std::string();
      char c = t[i];
      if (c == '\'' || c == '"') break;  // the literal ends before <|im_end|>
      if (c == '\\' && i + 1 < t.size()) {
        char e = t[++i];
        s += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;  // \\ \' \" stand for themselves
      } else {
        s += c;
      }
    }
  }
  return {};
}

}  // namespace

ChatFormat::ChatFormat(const Vocab& v) {
  const std::string& t = v.chat_template;
  chatml_ = t.find("<|im_start|>") != std::string::npos;
  end_of_turn_ = v.eos;
  if (chatml_) {
    for (int32_t i = 0; i < v.size(); i++)
      if (v.tokens[i] == "<|im_end|>") end_of_turn_ = i;
    default_system_ = literal_default_system(t);
  } else {
    stops_ = {"\nUser:"};
  }
}
std::vector<ChatMessage> ChatFormat::with_system(std::vector<ChatMessage> msgs) const {
  if (!default_system_.empty() && (msgs.empty() || msgs[0].role != "system"))
    msgs.insert(msgs.begin(), {"system", default_system_});
  return msgs;
}

template <class Markup, class Text>
void ChatFormat::visit(const std::vector<ChatMessage>& msgs, bool add_generation_prompt, Markup&& markup,
                       Text&& text) const {
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
}

std::vector<int32_t> ChatFormat::tokenize(const Tokenizer& tok, const std::vector<ChatMessage>& msgs,
                                          bool add_generation_prompt) const {
  std::vector<int32_t> out;
  auto add = [&](const std::string& s, bool special) {
    auto ids = tok.encode(s, false, special);
    out.insert(out.end(), ids.begin(), ids.end());
  };
  visit(msgs, add_generation_prompt, [&](const std::string& s) { add(s, true); },
        [&](const std::string& s) { add(s, false); });
  return out;
}

std::string ChatFormat::render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const {
  std::string out;
  auto add = [&](const std::string& s) { out += s; };
  visit(msgs, add_generation_prompt, add, add);
  return out;
}

}  // namespace llm
