#pragma once
// A conversation's tokens in a Session's cache, kept in segments so that a
// long chat never ends because the context is full: a prefix that always
// stays (BOS and the system turn), then exchanges (a user's turn and the
// assistant's answer). When new tokens do not fit, the oldest exchanges are
// dropped and what is kept is evaluated again after the prefix. This is
// llama.cpp's context shift done by recomputation rather than by rotating
// the cached keys: the cache afterwards is exactly what a fresh session
// would hold for the kept tokens, for one prompt evaluation of them.
#include <cstdint>
#include <vector>

#include "llm/session.h"

namespace llm {

class ChatContext {
 public:
  // What one call dropped to make room (turns: exchanges, tokens: theirs).
  struct Shift {
    int turns = 0;
    int64_t tokens = 0;
    int64_t reevaluated = 0;  // tokens evaluated again after the prefix
  };

  // Starts from an empty cache (the session is rewound).
  explicit ChatContext(Session& s);

  // Evaluates the prefix. Throws llm::Error when it alone fills the context.
  void set_prefix(const std::vector<int32_t>& ids);
  // Starts a new exchange with these tokens (the user's turn and the
  // assistant's opener) and evaluates them; the previous exchange becomes
  // droppable.
  Shift begin_exchange(const std::vector<int32_t>& ids);
  // Evaluates tokens as part of the current exchange (an answer's tokens,
  // the markup that closes it). Throws llm::Error when the prefix and the
  // current exchange alone do not leave room for them.
  Shift append(const std::vector<int32_t>& ids);

  // Every token in the cache, in order (the prefix, then the kept exchanges).
  std::vector<int32_t> tokens() const;
  size_t n_exchanges() const { return exchanges_.size(); }
  // After a shift, kept exchanges fill at most this share of the context, so
  // shifts are rare (each costs a prompt evaluation of what is kept).
  static constexpr double kKeepShare = 0.5;

 private:
  Shift make_room(size_t n);
  Session& s_;
  std::vector<int32_t> prefix_;
  std::vector<std::vector<int32_t>> exchanges_;  // the last one is current
};

}  // namespace llm
