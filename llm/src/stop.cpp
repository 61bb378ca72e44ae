#include "llm/stop.h"

#include <algorithm>

namespace llm {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));  // an empty string would stop before anything
}

std::string StopMatcher::add(const std::string& piece, bool& stopped) {
  stopped = false;
  pending_ += piece;
  // The earliest complete stop string wins (two may end in one piece).
  size_t first = std::string::npos;
  for (const auto& st : stops_) first = std::min(first, pending_.find(st));
  if (first != std::string::npos) {
    std::string out = pending_.substr(0, first);
    pending_.clear();
    stopped = true;
    return out;
  }
  size_t keep = 0;  // the longest suffix of pending_ that is a proper prefix of a stop string
  for (const auto& st : stops_)
    for (size_t k = std::min(st.size() - 1, pending_.size()); k > keep; k--)
      if (pending_.compare(pending_.size() - k, k, st, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace llm
