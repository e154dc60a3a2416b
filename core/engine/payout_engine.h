// The pipeline that moves every payout of every accepted batch to a final state:
// submit (POST) -> poll (GET) on a schedule -> final, with all progress kept in the PayoutStore.
//
// Guarantees:
// - Works from the store alone: Start() resumes every batch not yet finished, so recovery after a
//   crash is the same code as a normal start. Payouts found at kSubmitting are moved to kUnknown
//   and resolved with GET before any re-send.
// - Memory and requests are bounded: at most `submit_window` submissions and `poll_window` polls
// are
//   handed to the gateway client at once, and only those payouts are held in memory; the rest wait
//   in the store. Active batches share the submission window round-robin, so a small batch is not
//   stuck behind a large one; polls and submissions have separate windows and neither starves.
// - Group commit: state changes are written in one transaction per pump cycle (commit_interval).
//   A final state is committed before the batch can be reported (on_batch_finished runs after the
//   commit that made the last payout final and after the batch is marked kFinished).
// - With a StoreThread, commits run there (one at a time, in order) and the network loop never
//   waits for an fsync; changes made meanwhile form the next group. A payout with changes not yet
//   committed is not read back from the store (its stored row is stale) until they are. When the
//   store falls behind by max_uncommitted changes, no new work starts until it catches up.
// - With retry_unavailable_commits, losing the store (a commit through the StoreThread fails
//   with kUnavailable: the PostgreSQL connection broke) stops nothing for good: the group stays
//   in memory, whole and in order, no new submission or poll starts (store_down() is true),
//   answers of calls already out are kept with it (bounded by the windows and max_uncommitted),
//   and the group is tried again with a backoff (100ms doubling to store_retry_max) until it is
//   durable; then work resumes. A step of the group that was durable before the failure is not
//   written again. Any other commit failure (kAborted: this instance's writes are fenced off; a
//   full disk; anything on SQLite) stops the engine (OnStoreError).
//
// - Operator control (docs/operator-control.md): a held batch (or all, with HoldAll) starts no new
//   POST, its queued submissions are taken back from the client at once, and its polls go on; a
//   cancelled batch starts no POST ever again, and its never-sent payouts become CANCELLED in the
//   same group commit as whatever was pending. Each change is durable (with its audit entry)
//   before its `done` runs, and in force (nothing more starts) from the moment it is called.
// - A gateway outage (the client's circuit open) is durable: each opening and closing is committed
//   with the next group, a restart during one starts with the circuit open, and the time the
//   circuit was open does not count towards polling.give_up_after.
//
// Threading: everything runs on the io_context's thread; `store` is read there (and written there
// when there is no StoreThread, and by Start()'s recovery). Timers and time come from `clock`.
// Every method must be called on that thread (asserted in debug and sanitizer builds).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "core/base/clock.h"
#include "core/base/liveness.h"
#include "core/base/thread_checker.h"
#include "core/batch/payout.h"
#include "core/engine/options.h"
#include "core/gateway/gateway_client.h"
#include "core/store/payout_store.h"
#include "core/store/store_thread.h"

namespace payoutd {

// Told what happens, for metrics, logs and sd_notify STATUS. Called on the io_context thread.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // A payout's final state was committed.
  virtual void OnFinal(const PayoutRow& /*row*/) {}
  // The gateway reported a status in neither the final nor the pending list.
  virtual void OnUnknownStatus(const std::string& /*status*/) {}
  // Every payout of the batch is final and committed; the batch is kFinished.
  virtual void OnBatchFinished(const std::string& /*batch_id*/) {}
  // A commit of the store failed for good; the engine stops (the daemon should exit non-zero).
  virtual void OnStoreError(const std::string& /*message*/) {}
  // Every group commit through the StoreThread, with how long the store took and how it ended
  // (for metrics); a kUnavailable one is tried again.
  virtual void OnCommit(Duration /*took*/, const Status& /*written*/) {}
};

class PayoutEngine {
 public:
  // `store`, `client`, `clock`, `observer` (may be null) and `writer` (may be null) are borrowed
  // and must outlive the engine. `writer`, when given, commits the engine's changes on its thread.
  PayoutEngine(boost::asio::io_context& io, PayoutStore& store, GatewayClient& client, Clock& clock,
               EngineOptions options, EngineObserver* observer, StoreThread* writer = nullptr);
  ~PayoutEngine();
  PayoutEngine(const PayoutEngine&) = delete;
  PayoutEngine& operator=(const PayoutEngine&) = delete;

  // Resumes every active batch in the store. Call once, before anything else writes to the store:
  // the recovery of payouts cut off mid-POST is committed through `store` itself, at once.
  Status Start();
  // A batch just recorded by PayoutStore::CreateBatch: start on it.
  void AddBatch(const std::string& batch_id);
  // A hint (callback) that this payout may have changed: poll it as soon as it is waiting for a
  // poll (at once, or right after its submission is answered). The hint never sets a status by
  // itself. Returns false when the id is not a payout of ours.
  bool Nudge(const std::string& payout_id);
  void Reconfigure(const PollingPolicy& polling);

  // Holds (hold.held()) or resumes one batch, known to the store (active or not yet). The audit
  // entry is recorded with it. `done` runs once both are durable.
  void HoldBatch(const std::string& batch_id, const Hold& hold, const AuditEntry& audit,
                 std::function<void(Status)> done);
  // The same for every batch, present and future; `audit` goes to each batch listed. Resuming all
  // also resumes the batches held one by one.
  void HoldAll(const Hold& hold, std::vector<std::pair<std::string, AuditEntry>> audit,
               std::function<void(Status)> done);
  // Cancels an active batch: its never-sent payouts become final CANCELLED with `error`, those
  // already sent go on; nothing of it is ever POSTed again. `done` runs once that is durable.
  void CancelBatch(const std::string& batch_id, std::string error, const AuditEntry& audit,
                   std::function<void(Result<CancelOutcome>)> done);
  bool IsActive(const std::string& batch_id) const { return batches_.count(batch_id) != 0; }

  // Stops taking new work: no new submission or poll starts; calls already with the client finish.
  // `done` runs once nothing is outstanding and every change is committed.
  void Drain(std::function<void()> done);

  // Counts for metrics: payouts held in memory by stage, and the active batches.
  struct Snapshot {
    size_t active_batches = 0;
    size_t submitting = 0;
    size_t polling = 0;
    size_t uncommitted = 0;
  };
  Snapshot snapshot() const;
  bool draining() const { return draining_; }
  // True from a commit that failed with kUnavailable until a commit succeeds again: start no
  // gateway request meanwhile (the daemon's send gate asks).
  bool store_down() const { return store_down_; }

 private:
  struct Cursor {
    std::string batch_id;
    uint32_t last_line = 0;       // highest line loaded at kNew
    std::deque<PayoutRow> ready;  // kNew rows loaded and not yet submitted
    bool exhausted = false;       // no kNew rows left after last_line
    int64_t remaining = 0;        // payouts not final (committed or pending)
    bool cancelled = false;       // never submit again
  };

  // An operator's change waiting for the next group commit, with whom to tell once it is durable.
  struct ControlChange {
    std::vector<std::pair<std::string, Hold>> holds;  // batch -> hold (or resume)
    std::optional<Hold> hold_all;
    std::vector<std::pair<std::string, AuditEntry>> audit;  // batch -> entry
    std::string cancel_batch;                               // empty: no cancel
    std::string cancel_error;
    std::function<void(Status)> done;
    std::function<void(Result<CancelOutcome>)> cancel_done;
    CancelOutcome cancel_outcome;  // filled by the writer
  };

  // One group of changes on its way to the store.
  // A submission recorded (kSubmitting) but not yet handed to the client. It waits for the group
  // commit that holds its record: a crash can then never find a POST that left while its payout
  // still read "new" in the store, and the restart asks with GET before any re-send.
  struct HeldSubmission {
    std::string batch_id;
    Payout payout;
    std::function<void(SubmitResult)> on_submitted;
  };
  struct CommitJob {
    std::vector<PayoutUpdate> updates;
    // Handed to the client once this group is durable (or ended as kCancelled).
    mutable std::vector<HeldSubmission> submissions;
    std::vector<PayoutRow> finals;        // for the observer, once committed
    std::vector<std::string> finished;    // batches whose last payout is final in this group
    std::vector<GatewayOutage> outages;   // circuit openings and closings
    std::vector<ControlChange> controls;  // after the updates: holds, cancels, their audit
    int64_t now_ms = 0;
    // Written by the writer, read once its completion runs: the steps of WriteCommit that are
    // durable (a retry goes on from the next), and how long the last attempt took.
    size_t steps_done = 0;
    Duration took{};
  };

  void SchedulePump();
  void ScheduleAt(SteadyTime at);
  void Pump();
  // Commits what is pending: at once without a writer (false on a store error), else hands it to
  // the writer unless a commit is already under way (then it goes with the next one).
  bool Commit();
  void PostCommit(std::shared_ptr<CommitJob> job);
  void RetryCommitLater(std::shared_ptr<CommitJob> job, const Status& why);
  std::shared_ptr<CommitJob> TakeCommitJob();
  static Status WriteCommit(PayoutStore& store, CommitJob& job);
  void QueueControl(ControlChange change);
  bool MaySubmit(const std::string& batch_id) const;
  bool IsCancelled(const std::string& batch_id) const;
  void WithdrawSubmissions(const std::function<bool(const std::string& batch_id)>& which);
  bool FinishCommit(const CommitJob& job, const Status& written);
  // Hands a submission whose record is durable to the client, or ends it as kCancelled (stopped,
  // draining, or its batch held or cancelled meanwhile).
  void Release(HeldSubmission& s);
  bool Settled(const std::string& payout_id) const {
    return !busy_.count(payout_id) && !unsettled_.count(payout_id);
  }
  void FillPolls();
  void FillSubmissions();
  bool NextReady(Cursor& c, PayoutRow* out);
  void StartSubmit(PayoutRow row);
  void StartPoll(PayoutRow row);
  void OnSubmitted(PayoutRow row, const SubmitResult& r);
  void OnPolled(PayoutRow row, const PollResult& r);
  void ApplyGatewayView(PayoutRow& row, const GatewayPayout& view);
  void Finalize(PayoutRow& row, FinalState state, std::string error);
  void ScheduleNextPoll(PayoutRow& row, Stage stage);
  void Record(const PayoutRow& row);
  void OnCircuit(const CircuitEvent& event);
  // How much of [from_ms, to_ms] the gateway circuit was open.
  int64_t OutageMs(int64_t from_ms, int64_t to_ms) const;
  void CheckDrained();
  int64_t NowMs() const;
  bool IsFinalStatus(const std::string& s) const;
  bool IsSuccessStatus(const std::string& s) const;
  bool IsPendingStatus(const std::string& s) const;

  boost::asio::io_context& io_;
  PayoutStore& store_;
  GatewayClient& client_;
  Clock& clock_;
  EngineOptions options_;
  EngineObserver* observer_;

  std::map<std::string, Cursor> batches_;  // active batches by id
  std::string rr_next_;                    // round-robin position among batches_
  StoreThread* writer_;
  std::unordered_set<std::string> busy_;                     // payout ids with a call at the client
  std::unordered_map<std::string, std::string> submitting_;  // payout id -> batch, while submitted
  std::vector<HeldSubmission> unrecorded_;  // recorded since the last group was taken
  std::unordered_set<std::string> holds_;   // batches held one by one (any status)
  // Payouts of cancelled batches in kUnknown: when the gateway first said it has no such payout.
  std::unordered_map<std::string, SteadyTime> not_found_since_;
  bool hold_all_ = false;
  std::vector<ControlChange> pending_controls_;     // waiting for the next group commit
  std::unordered_map<std::string, int> unsettled_;  // ids with changes not yet committed: how many
  std::vector<PayoutUpdate> pending_;               // uncommitted changes
  std::vector<PayoutRow> pending_finals_;           // finals in pending_, for the observer
  std::map<std::string, int64_t> pending_final_count_;  // per batch, finals in pending_
  std::unordered_set<std::string> nudged_;              // ids to poll at once
  std::vector<GatewayOutage> outages_;                  // recent and ongoing, oldest first
  std::vector<GatewayOutage> pending_outages_;          // changes to them, not yet committed
  size_t submits_out_ = 0;
  size_t polls_out_ = 0;
  DuePosition due_from_;                  // where the sweep of due rows goes on
  SteadyTime sweep_started_{};            // when the current sweep began at the start
  bool commit_in_flight_ = false;         // a CommitJob is with the writer
  std::shared_ptr<CommitJob> retry_job_;  // a group the store did not take: goes first
  SteadyTime retry_at_{};                 // when to try it again
  Duration retry_backoff_{};              // the last wait; zero while the store is up
  bool store_down_ = false;               // see store_down()
  size_t committing_ = 0;                 // its size, for snapshot()
  bool pump_scheduled_ = false;
  bool stopped_ = false;  // after a store error
  bool draining_ = false;
  std::function<void()> drained_;
  SteadyTime last_pump_{};
  SteadyTime wake_at_{};
  std::unique_ptr<Timer> timer_;
  ThreadChecker io_thread_;  // binds to the io thread at the first call
  Liveness alive_;           // last: handlers check it before they touch anything else
};

}  // namespace payoutd
