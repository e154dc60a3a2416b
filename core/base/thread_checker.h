// "This thread only", asserted. A ThreadChecker binds to the first thread that asks it and, from
// then on, says whether the caller is that thread. Classes that live on the io_context's thread
// (the engine, the gateway client, the HTTP client, the spool, the callbacks receiver) keep one and
// assert it at their entry points, so a call from the store thread or a metrics thread aborts in a
// test instead of racing in production.
//
// Checked in debug and sanitizer builds (no NDEBUG, or PAYOUTD_THREAD_CHECKS defined); in release
// builds the checker is empty and the assertion compiles to nothing.
//
//   ThreadChecker io_thread_;
//   void Spool::Start() { PAYOUTD_DCHECK_ON_THREAD(io_thread_); ... }
#pragma once

#if !defined(NDEBUG) || defined(PAYOUTD_THREAD_CHECKS)
#define PAYOUTD_THREAD_CHECKS_ON 1
#else
#define PAYOUTD_THREAD_CHECKS_ON 0
#endif

#if PAYOUTD_THREAD_CHECKS_ON
#include <atomic>
#include <thread>
#endif

namespace payoutd {

#if PAYOUTD_THREAD_CHECKS_ON

class ThreadChecker {
 public:
  ThreadChecker() = default;
  ThreadChecker(const ThreadChecker&) = delete;
  ThreadChecker& operator=(const ThreadChecker&) = delete;

  // True on the bound thread; the first call binds the checker to its caller.
  bool CalledOnValidThread() const;
  // Forgets the thread: the next call binds again (an object handed over to another thread).
  void DetachFromThread() { owner_.store(std::thread::id(), std::memory_order_relaxed); }

 private:
  mutable std::atomic<std::thread::id> owner_{};
};

// Prints what was called off its thread, and where, then aborts.
[[noreturn]] void ThreadCheckFailed(const char* what, const char* file, int line);

#define PAYOUTD_DCHECK_ON_THREAD(checker)                         \
  do {                                                            \
    if (!(checker).CalledOnValidThread())                         \
      ::payoutd::ThreadCheckFailed(#checker, __FILE__, __LINE__); \
  } while (0)

#else

class ThreadChecker {
 public:
  ThreadChecker() = default;
  ThreadChecker(const ThreadChecker&) = delete;
  ThreadChecker& operator=(const ThreadChecker&) = delete;
  bool CalledOnValidThread() const { return true; }
  void DetachFromThread() {}
};

#define PAYOUTD_DCHECK_ON_THREAD(checker) static_cast<void>(checker)

#endif

}  // namespace payoutd
