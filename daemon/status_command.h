// `payoutd status` (docs/cli.md#payoutd-status): what the state says about the batches, read
// only, safe while `payoutd run` runs (on this host or, with PostgreSQL, on another).
//
// Three ways to show it, from one snapshot of the state:
// - text: per batch its status (with approvals, holds, cancellation), counts per state and
//   stage, per-currency totals and the oldest pending payout; above them the gateway's last
//   outage, a hold on every batch, and with PostgreSQL the leader and the standbys;
// - JSON (`--json`): the same as one JSON object on one line, of the shape docs/cli.md gives;
// - watch (`--watch`): the snapshot again every interval with payouts per second and the time
//   left per batch; redrawn in place with a progress bar on a terminal, one plain line per batch
//   and interval otherwise (or one JSON object per interval with --json). Until SIGINT/SIGTERM.
//
// Threading: blocking, for the command line.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/store/payout_store.h"
#include "core/store/pg_lease.h"

namespace payoutd {

struct StatusOptions {
  std::string batch;  // only this batch; empty: every batch
  bool json = false;
  bool watch = false;
  std::chrono::milliseconds interval{1000};  // --watch: between two readings
  bool terminal = false;                     // --watch: the output is a terminal, redraw in place
};

// One batch as status shows it.
struct BatchStatus {
  BatchProgress progress;
  int approvals = 0;  // signatures counted so far (awaiting approval only)
  // --watch only: final payouts per second over the last readings, and the time left at that
  // pace; nullopt when not measured (yet) or nothing moves.
  std::optional<double> per_second;
  std::optional<double> seconds_left;

  int64_t final_count() const;    // payouts in a final state
  int64_t pending_count() const;  // payouts not yet final
};

// Everything one reading of the state shows.
struct StatusSnapshot {
  int64_t now_ms = 0;                         // wall clock of the reading
  std::optional<GatewayOutage> outage;        // going on, or the last one of the past day
  Hold hold_all;                              // a hold on every batch
  std::optional<ServiceInstances> instances;  // PostgreSQL state only
  std::string instances_error;       // why the instances could not be read, if they could not
  std::vector<BatchStatus> batches;  // in the order the store lists them
};

// Reads a snapshot: every batch, or `only` (kNotFound when the state does not hold it).
Result<StatusSnapshot> ReadStatus(PayoutStore& store, const std::string& only, int64_t now_ms);

// The text and JSON forms (JSON: one line, ending with a line break).
std::string FormatStatusText(const StatusSnapshot& s, const CurrencyTable& currencies);
std::string FormatStatusJson(const StatusSnapshot& s, const CurrencyTable& currencies);

// One frame of --watch: on a terminal the whole screen's text (with a progress bar per batch);
// otherwise one line per batch, time-stamped.
std::string FormatWatchFrame(const StatusSnapshot& s, bool terminal,
                             std::chrono::milliseconds interval);

// The pace of each batch over the readings of the last `window`, for --watch.
class PaceMeter {
 public:
  explicit PaceMeter(std::chrono::milliseconds window = std::chrono::seconds(10))
      : window_(window) {}
  // Records the reading and fills in per_second and seconds_left of its batches.
  void Measure(StatusSnapshot& s);

 private:
  struct Reading {
    int64_t at_ms;
    int64_t final_count;
  };
  std::chrono::milliseconds window_;
  std::map<std::string, std::deque<Reading>> readings_;  // by batch id
};

// The command: exit code 0, 1 when the state cannot be read or the batch is unknown.
int RunStatusCommand(const Config& config, const StatusOptions& options, std::ostream& out,
                     std::ostream& err);

}  // namespace payoutd
