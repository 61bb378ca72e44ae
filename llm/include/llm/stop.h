#pragma once
// Stop strings over streamed text: text comes in pieces (a token's bytes at
// a time); what cannot be the start of a stop string goes out at once, the
// rest is held back until the next pieces decide it.
#include <string>
#include <vector>

namespace llm {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds a piece; returns the text now safe to show. stopped: a stop string
  // was completed (the text before it is returned, the rest dropped, and the
  // matcher starts over).
  std::string add(const std::string& piece, bool& stopped);
  std::string flush();  // what is held back
  const std::vector<std::string>& stops() const { return stops_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
};

}  // namespace llm
