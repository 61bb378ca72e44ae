#pragma once
// Chat prompts from a model's template: ChatML (<|im_start|>role\n...<|im_end|>,
// what SmolLM2 and many others ship) when the template uses it, else a plain
// "User: / Assistant:" fallback. Template markup is tokenized with special
// tokens parsed; message text is not, so a user cannot inject control tokens.
#include <string>
#include <vector>

#include "llm/tokenizer.h"

namespace llm {

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

class ChatFormat {
 public:
  explicit ChatFormat(const Vocab& v);
  bool chatml() const { return chatml_; }
  // The system prompt a template supplies when the conversation has none
  // (SmolLM2's names the assistant), or empty.
  const std::string& default_system() const { return default_system_; }
  // The messages as the template starts a conversation: its default system
  // turn first when the first message is not a system turn.
  std::vector<ChatMessage> with_system(std::vector<ChatMessage> msgs) const;
  // Tokens for the given messages (appended to a conversation), then the
  // assistant's turn opener when add_generation_prompt.
  std::vector<int32_t> tokenize(const Tokenizer& tok, const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  // The same as text (template markup and message text together).
  std::string render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const;
  // Text that ends the assistant's turn besides EOS (for the plain format).
  const std::vector<std::string>& stop_strings() const { return stops_; }
  int32_t end_of_turn() const { return end_of_turn_; }  // <|im_end|> or EOS

 private:
  template <class Markup, class Text>
  void visit(const std::vector<ChatMessage>& msgs, bool add_generation_prompt, Markup&& markup, Text&& text) const;
  bool chatml_ = false;
  std::string default_system_;
  std::vector<std::string> stops_;
  int32_t end_of_turn_ = -1;
};

}  // namespace llm
