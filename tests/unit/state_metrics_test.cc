// The state's metrics (daemon/state_metrics.h) as a scrape shows them.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "daemon/metrics.h"
#include "daemon/state_metrics.h"

namespace payoutd {
namespace {

TEST(StateMetrics, StateMetrics_LeaderCommitsAndErrorsByKindAreRendered) {
  auto metrics = Metrics::Create("", "test");
  ASSERT_TRUE(metrics.ok()) << metrics.error();
  StateMetrics state(*(*metrics)->registry());
  std::string text = (*metrics)->Render();
  // Every kind exists from the start, at 0, and a standby is not the leader.
  for (const char* kind : {"unavailable", "fenced", "lease", "other"}) {
    EXPECT_NE(text.find(std::string("payoutd_state_errors_total{kind=\"") + kind + "\"} 0"),
              std::string::npos)
        << kind << "\n"
        << text;
  }
  EXPECT_NE(text.find("payoutd_leader 0"), std::string::npos) << text;

  state.SetLeader(true);
  state.OnCommit(std::chrono::milliseconds(3), Status::Ok());
  state.OnCommit(std::chrono::milliseconds(7), Status::Unavailable("connection lost"));
  state.OnCommit(std::chrono::milliseconds(1), Status::Aborted("fenced"));
  state.OnError(StateMetrics::Error::kLease);
  text = (*metrics)->Render();
  EXPECT_NE(text.find("payoutd_leader 1"), std::string::npos) << text;
  EXPECT_NE(text.find("payoutd_state_commit_duration_seconds_count 3"), std::string::npos) << text;
  EXPECT_NE(text.find("payoutd_state_errors_total{kind=\"unavailable\"} 1"), std::string::npos);
  EXPECT_NE(text.find("payoutd_state_errors_total{kind=\"fenced\"} 1"), std::string::npos);
  EXPECT_NE(text.find("payoutd_state_errors_total{kind=\"lease\"} 1"), std::string::npos);
  EXPECT_NE(text.find("payoutd_state_errors_total{kind=\"other\"} 0"), std::string::npos);
}

TEST(StateMetrics, StateMetrics_KindFollowsTheStatusCode) {
  EXPECT_EQ(StateMetrics::KindOf(StatusCode::kUnavailable), StateMetrics::Error::kUnavailable);
  EXPECT_EQ(StateMetrics::KindOf(StatusCode::kAborted), StateMetrics::Error::kFenced);
  EXPECT_EQ(StateMetrics::KindOf(StatusCode::kInternal), StateMetrics::Error::kOther);
}

}  // namespace
}  // namespace payoutd
