// Clang's thread-safety analysis (-Wthread-safety): attributes that say which mutex guards a field
// and which mutex a function needs, so that the compiler rejects an access without the lock.
// Under other compilers (GCC) every macro is empty: the annotations document, clang checks.
//
//   GUARDED_BY(mu)       a field read or written only with `mu` held
//   PT_GUARDED_BY(mu)    the data a pointer field points to, likewise
//   REQUIRES(mu...)      the caller must hold `mu` (exclusively)
//   EXCLUDES(mu...)      the caller must not hold `mu` (the function takes it)
//   ACQUIRE / RELEASE    the function takes / gives back a capability (a lock's own methods)
//   CAPABILITY("mutex")  the class is a lock; SCOPED_CAPABILITY: an RAII holder of one
//   ASSERT_CAPABILITY    after the call the analysis may assume the capability is held
//   NO_THREAD_SAFETY_ANALYSIS  opts one function out; say why beside it
//
// libstdc++'s std::mutex carries no annotations: guard fields with payoutd::Mutex
// (core/base/mutex.h). The sanitizer build compiles with clang and -Werror=thread-safety.
#pragma once

#if defined(__clang__)
#define PAYOUTD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PAYOUTD_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) PAYOUTD_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY PAYOUTD_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) PAYOUTD_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) PAYOUTD_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) PAYOUTD_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) PAYOUTD_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) PAYOUTD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) PAYOUTD_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) PAYOUTD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) PAYOUTD_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) PAYOUTD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) PAYOUTD_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) PAYOUTD_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) PAYOUTD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) PAYOUTD_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) PAYOUTD_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS PAYOUTD_THREAD_ANNOTATION(no_thread_safety_analysis)
