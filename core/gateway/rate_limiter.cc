#include "core/gateway/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "core/base/status.h"

namespace payoutd {

RateLimiter::RateLimiter(const LimitOptions& options, SteadyTime now) : options_(options) {
  Reset(now);
}

void RateLimiter::Reconfigure(const LimitOptions& options, SteadyTime now) {
  // Keep the recent starts: the window spans the change.
  std::vector<SteadyTime> starts;
  for (size_t i = 0; i < recent_count_; ++i)
    starts.push_back(recent_[(recent_next_ + recent_.size() - recent_count_ + i) % recent_.size()]);
  options_ = options;
  Reset(now);
  if (recent_.empty()) return;
  const size_t keep = std::min(starts.size(), recent_.size());
  for (size_t i = starts.size() - keep; i < starts.size(); ++i) {
    recent_[recent_next_] = starts[i];
    recent_next_ = (recent_next_ + 1) % recent_.size();
    recent_count_ = std::min(recent_count_ + 1, recent_.size());
  }
}

void RateLimiter::Reset(SteadyTime now) {
  if (options_.requests_per_second > 0) {
    // Round the interval up: the granted rate never exceeds the configured one.
    interval_ns_ = static_cast<int64_t>(std::ceil(1e9 / options_.requests_per_second));
    interval_ns_ = std::max<int64_t>(interval_ns_, 1);
  } else {
    interval_ns_ = 0;
  }
  capacity_ = std::max(options_.burst, 1);
  if (options_.requests_per_second > 0) {
    const double paced =
        std::ceil(options_.requests_per_second * std::chrono::duration<double>(kPaceSpan).count());
    // At least two: a wake-up a little late (timer slack, a busy loop) still finds the next token.
    capacity_ = std::min<int64_t>(capacity_, static_cast<int64_t>(std::max(2.0, paced)));
  }
  recent_.clear();
  recent_next_ = 0;
  recent_count_ = 0;
  guard_ = Duration::zero();
  if (interval_ns_ > 0) {
    // burst / (2 * rps) seconds, capped: the window never costs the backlog its rate.
    const auto half_burst = std::chrono::nanoseconds(static_cast<int64_t>(
        std::floor(options_.burst * 1e9 / (2 * options_.requests_per_second))));
    guard_ = std::min<Duration>(kMaxJitterGuard, std::chrono::duration_cast<Duration>(half_burst));
    const double window = std::floor(options_.requests_per_second) + options_.burst;
    recent_.assign(static_cast<size_t>(std::clamp(window, 1.0, 1e6)), SteadyTime{});
  }
  // Empty: the bucket is full again only after capacity_ intervals.
  full_at_ = now + std::chrono::nanoseconds(capacity_ * interval_ns_);
}

SteadyTime RateLimiter::NextStartTime(SteadyTime now) const {
  SteadyTime t = now;
  if (interval_ns_ > 0) {
    // One token is available once full_at_ - t <= (capacity - 1) * interval.
    t = std::max(t, full_at_ - std::chrono::nanoseconds((capacity_ - 1) * interval_ns_));
    // The window: the start that many starts ago must be more than 1s + guard in the past.
    if (recent_count_ == recent_.size())
      t = std::max(t, recent_[recent_next_] + std::chrono::seconds(1) + guard_);
  }
  return std::max(t, pause_until_);
}

bool RateLimiter::TryStart(SteadyTime now) {
  if (FullyInFlight()) return false;
  if (NextStartTime(now) > now) return false;
  if (interval_ns_ > 0) {
    full_at_ = std::max(full_at_, now) + std::chrono::nanoseconds(interval_ns_);
    recent_[recent_next_] = now;
    recent_next_ = (recent_next_ + 1) % recent_.size();
    recent_count_ = std::min(recent_count_ + 1, recent_.size());
  }
  ++in_flight_;
  return true;
}

void RateLimiter::Finished() {
  PAYOUTD_CHECK(in_flight_ > 0);
  --in_flight_;
}

void RateLimiter::PauseUntil(SteadyTime until) {
  pause_until_ = std::max(pause_until_, until);
}

}  // namespace payoutd
