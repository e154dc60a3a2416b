// Durable state: batches and their payouts, behind this one interface. Two implementations keep
// the same promises: SQLite, one file in WAL mode for one host (sqlite_store.cc), and PostgreSQL,
// shared by several hosts (pg_store.h); open_store.h opens the one the configuration names. The
// caller owns the PayoutStore it opens; a store owns its connection and nothing else.
//
// What is durable before what (the daemon relies on this order):
// 1. A batch and all its payouts (stage kNew) are committed in one transaction by CreateBatch()
//    before the batch file leaves inbox/ — so a claimed batch is never half-known.
// 2. A payout's final state is committed (Apply) before any report shows it; a batch is marked
//    kFinished only when every payout is final, and kReported only after its report files and the
//    input are in done/.
// 3. Intermediate stages (kSubmitting, kPolling, attempts, next_at) may be written late, in groups:
//    losing them in a crash is safe because a payout id is bound to one body, a re-POST answers
//    409, and a restart treats kNew/kSubmitting/kUnknown payouts conservatively (GET before
//    re-send).
//
// Errors (Status codes): kAlreadyExists when CreateBatch meets a batch id, content or payout id
// seen before; kNotFound for a batch or payout id the store does not hold; kFailedPrecondition for
// a file this payoutd cannot use (no schema, another schema version, no WAL); kUnavailable when
// SQLite or the disk fails in a way a retry may cure (busy, I/O, full); kInternal for the rest
// (corruption, a total that overflows).
//
// Threading: one PayoutStore is used from one thread at a time. Several processes may open the
// same file (`payoutd status` reads while `payoutd run` writes).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "core/batch/batch.h"
#include "core/batch/payout.h"

namespace payoutd {

// An operator's hold on sending (docs/operator-control.md); at_ms 0: not held.
struct Hold {
  int64_t at_ms = 0;
  std::string by;  // "alice (uid 1001)"
  std::string reason;
  bool held() const { return at_ms != 0; }
};

struct BatchRecord {
  // Life of a batch; the allowed moves are BatchRecord::MayMove's:
  //   kAwaitingApproval -> kActive (enough signatures) | kRejected (expired, or cancelled)
  //   kActive -> kFinished (every payout final) -> kReported (reports and input in done/)
  //   kRejected -> kReported (input and reasons in rejected/)
  enum class Status : int {
    kActive = 0,
    kFinished = 1,
    kReported = 2,
    kAwaitingApproval = 3,
    kRejected = 4
  };
  static bool MayMove(Status from, Status to);
  std::string id;
  std::string sha256;     // hex, of the file's bytes
  std::string file_name;  // name in the spool (e.g. "payroll-2026-11.csv")
  int64_t rows = 0;
  Status status = Status::kActive;
  int64_t started_at_ms = 0;    // wall clock, ms since epoch: when the batch was accepted
  int64_t finished_at_ms = 0;   // 0 until kFinished
  int approvals_required = 0;   // distinct signers it needs before it is paid (docs/approvals.md)
  Hold hold;                    // an operator's hold on this batch
  int64_t cancelled_at_ms = 0;  // when an operator cancelled it; 0 = not cancelled
};

// A signature that counted for a batch (one per principal).
struct Approval {
  std::string principal;
  std::string key_fingerprint;  // "SHA256:..."
  std::string file;             // the signature file's name in approval/
  int64_t at_ms = 0;
};

// One line of a batch's audit trail (summary.json "audit", docs/operator-control.md).
struct AuditEntry {
  int64_t at_ms = 0;
  std::string action;  // approve, approval.invalid, hold, resume, cancel, expire
  std::string by;      // "alice (uid 1001)", a principal, or "payoutd"
  std::string reason;
};

// What cancelling a batch's unsent payouts came to.
struct CancelOutcome {
  int64_t cancelled = 0;      // payouts never sent, now final CANCELLED
  int64_t still_running = 0;  // payouts sent and not yet final: they finish as usual
  bool all_final = false;     // nothing left to wait for
};

// Where a payout is on its way to a final state: everything about it that changes after
// CreateBatch. The engine changes it; Apply() writes it whole.
struct PayoutProgress {
  Stage stage = Stage::kNew;
  FinalState state = FinalState::kNone;  // set when stage == kFinal
  int attempts = 0;                      // POST requests sent so far
  int64_t next_at_ms = 0;                // when the next action (poll or re-check) is due; wall ms
  int64_t since_ms = 0;                  // when it was first submitted (give_up_after counts from
                                         // here); 0 = not yet
  std::string gateway_status;            // last process.status seen
  bool has_fee = false;
  int64_t fee_minor = 0;
  std::string fee_currency;
  std::string processed_at;
  std::string error;  // last error / reason for REJECTED or ERROR
};

// A payout with its durable progress.
struct PayoutRow {
  std::string batch_id;
  Payout payout;
  PayoutProgress progress;
};

// The new progress of the payout `id`, for Apply().
struct PayoutUpdate {
  std::string id;
  PayoutProgress progress;
};

// A place in the order LoadDue reads rows in. The default is before every row.
struct DuePosition {
  int64_t next_at_ms = INT64_MIN;
  int64_t row = INT64_MIN;  // the row's storage key: ties on next_at_ms
};

struct DueRow {
  PayoutRow row;
  DuePosition position;
};

struct CurrencyTotals {
  int64_t requested = 0;  // all payouts
  int64_t succeeded = 0;  // state SUCCESS
  int64_t failed = 0;     // final and not SUCCESS
  int64_t pending = 0;    // not final
  std::map<std::string, int64_t>
      fees;  // by fee currency, fees reported on payouts in this currency
};

struct BatchProgress {
  BatchRecord batch;
  std::map<Stage, int64_t> stages;               // count per stage
  std::map<FinalState, int64_t> states;          // count per final state (final payouts only)
  std::map<std::string, CurrencyTotals> totals;  // by payout currency
  int64_t oldest_pending_since_ms = 0;  // min since_ms over non-final submitted payouts; 0 = none
};

// One row of a batch's running totals as every store keeps them (batch_totals): the payouts that
// share a stage, a final state, a currency and a fee currency, and their sums. A bucket emptied
// by moves has count 0 and zero sums. The views must outlive the call they are passed to.
struct TotalsBucket {
  Stage stage = Stage::kNew;
  FinalState state = FinalState::kNone;
  std::string_view currency;
  bool has_fee = false;
  std::string_view fee_currency;
  int64_t count = 0;
  int64_t amount_minor = 0;
  int64_t fee_minor = 0;
};

// Adds `bucket` into progress's stages, states and per-currency totals (what counts as succeeded,
// failed and pending is decided here, once for every store). False when a sum overflows int64.
bool AddToProgress(const TotalsBucket& bucket, BatchProgress* progress);

// A time the gateway circuit was open (core/gateway/circuit_breaker.h). Wall clock, ms since the
// epoch.
struct GatewayOutage {
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;       // 0 while it lasts
  int64_t next_probe_at_ms = 0;  // while it lasts: when the next probe may start
  std::string cause;             // the failure that opened it
};

class PayoutStore {
 public:
  // Opens (creating if needed, unless read_only) the state file and its schema.
  static Result<std::unique_ptr<PayoutStore>> Open(const std::string& path, bool read_only = false);
  virtual ~PayoutStore() = default;

  // Duplicate checks against every batch ever accepted.
  virtual Result<bool> HasBatchId(std::string_view batch_id) = 0;
  virtual Result<bool> HasContent(std::string_view sha256) = 0;
  // The ids among `payouts` already used by an earlier batch (in the order given).
  virtual Result<std::vector<std::string>> FindUsedPayoutIds(const PayoutList& payouts) = 0;

  // Durably records an accepted batch and all its payouts at stage kNew, in one transaction, with
  // the batch's status (kActive, or kAwaitingApproval with approvals_required) and hold as given.
  // Fails with kAlreadyExists (and records nothing) if the batch id, content or a payout id exists
  // already; the message names the first one met.
  virtual Status CreateBatch(const BatchRecord& batch, const PayoutList& payouts) = 0;

  // Writes these payout states in one transaction. Each id must exist; a transition not allowed by
  // IsAllowedTransition from the stored stage is a bug and aborts (PAYOUTD_CHECK), except that an
  // update equal to the stored stage is always allowed.
  virtual Status Apply(const std::vector<PayoutUpdate>& updates) = 0;

  virtual Result<std::vector<BatchRecord>> ListBatches() = 0;
  virtual Result<std::optional<BatchRecord>> GetBatch(std::string_view batch_id) = 0;
  // Moves the batch as BatchRecord::MayMove allows (anything else is a bug and aborts); kFinished
  // and kRejected need every payout final. `at_ms` becomes finished_at_ms.
  virtual Status SetBatchStatus(std::string_view batch_id, BatchRecord::Status status,
                                int64_t at_ms) = 0;

  // Payouts of `batch_id` at `stage` with line > after_line, in line order, at most `limit`.
  virtual Result<std::vector<PayoutRow>> LoadByStage(std::string_view batch_id, Stage stage,
                                                     uint32_t after_line, size_t limit) = 0;
  // Payouts (any batch) at kUnknown or kPolling whose next_at_ms <= now_ms, earliest first.
  virtual Result<std::vector<PayoutRow>> LoadDue(int64_t now_ms, size_t limit) = 0;
  // The same, read on from a position: only rows after `after` in LoadDue's order (next_at_ms, then
  // the order rows were stored in), each with its position. Lets a caller sweep the due rows
  // without reading again, at every call, the ones it has already passed over.
  virtual Result<std::vector<DueRow>> LoadDueAfter(int64_t now_ms, DuePosition after,
                                                   size_t limit) = 0;
  // Earliest next_at_ms among kUnknown and kPolling payouts, or nullopt when there are none.
  virtual Result<std::optional<int64_t>> NextDueAt() = 0;
  virtual Result<std::optional<PayoutRow>> GetPayout(std::string_view payout_id) = 0;
  // Every payout of the batch in line order (streamed; memory does not follow the batch size).
  virtual Status ForEachPayout(std::string_view batch_id,
                               const std::function<void(const PayoutRow&)>& fn) = 0;
  virtual Result<BatchProgress> Progress(std::string_view batch_id) = 0;

  // Gateway outages: insert or update (by started_at_ms); list the ongoing ones and those that
  // ended after `ended_after_ms`, oldest first.
  virtual Status RecordOutage(const GatewayOutage& outage) = 0;
  virtual Result<std::vector<GatewayOutage>> LoadOutages(int64_t ended_after_ms) = 0;

  // --- Finance controls (docs/approvals.md, docs/operator-control.md) ---
  // A signature that verified: true when it is the first from this principal for the batch (only
  // then does it count), false when the principal had signed already.
  virtual Result<bool> AddApproval(std::string_view batch_id, const Approval& approval) = 0;
  virtual Result<std::vector<Approval>> ListApprovals(std::string_view batch_id) = 0;
  virtual Status AddAudit(std::string_view batch_id, const AuditEntry& entry) = 0;
  virtual Result<std::vector<AuditEntry>> ListAudit(std::string_view batch_id) = 0;
  // Holds or resumes (hold.at_ms 0) one batch; kNotFound for an unknown batch.
  virtual Status SetHold(std::string_view batch_id, const Hold& hold) = 0;
  // The hold on every batch, including those that arrive while it lasts.
  virtual Status SetHoldAll(const Hold& hold) = 0;
  virtual Result<Hold> GetHoldAll() = 0;
  // Every payout of the batch still at kNew (never sent) becomes final CANCELLED with `error`, and
  // the batch is marked cancelled, in one transaction. Payouts at any other stage are left alone.
  // The caller makes sure nothing of the batch is being submitted meanwhile (the engine does).
  virtual Result<CancelOutcome> CancelUnsent(std::string_view batch_id, int64_t at_ms,
                                             std::string_view error) = 0;
};

}  // namespace payoutd
