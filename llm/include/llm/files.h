#pragma once
// Path questions the tools ask before they write.
#include <cstdio>
#include <string>

namespace llm {

// True when both paths name one existing file (the same device and inode:
// "./f.gguf", "dir/../dir/f.gguf", a hard or symbolic link), not when the
// strings are equal but the file does not exist.
bool same_file(const std::string& a, const std::string& b);

// Why a path cannot be read as a directory, in words: "no such file or
// directory", "not a directory (a file)"; empty when it is one.
std::string not_a_directory_reason(const std::string& path);

// A file written under a temporary identity and put in place whole: nothing
// appears under the final name before commit(), so a crash, a kill or an
// error never leaves a half-written file there. The temporary lives in the
// output's directory (so the final rename stays on one filesystem): an
// unnamed O_TMPFILE inode where the filesystem has them, which a crash or a
// kill leaves nothing of; else "NAME.XXXXXX.tmp", created with O_EXCL and
// O_NOFOLLOW (a planted file or symbolic link is never written through) and
// removed on every error path.
class OutputFile {
 public:
  explicit OutputFile(const std::string& path);  // throws llm::Error
  ~OutputFile();                                 // without commit(): the temporary goes
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  std::FILE* stream() { return f_; }
  // Flushes, syncs and renames the file over its path (throws llm::Error).
  void commit();
  const std::string& path() const { return path_; }

 private:
  void discard();
  std::string path_, named_;  // named_: the temporary's name, empty while it has none
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace llm
