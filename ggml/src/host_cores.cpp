// The host's physical cores: hyperthreads share a core's execution units,
// so a compute-bound or bandwidth-bound team gains nothing from a second
// thread on a core and loses to the barrier; the default team is one thread
// per physical core this process may run on.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "ggml/backend.h"

namespace ggml {

int physical_cores() {
  static const int n = [] {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return int(std::max(1u, std::thread::hardware_concurrency()));
    std::set<std::string> cores;  // a core's thread siblings, as the kernel lists them
    int cpus = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
      if (!CPU_ISSET(c, &mask)) continue;
      cpus++;
      std::ifstream f("/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/thread_siblings_list");
      std::string s;
      if (!(f >> s)) s = "cpu" + std::to_string(c);  // no topology: count it as its own core
      cores.insert(s);
    }
    return std::max(1, std::min(cpus, int(cores.size())));
  }();
  return n;
}

}  // namespace ggml
