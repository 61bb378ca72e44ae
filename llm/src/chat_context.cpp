#include "llm/chat_context.h"

#include <algorithm>
#include <string>

#include "llm/error.h"

namespace llm {

ChatContext::ChatContext(Session& s) : s_(s) { s_.rewind(0); }

void ChatContext::set_prefix(const std::vector<int32_t>& ids) {
  if ((int64_t)ids.size() >= s_.n_ctx())
    throw Error("the system prompt (" + tokens_str((int64_t)ids.size()) + ") fills the context of " +
                tokens_str(s_.n_ctx()) + " (raise -c)");
  s_.rewind(0);
  exchanges_.clear();
  prefix_ = ids;
  if (!ids.empty()) s_.eval(ids);
}

ChatContext::Shift ChatContext::make_room(size_t n) {
  Shift sh;
  const int64_t ctx = s_.n_ctx();
  if (s_.n_past() + (int64_t)n <= ctx) return sh;
  const int64_t current = exchanges_.empty() ? 0 : (int64_t)exchanges_.back().size();
  const int64_t fixed = (int64_t)prefix_.size() + current + (int64_t)n;
  if (fixed > ctx)
    throw Error("this turn (" + tokens_str(current + (int64_t)n) + ") and the system prompt (" +
                tokens_str((int64_t)prefix_.size()) + ") do not fit the context of " + tokens_str(ctx) + " (raise -c)");
  // Drop the oldest exchanges until the rest leave the target share free.
  const int64_t target = std::max<int64_t>(fixed, (int64_t)(kKeepShare * (double)ctx));
  int64_t kept = s_.n_past() + (int64_t)n;
  size_t drop = 0;
  while (drop + 1 < exchanges_.size() && kept > target) {
    kept -= (int64_t)exchanges_[drop].size();
    sh.tokens += (int64_t)exchanges_[drop].size();
    drop++;
  }
  exchanges_.erase(exchanges_.begin(), exchanges_.begin() + (ptrdiff_t)drop);
  sh.turns = (int)drop;
  std::vector<int32_t> rest;
  for (const auto& e : exchanges_) rest.insert(rest.end(), e.begin(), e.end());
  s_.rewind((int64_t)prefix_.size());
  if (!rest.empty()) s_.eval(rest);
  sh.reevaluated = (int64_t)rest.size();
  return sh;
}

ChatContext::Shift ChatContext::begin_exchange(const std::vector<int32_t>& ids) {
  exchanges_.emplace_back();
  Shift sh;
  try {
    sh = make_room(ids.size());
  } catch (...) {
    exchanges_.pop_back();
    throw;
  }
  s_.eval(ids);
  exchanges_.back() = ids;
  return sh;
}

ChatContext::Shift ChatContext::append(const std::vector<int32_t>& ids) {
  if (exchanges_.empty()) throw Error("ChatContext::append: no exchange begun");
  Shift sh = make_room(ids.size());
  s_.eval(ids);
  exchanges_.back().insert(exchanges_.back().end(), ids.begin(), ids.end());
  return sh;
}

std::vector<int32_t> ChatContext::tokens() const {
  std::vector<int32_t> t = prefix_;
  for (const auto& e : exchanges_) t.insert(t.end(), e.begin(), e.end());
  return t;
}

}  // namespace llm
