#include "llm/memory.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "llm/error.h"
#include "llm/gguf.h"
#include "llm/model.h"

namespace llm {

namespace {
size_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return size_t(std::strtoull(line.c_str() + n + 1, nullptr, 10));
  return 0;
}
}  // namespace

size_t rss_bytes() { return status_kib("VmRSS") * 1024; }
size_t peak_rss_bytes() { return status_kib("VmHWM") * 1024; }

size_t resident_bytes(const void* p, size_t n) {
  // smaps: a header line "start-end perms ..." per mapping, then "Rss: N kB".
  std::ifstream in("/proc/self/smaps");
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  std::string line;
  bool inside = false;
  size_t kib = 0;
  while (std::getline(in, line)) {
    unsigned long long a = 0, b = 0;
    char dash = 0;
    std::istringstream h(line);
    if ((h >> std::hex >> a >> dash >> b) && dash == '-' && line.find(':') > line.find(' ')) {
      inside = a < hi && b > lo;
      continue;
    }
    if (inside && line.compare(0, 4, "Rss:") == 0) kib += size_t(std::strtoull(line.c_str() + 4, nullptr, 10));
  }
  return kib * 1024;
}

ProcessBaseline ProcessBaseline::measure(const Model& model) {
  ProcessBaseline b;
  b.rss = rss_bytes();
  b.map_resident = resident_bytes(model.file().bytes(), model.file().size());
  b.peak = peak_rss_bytes();
  return b;
}

size_t parse_size(const std::string& s, const std::string& what) {
  const char* c = s.c_str();
  char* end = nullptr;
  const double v = std::strtod(c, &end);
  std::string unit(end);
  for (char& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  double mul = 0;
  if (unit.empty() || unit == "B") mul = 1;
  for (const auto& [u, m] : {std::pair<const char*, double>{"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}, {"T", 1099511627776.0}})
    for (const char* suffix : {"", "B", "IB"})
      if (unit == std::string(u) + suffix) mul = m;
  if (end == c || mul == 0 || !(v > 0) || !std::isfinite(v) || v * mul > 1e18)
    throw Error(what + " '" + s + "' is not a size (say 6G, 512M or a byte count)");
  return size_t(std::llround(v * mul));
}

std::string format_mib(size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", double(bytes) / 1048576.0);
  return b;
}

}  // namespace llm
