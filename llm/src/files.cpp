#include "llm/files.h"

#include <filesystem>
#include <system_error>

namespace llm {

namespace fs = std::filesystem;

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  bool eq = fs::equivalent(a, b, ec);
  return !ec && eq;
}

std::string not_a_directory_reason(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) return "no such file or directory";
  if (ec) return ec.message();
  if (st.type() != fs::file_type::directory) return "not a directory (a checkpoint is a directory with config.json)";
  return "";
}

}  // namespace llm
