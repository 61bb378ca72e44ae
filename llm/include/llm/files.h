#pragma once
// Path questions the tools ask before they write.
#include <string>

namespace llm {

// True when both paths name one existing file (the same device and inode:
// "./f.gguf", "dir/../dir/f.gguf", a hard or symbolic link), not when the
// strings are equal but the file does not exist.
bool same_file(const std::string& a, const std::string& b);

// Why a path cannot be read as a directory, in words: "no such file or
// directory", "not a directory (a file)"; empty when it is one.
std::string not_a_directory_reason(const std::string& path);

}  // namespace llm
