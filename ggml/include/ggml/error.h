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

[[noreturn]] void fail(const std::string& msg);
[[noreturn]] void assert_failed(const char* file, int line, const char* expr);

}  // namespace ggml

#define GGML_ASSERT(x) \
  do { if (!(x)) ::ggml::assert_failed(__FILE__, __LINE__, #x); } while (0)
