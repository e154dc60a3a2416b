#include "core/gateway/rate_limiter.h"

#include <gtest/gtest.h>

#include <deque>
#include <vector>

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

LimitOptions Limits(double rps, int burst, int max_in_flight = 1'000'000) {
  LimitOptions o;
  o.requests_per_second = rps;
  o.burst = burst;
  o.max_in_flight = max_in_flight;
  return o;
}

// Drives the limiter as a client with an endless backlog would: start whenever allowed, jumping
// the fake clock to the next allowed time. Returns the start times.
std::vector<SteadyTime> StartGreedily(RateLimiter& limiter, FakeClock& clock, Duration span) {
  std::vector<SteadyTime> starts;
  const SteadyTime end = clock.Now() + span;
  while (clock.Now() < end) {
    if (limiter.TryStart(clock.Now())) {
      starts.push_back(clock.Now());
      limiter.Finished();
      continue;
    }
    const SteadyTime next = limiter.NextStartTime(clock.Now());
    if (next <= clock.Now()) {
      ADD_FAILURE() << "refused a start but says one is allowed now";
      break;
    }
    clock.Advance(next - clock.Now());
  }
  return starts;
}

// The largest number of starts inside any half-open one-second window [t, t + 1s).
size_t MaxInAnySecond(const std::vector<SteadyTime>& starts) {
  size_t best = 0, lo = 0;
  for (size_t hi = 0; hi < starts.size(); ++hi) {
    while (starts[hi] - starts[lo] >= seconds(1)) ++lo;
    best = std::max(best, hi - lo + 1);
  }
  return best;
}

TEST(RateLimiter, StartsEmptySoTheFirstRequestWaitsOneInterval) {
  FakeClock clock;
  RateLimiter limiter(Limits(10, 5), clock.Now());
  EXPECT_FALSE(limiter.TryStart(clock.Now()));
  EXPECT_EQ(limiter.NextStartTime(clock.Now()) - clock.Now(), milliseconds(100));
  clock.Advance(milliseconds(99));
  EXPECT_FALSE(limiter.TryStart(clock.Now()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(limiter.TryStart(clock.Now()));
}

// Grants after a long idle time: what the bucket holds.
int GrantedAfterIdle(double rps, int burst) {
  FakeClock clock;
  RateLimiter limiter(Limits(rps, burst), clock.Now());
  clock.Advance(seconds(60));
  int granted = 0;
  while (limiter.TryStart(clock.Now())) ++granted;
  return granted;
}

TEST(RateLimiter, IdleBucketHoldsFiveMillisecondsOfStartsAtMostBurst) {
  EXPECT_EQ(GrantedAfterIdle(2000, 100), 10);     // paced: 5 ms at 2,000/s
  EXPECT_EQ(GrantedAfterIdle(100000, 100), 100);  // burst is the cap
  EXPECT_EQ(GrantedAfterIdle(10, 5), 2);          // at least two: room for a late wake-up
  EXPECT_EQ(GrantedAfterIdle(1000, 1), 1);        // and never more than burst
}

TEST(RateLimiter, NeverMoreThanRpsPlusBurstInAnySecondUnderBacklog) {
  FakeClock clock;
  RateLimiter limiter(Limits(200, 10), clock.Now());
  std::vector<SteadyTime> starts = StartGreedily(limiter, clock, seconds(5));
  EXPECT_LE(MaxInAnySecond(starts), 210u);
  // A backlog uses the whole rate: about rps per second.
  EXPECT_GE(starts.size(), 990u);  // the guard (25 ms here) does not cost the rate
  EXPECT_LE(starts.size(), 1000u);
}

TEST(RateLimiter, GuardIsHalfTheBurstTimeCappedAtTheMaximum) {
  FakeClock clock;
  EXPECT_EQ(RateLimiter(Limits(2000, 100), clock.Now()).jitter_guard(), milliseconds(25));
  EXPECT_EQ(RateLimiter(Limits(50, 10), clock.Now()).jitter_guard(), milliseconds(100));
  EXPECT_EQ(RateLimiter(Limits(50, 1000), clock.Now()).jitter_guard(),
            RateLimiter::kMaxJitterGuard);
  EXPECT_EQ(RateLimiter(Limits(0, 10), clock.Now()).jitter_guard(), Duration::zero());
}

TEST(RateLimiter, BacklogGetsTheFullRateWithASmallBurst) {
  // The bench_daemon (b) setting: 2,000 rps with burst 100. A 100 ms guard held it at 1,909/s.
  FakeClock clock;
  RateLimiter limiter(Limits(2000, 100), clock.Now());
  std::vector<SteadyTime> starts = StartGreedily(limiter, clock, seconds(5));
  EXPECT_LE(MaxInAnySecond(starts), 2100u);
  EXPECT_GE(starts.size(), 9950u);
  EXPECT_LE(starts.size(), 10000u);
}

TEST(RateLimiter, WindowHoldsWithIdleGapsAndRandomArrivals) {
  FakeClock clock;
  SystemRandom random(42);
  const double rps = 37;
  const int burst = 13;
  RateLimiter limiter(Limits(rps, burst), clock.Now());
  std::vector<SteadyTime> starts;
  for (int i = 0; i < 20000; ++i) {
    // Arrivals bunched and spread: sometimes idle long enough to refill the bucket.
    clock.Advance(nanoseconds(random.Below(i % 500 < 50 ? 2'000'000'000 : 20'000'000)));
    if (limiter.TryStart(clock.Now())) {
      starts.push_back(clock.Now());
      limiter.Finished();
    }
  }
  ASSERT_GT(starts.size(), 1000u);
  EXPECT_LE(MaxInAnySecond(starts), static_cast<size_t>(rps) + burst);
}

// The largest number of starts inside any half-open window of `span`.
size_t MaxInAnyWindow(const std::vector<SteadyTime>& starts, Duration span) {
  size_t best = 0, lo = 0;
  for (size_t hi = 0; hi < starts.size(); ++hi) {
    while (starts[hi] - starts[lo] >= span) ++lo;
    best = std::max(best, hi - lo + 1);
  }
  return best;
}

TEST(RateLimiter, StallsThatRefillTheBucketStillRespectTheGuardedWindow) {
  // A busy loop wakes late and finds the bucket refilled: it may start only what the paced bucket
  // holds, never the time it missed, and any 1s + guard window still holds at most rps + burst.
  FakeClock clock;
  SystemRandom random(5);
  RateLimiter limiter(Limits(200, 10), clock.Now());
  std::vector<SteadyTime> starts;
  size_t most_at_once = 0;
  for (int i = 0; i < 50000; ++i) {
    clock.Advance(nanoseconds(random.Below(i % 400 == 0 ? 60'000'000 : 3'000'000)));
    size_t at_once = 0;
    while (limiter.TryStart(clock.Now())) {
      starts.push_back(clock.Now());
      limiter.Finished();
      ++at_once;
    }
    most_at_once = std::max(most_at_once, at_once);
  }
  EXPECT_LE(MaxInAnyWindow(starts, seconds(1) + limiter.jitter_guard()), 210u);
  EXPECT_LE(most_at_once, 2u) << "a stall is made up by a bunch of starts";
  // The stalls (about 5% of the time here) cost their share of the rate, no more.
  const double span = std::chrono::duration<double>(starts.back() - starts.front()).count();
  EXPECT_GE(starts.size() / span, 0.9 * 200);
}

TEST(RateLimiter, FractionalRateIsRoundedDown) {
  FakeClock clock;
  RateLimiter limiter(Limits(3, 1), clock.Now());
  // 1e9/3 is not whole: the interval rounds up to 333'333'334 ns.
  EXPECT_EQ(limiter.NextStartTime(clock.Now()) - clock.Now(), nanoseconds(333'333'334));
}

TEST(RateLimiter, MaxInFlightCapsConcurrentStarts) {
  FakeClock clock;
  RateLimiter limiter(Limits(0, 0, 3), clock.Now());
  EXPECT_TRUE(limiter.TryStart(clock.Now()));
  EXPECT_TRUE(limiter.TryStart(clock.Now()));
  EXPECT_TRUE(limiter.TryStart(clock.Now()));
  EXPECT_TRUE(limiter.FullyInFlight());
  EXPECT_FALSE(limiter.TryStart(clock.Now()));
  limiter.Finished();
  EXPECT_EQ(limiter.in_flight(), 2);
  EXPECT_TRUE(limiter.TryStart(clock.Now()));
}

TEST(RateLimiter, ZeroRateMeansUnlimited) {
  FakeClock clock;
  RateLimiter limiter(Limits(0, 0), clock.Now());
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(limiter.TryStart(clock.Now()));
}

TEST(RateLimiter, PauseHoldsEveryStartUntilItsEnd) {
  FakeClock clock;
  RateLimiter limiter(Limits(100, 10), clock.Now());
  clock.Advance(seconds(1));
  limiter.PauseUntil(clock.Now() + seconds(3));
  EXPECT_FALSE(limiter.TryStart(clock.Now()));
  EXPECT_EQ(limiter.NextStartTime(clock.Now()) - clock.Now(), seconds(3));
  limiter.PauseUntil(clock.Now() + seconds(1));  // an earlier end does not shorten the pause
  clock.Advance(seconds(2));
  EXPECT_TRUE(limiter.PausedAt(clock.Now()));
  EXPECT_FALSE(limiter.TryStart(clock.Now()));
  clock.Advance(seconds(1));
  EXPECT_TRUE(limiter.TryStart(clock.Now()));
}

TEST(RateLimiter, ReconfigureRestartsEmptyAtTheNewRate) {
  FakeClock clock;
  RateLimiter limiter(Limits(10, 5), clock.Now());
  clock.Advance(seconds(10));
  limiter.Reconfigure(Limits(100, 2), clock.Now());
  EXPECT_FALSE(limiter.TryStart(clock.Now()));
  EXPECT_EQ(limiter.NextStartTime(clock.Now()) - clock.Now(), milliseconds(10));
}

}  // namespace
}  // namespace payoutd
