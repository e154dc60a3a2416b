// Timers on the system clock and on the fake clock behave alike: one pending wait per timer, its
// function posted to the io_context when due, a re-arm or cancel drops the wait before it.
#include "core/base/clock.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <vector>

namespace payoutd {
namespace {

using std::chrono::milliseconds;

TEST(FakeClock, TimersFireInDeadlineOrderAsTimeMoves) {
  boost::asio::io_context io;
  FakeClock clock;
  std::vector<int> fired;
  auto a = clock.NewTimer(io);
  auto b = clock.NewTimer(io);
  a->WaitUntil(clock.Now() + milliseconds(20), [&] { fired.push_back(20); });
  b->WaitUntil(clock.Now() + milliseconds(10), [&] { fired.push_back(10); });
  EXPECT_EQ(clock.NextDeadline(), clock.Now() + milliseconds(10));
  clock.Advance(milliseconds(9));
  io.poll();
  EXPECT_TRUE(fired.empty());
  clock.Advance(milliseconds(11));
  EXPECT_TRUE(fired.empty()) << "due waits are posted, never run inside AdvanceTo";
  io.restart();
  io.poll();
  EXPECT_EQ(fired, (std::vector<int>{10, 20}));
  EXPECT_FALSE(clock.NextDeadline().has_value());
}

TEST(FakeClock, ArmingAgainOrCancellingDropsTheEarlierWaitEvenWhenDue) {
  boost::asio::io_context io;
  FakeClock clock;
  std::vector<int> fired;
  auto t = clock.NewTimer(io);
  t->WaitUntil(clock.Now() + milliseconds(5), [&] { fired.push_back(1); });
  clock.Advance(milliseconds(5));  // posted, not yet run
  t->WaitUntil(clock.Now() + milliseconds(5), [&] { fired.push_back(2); });
  io.poll();
  EXPECT_TRUE(fired.empty()) << "the first wait was replaced after it came due";
  t->Cancel();
  clock.Advance(milliseconds(10));
  io.restart();
  io.poll();
  EXPECT_TRUE(fired.empty());
  t->WaitUntil(clock.Now(), [&] { fired.push_back(3); });  // due at once
  io.restart();
  io.poll();
  EXPECT_EQ(fired, (std::vector<int>{3}));
}

TEST(FakeClock, DestroyingATimerDropsItsWait) {
  boost::asio::io_context io;
  FakeClock clock;
  bool fired = false;
  {
    auto t = clock.NewTimer(io);
    t->WaitUntil(clock.Now() + milliseconds(1), [&] { fired = true; });
    clock.Advance(milliseconds(1));
  }
  io.poll();
  EXPECT_FALSE(fired);
}

TEST(SystemClock, TimerRunsOnceAndARearmReplacesTheWait) {
  boost::asio::io_context io;
  SystemClock clock;
  std::vector<int> fired;
  auto t = clock.NewTimer(io);
  t->WaitUntil(clock.Now() + milliseconds(1), [&] { fired.push_back(1); });
  t->WaitUntil(clock.Now() + milliseconds(2), [&] { fired.push_back(2); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fired.empty() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(milliseconds(10));
    if (io.stopped()) io.restart();
  }
  io.poll();
  EXPECT_EQ(fired, (std::vector<int>{2}));
}

}  // namespace
}  // namespace payoutd
