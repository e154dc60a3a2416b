// The client-wide request limiter (`limits`, docs/gateway.md#rate-and-concurrency): a token bucket
// of `burst` tokens refilled at `requests_per_second`, plus a cap on requests in flight, plus a
// pause (429 Retry-After) that holds every start until a given time.
//
// Guarantees:
// - Over any one-second window at most requests_per_second + burst starts are granted. The bucket
//   starts EMPTY, so a restart (a new limiter) cannot exceed the window either.
// - Exact integer arithmetic on nanoseconds; the rate is rounded down (the interval between
//   tokens rounded up to a whole nanosecond), never up.
// - Paced: the bucket holds min(burst, max(2, rps * kPaceSpan)) tokens, so starts leave
//   evenly and at most rps + 5 ms worth start in any second; the rest of `burst` is kept as slack
//   for arrivals that bunch on the way (new connections, a busy receiver). Measured with
//   bench_daemon (b), 2,000 rps and burst 100, at the sandbox: the full bucket put 2,200-2,294
//   arrivals in a second; paced, 2,069-2,095 at 0.97-0.99 of the rate.
// - Besides the bucket, a sliding window: at most rps + burst starts in any 1s + jitter_guard().
//   The gateway counts arrivals, not our starts; requests that leave late (a stalled loop, a new
//   connection) can bunch up on the way, and the guard keeps the gateway's one-second windows
//   within rps + burst too for up to jitter_guard() of such delay. The guard is
//   min(kMaxJitterGuard, burst / (2 * rps)): rps + burst starts per 1s + guard is then still at
//   least rps + burst / 2 per second, so a backlog always gets the full rate (a fixed 100 ms guard
//   capped 2,000 rps with burst 100 at 1,909/s).
// - A pure function of the times passed in: no clock is read, so tests drive it with FakeClock.
//
// requests_per_second == 0 disables the rate (benchmarks only); max_in_flight <= 0 disables that
// cap. Not thread-safe; the gateway client uses it from its io_context thread.
#pragma once

#include <cstdint>
#include <vector>

#include "core/base/clock.h"
#include "core/gateway/options.h"

namespace payoutd {

class RateLimiter {
 public:
  static constexpr Duration kMaxJitterGuard = std::chrono::milliseconds(100);
  static constexpr Duration kPaceSpan = std::chrono::milliseconds(5);

  RateLimiter(const LimitOptions& options, SteadyTime now);

  // New settings. The bucket restarts empty at `now` (conservative across the change); requests
  // in flight and any pause are kept.
  void Reconfigure(const LimitOptions& options, SteadyTime now);

  // Grants one start at `now` when a token is available, no pause is in force and fewer than
  // max_in_flight are running; the caller must call Finished() once that request completes.
  bool TryStart(SteadyTime now);
  void Finished();

  // The earliest time at which the bucket and the pause allow the next start (<= now: already).
  // Ignores max_in_flight: a start waiting only for a free slot waits for Finished() instead.
  SteadyTime NextStartTime(SteadyTime now) const;

  // Holds every start until `until` (a later pause extends, an earlier one is ignored).
  void PauseUntil(SteadyTime until);
  bool PausedAt(SteadyTime now) const { return now < pause_until_; }

  bool FullyInFlight() const {
    return options_.max_in_flight > 0 && in_flight_ >= options_.max_in_flight;
  }
  int in_flight() const { return in_flight_; }
  // The window's extra span beyond one second (see the guarantees above); 0 when unlimited.
  Duration jitter_guard() const { return guard_; }
  const LimitOptions& options() const { return options_; }

 private:
  void Reset(SteadyTime now);

  LimitOptions options_;
  int64_t interval_ns_ = 0;  // time to earn one token; 0 = unlimited
  int64_t capacity_ = 1;     // tokens the bucket holds: min(max(burst, 1), max(2, rps * kPaceSpan))
  // The time at which the bucket would be full again (GCRA's "theoretical arrival time" shifted
  // by the capacity): tokens(t) = capacity - (full_at_ - t) / interval, capped at capacity.
  SteadyTime full_at_{};
  SteadyTime pause_until_{};
  Duration guard_{};
  // The last rps + burst start times (a ring), for the sliding window; empty when unlimited.
  std::vector<SteadyTime> recent_;
  size_t recent_next_ = 0;  // the oldest entry once the ring is full
  size_t recent_count_ = 0;
  int in_flight_ = 0;
};

}  // namespace payoutd
