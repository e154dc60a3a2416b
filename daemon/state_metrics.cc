#include "daemon/state_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <string>

namespace payoutd {
namespace {

// From a local SQLite fsync or a PostgreSQL round trip on the same rack, to a commit that waits
// for a database failing over.
const prometheus::Histogram::BucketBoundaries kCommitBuckets{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

constexpr StateMetrics::Error kErrors[] = {
    StateMetrics::Error::kUnavailable, StateMetrics::Error::kFenced, StateMetrics::Error::kLease,
    StateMetrics::Error::kOther};

std::string ErrorName(StateMetrics::Error kind) {
  switch (kind) {
    case StateMetrics::Error::kUnavailable: return "unavailable";
    case StateMetrics::Error::kFenced: return "fenced";
    case StateMetrics::Error::kLease: return "lease";
    case StateMetrics::Error::kOther: return "other";
  }
  return "other";
}

}  // namespace

StateMetrics::StateMetrics(prometheus::Registry& registry) {
  leader_ = &prometheus::BuildGauge()
                 .Name("payoutd_leader")
                 .Help(
                     "1 while this instance leads (holds the lease; always on SQLite), "
                     "0 on a standby.")
                 .Register(registry)
                 .Add({});
  commit_duration_ = &prometheus::BuildHistogram()
                          .Name("payoutd_state_commit_duration_seconds")
                          .Help("Duration of the engine's group commits to the state, in seconds.")
                          .Register(registry)
                          .Add({}, kCommitBuckets);
  errors_ = &prometheus::BuildCounter()
                 .Name("payoutd_state_errors_total")
                 .Help("Failed state operations by kind: unavailable, fenced, lease, other.")
                 .Register(registry);
  for (Error kind : kErrors) errors_->Add({{"kind", ErrorName(kind)}});
}

void StateMetrics::SetLeader(bool leader) {
  leader_->Set(leader ? 1 : 0);
}

void StateMetrics::OnCommit(Duration took, const Status& written) {
  commit_duration_->Observe(std::chrono::duration<double>(took).count());
  if (!written.ok()) OnError(KindOf(written.code()));
}

void StateMetrics::OnError(Error kind) {
  errors_->Add({{"kind", ErrorName(kind)}}).Increment();
}

StateMetrics::Error StateMetrics::KindOf(StatusCode code) {
  switch (code) {
    case StatusCode::kUnavailable: return Error::kUnavailable;
    case StatusCode::kAborted: return Error::kFenced;
    default: return Error::kOther;
  }
}

}  // namespace payoutd
