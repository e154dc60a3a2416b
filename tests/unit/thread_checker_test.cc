// ThreadChecker (core/base/thread_checker.h) and the annotated Mutex/CondVar (core/base/mutex.h).
#include "core/base/thread_checker.h"

#include <gtest/gtest.h>

#include <deque>
#include <thread>

#include "core/base/mutex.h"

namespace payoutd {
namespace {

bool OnOtherThread(const ThreadChecker& checker) {
  bool valid = true;
  std::thread([&] { valid = checker.CalledOnValidThread(); }).join();
  return valid;
}

TEST(ThreadChecker, ThreadChecker_BindsToTheFirstCallerAndRefusesOtherThreads) {
  if (!PAYOUTD_THREAD_CHECKS_ON) GTEST_SKIP() << "thread checks are compiled out of this build";
  ThreadChecker checker;
  EXPECT_TRUE(checker.CalledOnValidThread());
  EXPECT_TRUE(checker.CalledOnValidThread());
  EXPECT_FALSE(OnOtherThread(checker));
  EXPECT_TRUE(checker.CalledOnValidThread()) << "a refused caller does not take it over";
}

TEST(ThreadChecker, ThreadChecker_BindsToWhicheverThreadCallsFirst) {
  if (!PAYOUTD_THREAD_CHECKS_ON) GTEST_SKIP() << "thread checks are compiled out of this build";
  ThreadChecker checker;  // made here, first used on another thread: that one is its thread
  EXPECT_TRUE(OnOtherThread(checker));
  EXPECT_FALSE(checker.CalledOnValidThread());
}

TEST(ThreadChecker, ThreadChecker_DetachLetsTheNextCallerBindIt) {
  if (!PAYOUTD_THREAD_CHECKS_ON) GTEST_SKIP() << "thread checks are compiled out of this build";
  ThreadChecker checker;
  EXPECT_TRUE(checker.CalledOnValidThread());
  checker.DetachFromThread();
  EXPECT_TRUE(OnOtherThread(checker));
  EXPECT_FALSE(checker.CalledOnValidThread());
}

TEST(ThreadCheckerDeathTest, ThreadChecker_AssertionAbortsOffItsThreadSayingWhere) {
  if (!PAYOUTD_THREAD_CHECKS_ON) GTEST_SKIP() << "thread checks are compiled out of this build";
  ThreadChecker io_thread;
  PAYOUTD_DCHECK_ON_THREAD(io_thread);  // binds to this thread
  EXPECT_DEATH(std::thread([&] { PAYOUTD_DCHECK_ON_THREAD(io_thread); }).join(),
               "called off its thread \\(io_thread\\) at .*thread_checker_test.cc");
}

TEST(Mutex, CondVar_WakesAWaiterThatHoldsTheMutexAgainOnReturn) {
  Mutex mu;
  CondVar cv;
  std::deque<int> queue;  // guarded by mu (a local cannot carry GUARDED_BY)
  int got = 0;
  std::thread consumer([&] {
    MutexLock lock(&mu);
    while (queue.empty()) cv.Wait(mu);
    got = queue.front();
    queue.pop_front();
  });
  {
    MutexLock lock(&mu);
    queue.push_back(42);
  }
  cv.Signal();
  consumer.join();
  EXPECT_EQ(got, 42);
  EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace payoutd
