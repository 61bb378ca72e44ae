#include "busy.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tool {

BusyCores::BusyCores(int n) {
  for (int i = 0; i < n; i++) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      this->~BusyCores();
      throw std::runtime_error("cannot start a busy process: " + why);
    }
    if (pid == 0) {
      // Die with the parent, however it ends; if it already ended, stop now.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      volatile unsigned long spin = 0;
      for (;;) spin = spin + 1;
    }
    pids_.push_back(pid);
  }
}

BusyCores::~BusyCores() {
  for (pid_t p : pids_) kill(p, SIGKILL);
  for (pid_t p : pids_) waitpid(p, nullptr, 0);
  pids_.clear();
}

}  // namespace tool
