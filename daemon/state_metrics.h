// The state's own metrics (docs/operations.md#metrics), next to the daemon's others on the same
// registry (Metrics::registry()), so they are served and rendered with them:
//
// - payoutd_leader: 1 while this instance leads (it holds the lease on a PostgreSQL state, or it
//   runs on SQLite, where the one instance always leads), 0 on a standby. Summed over the
//   instances of a service it is 1; 0 means nobody pays (alert PayoutdNoLeader).
// - payoutd_state_commit_duration_seconds: how long each group commit of the engine took on the
//   store thread (histogram), failed attempts included.
// - payoutd_state_errors_total{kind}: failed state operations by kind: `unavailable` (the
//   database could not be reached; the commit is tried again), `fenced` (another instance took
//   the lease: this one stops), `lease` (a step of the leader's lease failed), `other`.
//   Every kind exists from the start with value 0.
//
// Threading: every method may be called from any thread (prometheus-cpp is thread-safe).
#pragma once

#include <memory>
#include <string_view>

#include "core/base/clock.h"
#include "core/base/status.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
class Registry;
}  // namespace prometheus

namespace payoutd {

class StateMetrics {
 public:
  enum class Error { kUnavailable, kFenced, kLease, kOther };

  // Registers the metrics on `registry`, which must outlive this object.
  explicit StateMetrics(prometheus::Registry& registry);
  StateMetrics(const StateMetrics&) = delete;
  StateMetrics& operator=(const StateMetrics&) = delete;

  void SetLeader(bool leader);
  // A group commit: its duration; a failure counts as an error of the Status code's kind.
  void OnCommit(Duration took, const Status& written);
  void OnError(Error kind);
  // The kind of a failed state operation by its Status code (kUnavailable, kAborted = fenced).
  static Error KindOf(StatusCode code);

 private:
  prometheus::Gauge* leader_ = nullptr;
  prometheus::Histogram* commit_duration_ = nullptr;
  prometheus::Family<prometheus::Counter>* errors_ = nullptr;
};

}  // namespace payoutd
