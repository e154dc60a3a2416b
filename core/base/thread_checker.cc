#include "core/base/thread_checker.h"

#include <cstdio>
#include <cstdlib>

namespace payoutd {

#if PAYOUTD_THREAD_CHECKS_ON

bool ThreadChecker::CalledOnValidThread() const {
  const std::thread::id self = std::this_thread::get_id();
  std::thread::id bound = owner_.load(std::memory_order_relaxed);
  if (bound == std::thread::id()) {
    // Unbound: this caller binds it, unless another thread won the race to bind.
    if (owner_.compare_exchange_strong(bound, self, std::memory_order_relaxed)) return true;
  }
  return bound == self;
}

void ThreadCheckFailed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "payoutd: called off its thread (%s) at %s:%d\n", what, file, line);
  std::abort();
}

#endif

}  // namespace payoutd
