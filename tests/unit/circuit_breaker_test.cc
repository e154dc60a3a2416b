// The rule that tells a gateway outage from a payout's own failures
// (core/gateway/circuit_breaker.h).
#include "core/gateway/circuit_breaker.h"

#include <gtest/gtest.h>

namespace payoutd {
namespace {

using O = CircuitBreaker::Outcome;

struct Feed {
  CircuitBreaker breaker;
  FakeClock clock;
  // Records one outcome; true when it opened the circuit.
  bool operator()(const std::string& id, O outcome, const std::string& cause = "HTTP 503") {
    clock.Advance(std::chrono::milliseconds(10));
    return breaker.Record(clock.Now(), clock.WallNow(), id, outcome, cause);
  }
};

TEST(CircuitBreaker, FiveServerFailuresAcrossPayoutsInARowOpenIt) {
  Feed f;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(f("P-" + std::to_string(i), O::kServerFailure));
  EXPECT_FALSE(f.breaker.open());
  EXPECT_TRUE(f("P-4", O::kServerFailure, "HTTP 502"));
  EXPECT_TRUE(f.breaker.open());
  EXPECT_EQ(f.breaker.cause(), "HTTP 502") << "the failure that opened it";
  EXPECT_EQ(f.breaker.opened_at(), f.clock.WallNow());
  EXPECT_FALSE(f("P-5", O::kServerFailure)) << "already open: not opened again";
}

TEST(CircuitBreaker, AHealthyAnswerInTheRunStartsTheCountAgain) {
  Feed f;
  for (int i = 0; i < 4; ++i) f("P-" + std::to_string(i), O::kServerFailure);
  f("P-9", O::kHealthy);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(f("Q-" + std::to_string(i), O::kServerFailure));
  EXPECT_TRUE(f("Q-4", O::kServerFailure));
}

TEST(CircuitBreaker, OnePayoutsOwnServerFailuresNeverOpenIt) {
  Feed f;
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(f("P-1", O::kServerFailure));
  EXPECT_FALSE(f.breaker.open()) << "a gateway that fails one payout's requests is not down";
}

TEST(CircuitBreaker, TransportFailuresOpenItEvenForOnePayout) {
  Feed f;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(f("P-1", O::kTransportFailure, "Connection refused"));
  EXPECT_TRUE(f("P-1", O::kTransportFailure, "Connection refused"))
      << "a connection cannot be refused because of the payout it would have carried";
}

TEST(CircuitBreaker, TheFirstHealthyAnswerClosesItAndForgetsTheProbes) {
  Feed f;
  for (int i = 0; i < 5; ++i) f("P-" + std::to_string(i), O::kTransportFailure);
  ASSERT_TRUE(f.breaker.open());
  f.breaker.ProbeFailed();
  f.breaker.ProbeFailed();
  EXPECT_EQ(f.breaker.probes(), 2);
  f("P-0", O::kHealthy);
  EXPECT_FALSE(f.breaker.open());
  EXPECT_EQ(f.breaker.probes(), 0);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(f("P-" + std::to_string(i), O::kTransportFailure));
}

TEST(CircuitBreaker, OpenSinceRestoresAnOutageWithItsStartAndCause) {
  Feed f;
  const WallTime since = f.clock.WallNow() - std::chrono::minutes(7);
  f.breaker.OpenSince(f.clock.Now(), since, "HTTP 503");
  EXPECT_TRUE(f.breaker.open());
  EXPECT_EQ(f.breaker.opened_at(), since);
  EXPECT_EQ(f.breaker.cause(), "HTTP 503");
  f("P-1", O::kHealthy);
  EXPECT_FALSE(f.breaker.open());
}

}  // namespace
}  // namespace payoutd
