#pragma once
// Other programs keeping cores busy, for measuring speed on a machine that
// is not idle (a laptop's browser, a compile): n child processes that spin
// until this object goes, or until this process dies (they are killed with
// it, never left behind).
#include <sys/types.h>

#include <vector>

namespace tool {

class BusyCores {
 public:
  explicit BusyCores(int n);
  ~BusyCores();
  BusyCores(const BusyCores&) = delete;
  BusyCores& operator=(const BusyCores&) = delete;
  int count() const { return int(pids_.size()); }

 private:
  std::vector<pid_t> pids_;
};

}  // namespace tool
