#pragma once
#include <stdexcept>

namespace llm {

// Bad input (a corrupt file, a missing key of the wrong type, a bad option):
// one line that names the file or value and the problem.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace llm
