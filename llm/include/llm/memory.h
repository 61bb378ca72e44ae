#pragma once
// This process's memory as the OS counts it (Linux /proc; zeros elsewhere),
// and sizes as users write them: for memory plans checked against reality.
#include <cstddef>
#include <string>

namespace llm {

size_t rss_bytes();       // resident now (VmRSS)
size_t peak_rss_bytes();  // the most resident so far (VmHWM)
// Resident bytes of this process's mappings inside [p, p + n) (a file map).
size_t resident_bytes(const void* p, size_t n);

class Model;
// The process at one moment: resident bytes, the model file map's share of
// them, and the peak so far. Memory plans (finetune-lora's, main's) add to it
// what is not resident yet.
struct ProcessBaseline {
  size_t rss = 0, map_resident = 0, peak = 0;
  static ProcessBaseline measure(const Model& model);
  size_t own() const { return rss > map_resident ? rss - map_resident : 0; }  // resident outside the map
};

// "6G", "512M", "1.5GiB", "300000000": bytes (K, M, G, T: powers of 1024,
// with or without "i" and "B"). Throws llm::Error naming `what` otherwise.
size_t parse_size(const std::string& s, const std::string& what);
std::string format_mib(size_t bytes);  // "123.4 MiB"

}  // namespace llm
