#pragma once
#include <stdexcept>
#include <string>

namespace llm {

// Bad input (a corrupt file, a missing key of the wrong type, a bad option):
// one line that names the file or value and the problem.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A long operation stopped because its caller asked (an abort check or a
// progress callback said so); what it was making is discarded.
class Cancelled : public std::runtime_error {
 public:
  explicit Cancelled(const std::string& what = "cancelled") : std::runtime_error(what) {}
};

}  // namespace llm
