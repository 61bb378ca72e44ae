#include "llm/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>

#include "llm/error.h"

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

namespace {

std::string unique_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t seed = std::random_device{}();
  uint64_t x = seed ^ (uint64_t(::getpid()) << 32) ^ (counter++ * 0x9E3779B97F4A7C15ull);
  const char* digits = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string suffix;
  for (int i = 0; i < 8; i++, x /= 36) suffix += digits[x % 36];
  return path + "." + suffix + ".tmp";
}

std::string dir_of(const std::string& path) {
  fs::path d = fs::path(path).parent_path();
  return d.empty() ? "." : d.string();
}

}  // namespace

OutputFile::OutputFile(const std::string& path) : path_(path) {
  int fd = -1;
#ifdef O_TMPFILE
  // (LLM_NO_O_TMPFILE=1 takes the named path, as on filesystems without them: for tests.)
  if (!std::getenv("LLM_NO_O_TMPFILE")) fd = ::open(dir_of(path).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
  if (fd < 0) {  // no O_TMPFILE here: a fresh name, never an existing file or link
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
      named_ = unique_name(path);
      fd = ::open(named_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
      const std::string why = std::strerror(errno);
      named_.clear();
      throw Error(path + ": cannot create a temporary file beside it: " + why);
    }
  }
  f_ = ::fdopen(fd, "wb");
  if (!f_) {
    ::close(fd);
    discard();
    throw Error(path + ": cannot open a stream: " + std::strerror(errno));
  }
}

OutputFile::~OutputFile() {
  if (!committed_) discard();
}

void OutputFile::discard() {
  if (f_) std::fclose(f_);  // an unnamed temporary vanishes here
  f_ = nullptr;
  if (!named_.empty()) ::unlink(named_.c_str());
  named_.clear();
}

void OutputFile::commit() {
  if (!f_) throw Error(path_ + ": already closed");
  bool ok = std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
  int err = errno;
  if (ok && named_.empty()) {
    // Give the unnamed inode a fresh name, then rename it over the target
    // (linkat cannot replace an existing file).
    const std::string proc = "/proc/self/fd/" + std::to_string(fileno(f_));
    for (int attempt = 0; attempt < 16; attempt++) {
      std::string n = unique_name(path_);
      if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, n.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        named_ = n;
        break;
      }
      if (errno != EEXIST) break;
    }
    if (named_.empty()) ok = false, err = errno;
  }
  ok = std::fclose(f_) == 0 && ok;
  if (!ok && err == 0) err = errno;
  f_ = nullptr;
  if (!ok) {
    discard();
    throw Error(path_ + ": write failed: " + std::strerror(err));
  }
  if (std::rename(named_.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    discard();
    throw Error(path_ + ": cannot rename the finished file into place: " + why);
  }
  named_.clear();
  committed_ = true;
}

}  // namespace llm
