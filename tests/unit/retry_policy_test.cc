#include "core/gateway/retry_policy.h"

#include <gtest/gtest.h>

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

RetryOptions Options(int attempts, Duration initial, Duration max) {
  RetryOptions o;
  o.max_attempts = attempts;
  o.initial_backoff = initial;
  o.max_backoff = max;
  return o;
}

// A Random that always answers the largest (or smallest) value, to pin the jitter's ends.
class ExtremeRandom final : public Random {
 public:
  explicit ExtremeRandom(bool high) : high_(high) {}
  uint64_t Below(uint64_t n) override { return high_ ? n - 1 : 0; }
  uint64_t Next64() override { return high_ ? ~0ull : 0; }

 private:
  bool high_;
};

TEST(RetryPolicy, CeilingDoublesFromInitialUntilCapped) {
  RetryPolicy policy(Options(8, milliseconds(500), seconds(60)));
  EXPECT_EQ(policy.Ceiling(1), milliseconds(500));
  EXPECT_EQ(policy.Ceiling(2), seconds(1));
  EXPECT_EQ(policy.Ceiling(3), seconds(2));
  EXPECT_EQ(policy.Ceiling(7), seconds(32));
  EXPECT_EQ(policy.Ceiling(8), seconds(60));
  EXPECT_EQ(policy.Ceiling(9), seconds(60));
  EXPECT_EQ(policy.Ceiling(10'000), seconds(60));  // no overflow far out
}

TEST(RetryPolicy, FullJitterSpansZeroToCeiling) {
  RetryPolicy policy(Options(8, milliseconds(500), seconds(60)));
  ExtremeRandom high(true), low(false);
  EXPECT_EQ(policy.Backoff(3, high), seconds(2));
  EXPECT_EQ(policy.Backoff(3, low), Duration::zero());
}

TEST(RetryPolicy, JitteredScheduleStaysUnderCeilingAndIsSpread) {
  RetryPolicy policy(Options(8, milliseconds(100), seconds(5)));
  SystemRandom random(7);
  for (int retry = 1; retry <= 12; ++retry) {
    Duration lo = Duration::max(), hi = Duration::zero();
    for (int i = 0; i < 200; ++i) {
      const Duration d = policy.Backoff(retry, random);
      ASSERT_GE(d, Duration::zero());
      ASSERT_LE(d, policy.Ceiling(retry));
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // Full jitter: the draws cover most of [0, ceiling].
    EXPECT_LT(lo, policy.Ceiling(retry) / 4) << "retry " << retry;
    EXPECT_GT(hi, policy.Ceiling(retry) * 3 / 4) << "retry " << retry;
  }
}

TEST(RetryPolicy, SameSeedGivesTheSameSchedule) {
  RetryPolicy policy(Options(8, milliseconds(500), seconds(60)));
  SystemRandom a(99), b(99);
  for (int retry = 1; retry <= 8; ++retry)
    EXPECT_EQ(policy.Backoff(retry, a), policy.Backoff(retry, b));
}

TEST(RetryPolicy, MayRetryUntilMaxAttempts) {
  RetryPolicy policy(Options(3, milliseconds(1), milliseconds(2)));
  EXPECT_TRUE(policy.MayRetry(1));
  EXPECT_TRUE(policy.MayRetry(2));
  EXPECT_FALSE(policy.MayRetry(3));
}

TEST(RetryAfter, ParsesDelaySeconds) {
  const WallTime now = std::chrono::system_clock::from_time_t(1'790'000'000);
  EXPECT_EQ(ParseRetryAfter("7", now), seconds(7));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), seconds(0));
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", now), std::chrono::hours(1));
}

TEST(RetryAfter, ParsesHttpDateInAllThreeForms) {
  // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
  const WallTime now = std::chrono::system_clock::from_time_t(784'111'777 - 30);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), seconds(30));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now), seconds(30));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:49:37 1994", now), seconds(30));
}

TEST(RetryAfter, PastDateMeansNoWaitAndFarDateIsCapped) {
  const WallTime now = std::chrono::system_clock::from_time_t(784'111'777 + 100);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), Duration::zero());
  const WallTime long_before = std::chrono::system_clock::from_time_t(784'111'777 - 86400);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", long_before), std::chrono::hours(1));
}

TEST(RetryAfter, GarbageIsNotAWait) {
  const WallTime now = std::chrono::system_clock::from_time_t(1'790'000'000);
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5", now), std::nullopt);
}

TEST(Classify, FollowsTheSpecTable) {
  EXPECT_EQ(Classify(Method::kPost, 200, true), Verdict::kOk);
  EXPECT_EQ(Classify(Method::kPost, 201, true), Verdict::kOk);
  EXPECT_EQ(Classify(Method::kPost, 409, true), Verdict::kExists);
  EXPECT_EQ(Classify(Method::kPost, 400, true), Verdict::kRejected);
  EXPECT_EQ(Classify(Method::kPost, 422, true), Verdict::kRejected);
  EXPECT_EQ(Classify(Method::kPost, 401, true), Verdict::kAuth);
  EXPECT_EQ(Classify(Method::kGet, 403, true), Verdict::kAuth);
  EXPECT_EQ(Classify(Method::kGet, 404, true), Verdict::kNotFound);
  EXPECT_EQ(Classify(Method::kPost, 429, true), Verdict::kThrottled);
  EXPECT_EQ(Classify(Method::kPost, 500, true), Verdict::kAmbiguous);
  EXPECT_EQ(Classify(Method::kPost, 503, true), Verdict::kAmbiguous);
  EXPECT_EQ(Classify(Method::kPost, 0, true), Verdict::kAmbiguous);  // timeout/reset after sending
  EXPECT_EQ(Classify(Method::kPost, 0, false), Verdict::kNotSent);   // connection refused
  EXPECT_EQ(Classify(Method::kPost, 404, true), Verdict::kUnexpected);
  EXPECT_EQ(Classify(Method::kGet, 400, true), Verdict::kUnexpected);
  EXPECT_EQ(Classify(Method::kPost, 202, true), Verdict::kAmbiguous);
}

// Found by fuzz_payout_json: a date past 2262 overflowed the nanosecond clock (undefined
// behaviour) and the wait was whatever the wrapped value clamped to.
TEST(RetryAfter, ADateCenturiesAheadWaitsTheOneHourCap) {
  const WallTime now = std::chrono::system_clock::from_time_t(1'790'000'000);
  EXPECT_EQ(ParseRetryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now), std::chrono::hours(1));
  EXPECT_EQ(ParseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", now), Duration::zero());
}

TEST(Classify, RetryReasonsAreTheMetricLabels) {
  EXPECT_EQ(RetryReason(Verdict::kAmbiguous, 502, false), "5xx");
  EXPECT_EQ(RetryReason(Verdict::kAmbiguous, 0, true), "timeout");
  EXPECT_EQ(RetryReason(Verdict::kAmbiguous, 0, false), "network");
  EXPECT_EQ(RetryReason(Verdict::kNotSent, 0, false), "network");
  EXPECT_EQ(RetryReason(Verdict::kThrottled, 429, false), "throttled");
  EXPECT_EQ(RetryReason(Verdict::kAuth, 401, false), "auth");
}

}  // namespace
}  // namespace payoutd
