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

// "6G", "512M", "1.5GiB", "300000000": bytes (K, M, G, T: powers of 1024,
// with or without "i" and "B"). Throws llm::Error naming `what` otherwise.
size_t parse_size(const std::string& s, const std::string& what);
std::string format_mib(size_t bytes);  // "123.4 MiB"

}  // namespace llm
