#pragma once
#include <stdexcept>
#include <string>

namespace ggml {

// Thrown for bad input from a caller (shapes, types, views, files): one line
// that says what is wrong. Internal invariants use GGML_ASSERT instead.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by a compute that its abort check stopped between two nodes (the
// graph's results are then partly computed and must not be read).
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

[[noreturn]] void fail(const std::string& msg);
[[noreturn]] void assert_failed(const char* file, int line, const char* expr);

}  // namespace ggml

#define GGML_ASSERT(x) \
  do { if (!(x)) ::ggml::assert_failed(__FILE__, __LINE__, #x); } while (0)
