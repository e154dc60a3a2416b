// What the payout engine (core/engine/payout_engine.h) is told: how it polls (the configuration's
// `polling` section, docs/configuration.md#polling, reloaded on SIGHUP) and how much it keeps in
// flight. Apart from the engine so that the configuration can hold these very structs without
// the engine's dependencies.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "core/base/clock.h"

namespace payoutd {

struct PollingPolicy {
  Duration initial_delay = std::chrono::seconds(2);
  Duration max_interval = std::chrono::seconds(60);
  Duration give_up_after = std::chrono::hours(72);
  std::vector<std::string> final_statuses{"SUCCESS", "FAILED", "REJECTED", "CANCELLED", "EXPIRED"};
  std::vector<std::string> success_statuses{"SUCCESS"};
  // Statuses known to be non-final; anything neither final nor here is counted as unknown.
  std::vector<std::string> pending_statuses{"CREATED", "PENDING", "PROCESSING"};
};

struct EngineOptions {
  PollingPolicy polling;
  size_t submit_window = 128;
  size_t poll_window = 128;
  Duration commit_interval = std::chrono::milliseconds(10);
  // Changes waiting for the store (pending plus the commit under way) past which no new submission
  // or poll starts: memory stays bounded when the disk falls behind (about 300 bytes each).
  size_t max_uncommitted = 50000;
  // A payout of a cancelled batch whose POST may have left (stage kUnknown) is never sent again;
  // once the gateway has said "no such payout" for this long (longer than any request of ours can
  // still be on its way: the daemon passes twice gateway.timeout), it ends ERROR, never paid.
  Duration cancelled_unknown_settle = std::chrono::seconds(60);
  // The longest wait between two attempts at a group commit the store could not take
  // (kUnavailable: the database connection broke).
  Duration store_retry_max = std::chrono::seconds(2);
  // Whether such a commit is tried again (a shared PostgreSQL state, which comes back after a
  // restart or a failover) or stops the engine (SQLite: a local disk that fails).
  bool retry_unavailable_commits = false;
};

}  // namespace payoutd
