#pragma once
// The graph memory a device backend mirrors: host ranges (pinned or plain)
// and their device copies of the same size, found by a host address. The
// CUDA backend and the emulated device share it.
#include <cstddef>
#include <mutex>
#include <vector>

namespace ggml {

class MirrorTable {
 public:
  struct Mirror {
    char* host;
    char* dev;
    size_t size;
  };
  void add(const Mirror& m) {
    std::lock_guard<std::mutex> l(mu_);
    v_.push_back(m);
  }
  void remove(const char* host) {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < v_.size(); i++)
      if (v_[i].host == host) v_.erase(v_.begin() + long(i));
  }
  // The mirror holding host address p, or nullptr. (Buffers come and go on
  // the thread that computes, so lookups take no lock.)
  const Mirror* find(const char* p) const {
    for (const Mirror& m : v_)
      if (p >= m.host && p < m.host + m.size) return &m;
    return nullptr;
  }
  char* device_of(const char* p) const {
    const Mirror* m = find(p);
    return m ? m->dev + (p - m->host) : nullptr;
  }

 private:
  std::mutex mu_;
  std::vector<Mirror> v_;
};

}  // namespace ggml
