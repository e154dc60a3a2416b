// PayoutStore on SQLite: one file, WAL mode, synchronous=FULL, prepared statements cached per
// connection. See payout_store.h for the contract; the schema below says what is durable when.
#include "core/store/payout_store.h"

#include <sqlite3.h>

#include <map>
#include <type_traits>
#include <utility>

#include "core/base/failpoint.h"

namespace payoutd {
namespace {

// Schema (PRAGMA user_version = kSchemaVersion). A new file gets version 1 and then every
// migration in order, the same path an old file takes; each step runs in the opening transaction.
// An older binary refuses a newer file rather than guess.
//
// Durability (every write below commits with synchronous=FULL in WAL mode, so a commit has reached
// the disk when the call returns):
// - batches + payouts: CreateBatch inserts the batch row and every payout row (stage 0 = kNew) in
//   ONE transaction, before the daemon moves the file out of inbox/. After a crash either the whole
//   batch is known or none of it is; never a batch with missing payouts.
// - payouts.stage/state/...: Apply writes a group of updates in one transaction. The state machine
//   (core/batch/payout.h) is asserted against the stored stage inside that transaction, so the file
//   never holds a forbidden edge, and a final row (stage 4) never changes its outcome.
// - Intermediate fields (attempts, next_at_ms, stage 1..3) may lag behind the network: the caller
//   groups them. Losing them is safe (a payout id is bound to one body; restart GETs before
//   re-POST).
// - batches.status moves forward only (active -> finished -> reported), and finished only when
// every
//   payout of the batch is final; the daemon writes its report files before marking it reported.
// - batch_totals (v2): per batch, the count and sums of its payouts in each (stage, state,
// currency,
//   fee) bucket, moved by the same transaction that moves the payouts, so Progress() reads a
//   handful of rows instead of aggregating a million every few seconds. Invariant: it equals the
//   GROUP BY of payouts (the tests recount it).
// - gateway_outages (v3): the gateway circuit's openings, one row each, written with the engine's
//   next group commit. An ongoing one (ended_at_ms 0) is reopened at start, so a restart during an
//   outage resumes paused; the rows also keep outage time out of polling.give_up_after.
//
// Payout ids are unique across all batches forever (the primary key), which is how a reused id is
// refused: no batch is processed twice.
constexpr int kSchemaVersion = 4;
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE batches (
  id             TEXT    PRIMARY KEY NOT NULL,
  sha256         TEXT    NOT NULL UNIQUE,
  file_name      TEXT    NOT NULL,
  rows           INTEGER NOT NULL,
  status         INTEGER NOT NULL CHECK (status BETWEEN 0 AND 2),
  started_at_ms  INTEGER NOT NULL,
  finished_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE payouts (
  id             TEXT    PRIMARY KEY NOT NULL,
  batch_id       TEXT    NOT NULL REFERENCES batches(id),
  line           INTEGER NOT NULL,
  amount_minor   INTEGER NOT NULL,
  currency       TEXT    NOT NULL,
  account_number TEXT    NOT NULL,
  account_name   TEXT    NOT NULL,
  operator_code  TEXT    NOT NULL,
  method         TEXT    NOT NULL,
  email          TEXT    NOT NULL,
  stage          INTEGER NOT NULL CHECK (stage BETWEEN 0 AND 4),
  state          INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4),
  attempts       INTEGER NOT NULL,
  next_at_ms     INTEGER NOT NULL,
  since_ms       INTEGER NOT NULL,
  gateway_status TEXT    NOT NULL,
  has_fee        INTEGER NOT NULL,
  fee_minor      INTEGER NOT NULL,
  fee_currency   TEXT    NOT NULL,
  processed_at   TEXT    NOT NULL,
  error          TEXT    NOT NULL
) STRICT;

-- LoadByStage, Progress, and the finished check: one batch's payouts at a stage, in line order.
CREATE INDEX payouts_by_batch_stage ON payouts (batch_id, stage, line);
-- LoadDue / NextDueAt: only payouts waiting on a GET (kUnknown = 2, kPolling = 3), earliest first.
-- Partial, so it stays as small as the work in flight and needs no sort. Queries must repeat the
-- exact WHERE term "stage IN (2, 3)" for SQLite to use it.
CREATE INDEX payouts_due ON payouts (next_at_ms) WHERE stage IN (2, 3);
)sql";

constexpr const char* kMigrateV1ToV2 = R"sql(
CREATE TABLE batch_totals (
  batch_id     TEXT    NOT NULL,
  stage        INTEGER NOT NULL,
  state        INTEGER NOT NULL,
  currency     TEXT    NOT NULL,
  has_fee      INTEGER NOT NULL,
  fee_currency TEXT    NOT NULL,
  payouts      INTEGER NOT NULL,   -- >= 0 (asserted on read; a CHECK would refuse the upsert's delta row)
  amount_minor INTEGER NOT NULL,   -- STRICT: an int64 overflow becomes REAL and is refused
  fee_minor    INTEGER NOT NULL,
  PRIMARY KEY (batch_id, stage, state, currency, has_fee, fee_currency)
) STRICT, WITHOUT ROWID;
INSERT INTO batch_totals
  SELECT batch_id, stage, state, currency, has_fee, fee_currency, count(*), sum(amount_minor), sum(fee_minor)
  FROM payouts GROUP BY batch_id, stage, state, currency, has_fee, fee_currency;
-- Progress: the oldest pending submission of a batch, by min() on an index of pending rows only.
-- Queries must repeat the exact WHERE term for SQLite to use it.
CREATE INDEX payouts_pending_since ON payouts (batch_id, since_ms) WHERE stage < 4 AND since_ms > 0;
)sql";

constexpr const char* kMigrateV2ToV3 = R"sql(
CREATE TABLE gateway_outages (
  started_at_ms    INTEGER PRIMARY KEY NOT NULL,
  ended_at_ms      INTEGER NOT NULL,   -- 0 while it lasts
  next_probe_at_ms INTEGER NOT NULL,
  cause            TEXT    NOT NULL
) STRICT;
)sql";

// v4: finance controls. Batches may wait for approvals (status 3) or be rejected after acceptance
// (status 4: approval expired, or cancelled while waiting); payouts may end CANCELLED (state 5).
// The two CHECKs are widened in place (writable_schema, the procedure SQLite documents for
// relaxing a constraint: the rows on disk do not change); a rebuild of payouts would copy a
// million rows for nothing.
// - approvals: one row per principal per batch; the primary key is what makes a principal count
//   once. audit: the trail summary.json shows, in order. settings: service-wide switches (hold
//   of all batches).
constexpr const char* kMigrateV3ToV4 = R"sql(
ALTER TABLE batches ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN held_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN held_by TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN hold_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN cancelled_at_ms INTEGER NOT NULL DEFAULT 0;
CREATE TABLE approvals (
  batch_id        TEXT    NOT NULL REFERENCES batches(id),
  principal       TEXT    NOT NULL,
  key_fingerprint TEXT    NOT NULL,
  file            TEXT    NOT NULL,
  at_ms           INTEGER NOT NULL,
  PRIMARY KEY (batch_id, principal)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit (
  seq      INTEGER PRIMARY KEY,
  batch_id TEXT    NOT NULL REFERENCES batches(id),
  at_ms    INTEGER NOT NULL,
  action   TEXT    NOT NULL,
  by       TEXT    NOT NULL,
  reason   TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_by_batch ON audit (batch_id, seq);
CREATE TABLE settings (
  key   TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
) STRICT;
)sql";

// One bucket of batch_totals and the change a transaction makes to it.
struct TotalsKey {
  std::string batch_id;
  int stage = 0;
  int state = 0;
  std::string currency;
  bool has_fee = false;
  std::string fee_currency;
  auto operator<=>(const TotalsKey&) const = default;
};
struct TotalsDelta {
  int64_t payouts = 0;
  int64_t amount_minor = 0;
  int64_t fee_minor = 0;
};

constexpr const char* kPayoutColumns =
    "id, batch_id, line, amount_minor, currency, account_number, account_name, operator_code, "
    "method, email, "
    "stage, state, attempts, next_at_ms, since_ms, gateway_status, has_fee, fee_minor, "
    "fee_currency, "
    "processed_at, error";
constexpr int kPayoutColumnCount = 21;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Resets a cached statement when the scope that used it ends, so it never holds a read snapshot
// or a dangling SQLITE_STATIC binding.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) : s_(s) {}
  ~StmtUse() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_;
};

// Strings bound with SQLITE_STATIC: each bind is followed by its step within the caller's scope.
void BindText(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
void BindInt(sqlite3_stmt* s, int i, int64_t v) {
  sqlite3_bind_int64(s, i, v);
}

std::string ColText(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}
int64_t ColInt(sqlite3_stmt* s, int i) {
  return sqlite3_column_int64(s, i);
}

// Reads a row selected with kPayoutColumns.
PayoutRow ReadPayoutRow(sqlite3_stmt* s) {
  PayoutRow r;
  r.payout.id = ColText(s, 0);
  r.batch_id = ColText(s, 1);
  r.payout.line = static_cast<uint32_t>(ColInt(s, 2));
  r.payout.amount_minor = ColInt(s, 3);
  r.payout.currency = ColText(s, 4);
  r.payout.account_number = ColText(s, 5);
  r.payout.account_name = ColText(s, 6);
  r.payout.operator_code = ColText(s, 7);
  r.payout.method = ColText(s, 8);
  r.payout.email = ColText(s, 9);
  r.progress.stage = StageFromInt(ColInt(s, 10));
  r.progress.state = FinalStateFromInt(ColInt(s, 11));
  r.progress.attempts = static_cast<int>(ColInt(s, 12));
  r.progress.next_at_ms = ColInt(s, 13);
  r.progress.since_ms = ColInt(s, 14);
  r.progress.gateway_status = ColText(s, 15);
  r.progress.has_fee = ColInt(s, 16) != 0;
  r.progress.fee_minor = ColInt(s, 17);
  r.progress.fee_currency = ColText(s, 18);
  r.progress.processed_at = ColText(s, 19);
  r.progress.error = ColText(s, 20);
  return r;
}

BatchRecord ReadBatch(sqlite3_stmt* s) {
  BatchRecord b;
  b.id = ColText(s, 0);
  b.sha256 = ColText(s, 1);
  b.file_name = ColText(s, 2);
  b.rows = ColInt(s, 3);
  int64_t status = ColInt(s, 4);
  PAYOUTD_CHECK(status >= 0 && status <= static_cast<int64_t>(BatchRecord::Status::kRejected));
  b.status = static_cast<BatchRecord::Status>(status);
  b.started_at_ms = ColInt(s, 5);
  b.finished_at_ms = ColInt(s, 6);
  b.approvals_required = static_cast<int>(ColInt(s, 7));
  b.hold = Hold{ColInt(s, 8), ColText(s, 9), ColText(s, 10)};
  b.cancelled_at_ms = ColInt(s, 11);
  return b;
}
constexpr const char* kBatchColumns =
    "id, sha256, file_name, rows, status, started_at_ms, finished_at_ms, approvals_required, "
    "held_at_ms, held_by, "
    "hold_reason, cancelled_at_ms";

bool AddChecked(int64_t* acc, int64_t v) {
  return !__builtin_add_overflow(*acc, v, acc);
}

// The code of a failed SQLite call: what a retry may cure (a busy or locked file, I/O, a full
// disk, no memory) is kUnavailable; anything else (corruption, a constraint or SQL the schema does
// not expect) is kInternal.
StatusCode CodeOf(int sqlite_rc) {
  switch (sqlite_rc & 0xFF) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_PERM: return StatusCode::kUnavailable;
    default: return StatusCode::kInternal;
  }
}

class SqlitePayoutStore final : public PayoutStore {
 public:
  SqlitePayoutStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqlitePayoutStore() override {
    stmts_.clear();  // finalize before close
    sqlite3_close(db_);
  }

  Status Init(bool read_only) {
    sqlite3_extended_result_codes(db_, 1);
    // `payoutd status` and `payoutd run` share the file: WAL lets readers and the writer proceed
    // together; the timeout covers the short exclusive moments (WAL recovery, another writer).
    sqlite3_busy_timeout(db_, 5000);
    // Page cache per connection (64 MiB): a 1M-row batch's indexes stay in memory while inserted.
    PAYOUTD_RETURN_IF_ERROR(Exec("PRAGMA cache_size=-65536"));
    if (read_only) return CheckVersion();
    PAYOUTD_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    PAYOUTD_ASSIGN_OR_RETURN(std::string mode, QueryText("PRAGMA journal_mode"));
    if (mode != "wal") {
      return Status::FailedPrecondition("state " + path_ + ": cannot switch to WAL mode (got " +
                                        mode + ")");
    }
    // FULL: in WAL mode NORMAL may lose the last commits on power loss; every commit here is one
    // the daemon acts upon (moves a file, writes a report), so it must be on disk first.
    for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                               "PRAGMA journal_size_limit=67108864"}) {
      PAYOUTD_RETURN_IF_ERROR(Exec(pragma));
    }
    Txn txn(this, "BEGIN IMMEDIATE");
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    PAYOUTD_RETURN_IF_ERROR(CreateOrCheckSchema());
    return txn.Commit();
  }

  Result<bool> HasBatchId(std::string_view batch_id) override {
    return Exists("SELECT 1 FROM batches WHERE id = ?1", batch_id);
  }

  Result<bool> HasContent(std::string_view sha256) override {
    return Exists("SELECT 1 FROM batches WHERE sha256 = ?1", sha256);
  }

  // Both read the validator's compact PayoutList as it is, so that a batch of a million rows is
  // never copied into a vector of strings to be recorded.
  Result<std::vector<std::string>> FindUsedPayoutIds(const PayoutList& payouts) override {
    sqlite3_stmt* s = Prepare("SELECT 1 FROM payouts WHERE id = ?1");
    if (!s) return DbError("prepare payout lookup");
    Txn txn(this, "BEGIN");  // one read snapshot for all lookups, and far fewer lock round trips
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    std::vector<std::string> used;
    for (size_t i = 0; i < payouts.size(); ++i) {
      const std::string_view id = payouts.id(i);
      StmtUse use(s);
      BindText(s, 1, id);
      int rc = sqlite3_step(s);
      if (rc == SQLITE_ROW) {
        used.emplace_back(id);
      } else if (rc != SQLITE_DONE) {
        return DbError("look up payout id");
      }
    }
    PAYOUTD_RETURN_IF_ERROR(txn.Commit());
    return used;
  }

  Status CreateBatch(const BatchRecord& batch, const PayoutList& payouts) override {
    Txn txn(this, "BEGIN IMMEDIATE");
    PAYOUTD_RETURN_IF_ERROR(txn.status());

    PAYOUTD_ASSIGN_OR_RETURN(bool id_seen, HasBatchId(batch.id));
    if (id_seen) return Status::AlreadyExists("batch id '" + batch.id + "' was seen before");
    PAYOUTD_ASSIGN_OR_RETURN(std::optional<std::string> same_content,
                             FindBatchByContent(batch.sha256));
    if (same_content) {
      return Status::AlreadyExists("batch content (sha256 " + batch.sha256 +
                                   ") was seen before, as batch '" + *same_content + "'");
    }

    sqlite3_stmt* ib = Prepare(
        "INSERT INTO batches (id, sha256, file_name, rows, status, started_at_ms, finished_at_ms, "
        "approvals_required, held_at_ms, held_by, hold_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
        "?8, ?9, ?10, ?11)");
    if (!ib) return DbError("prepare batch insert");
    {
      StmtUse use(ib);
      BindText(ib, 1, batch.id);
      BindText(ib, 2, batch.sha256);
      BindText(ib, 3, batch.file_name);
      BindInt(ib, 4, batch.rows);
      BindInt(ib, 5, static_cast<int>(batch.status));
      BindInt(ib, 6, batch.started_at_ms);
      BindInt(ib, 7, batch.finished_at_ms);
      BindInt(ib, 8, batch.approvals_required);
      BindInt(ib, 9, batch.hold.at_ms);
      BindText(ib, 10, batch.hold.by);
      BindText(ib, 11, batch.hold.reason);
      if (sqlite3_step(ib) != SQLITE_DONE) return DbError("insert batch '" + batch.id + "'");
    }

    sqlite3_stmt* ip = Prepare(
        "INSERT INTO payouts (id, batch_id, line, amount_minor, currency, account_number, "
        "account_name, "
        "operator_code, method, email, stage, state, attempts, next_at_ms, since_ms, "
        "gateway_status, has_fee, "
        "fee_minor, fee_currency, processed_at, error) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, 0, 0, 0, 0, '', 0, 0, '', '', '')");
    if (!ip) return DbError("prepare payout insert");
    std::map<std::string, TotalsDelta, std::less<>> by_currency;  // all at stage kNew
    for (const Payout& p : payouts) {
      StmtUse use(ip);
      BindText(ip, 1, p.id);
      BindText(ip, 2, batch.id);
      BindInt(ip, 3, p.line);
      BindInt(ip, 4, p.amount_minor);
      BindText(ip, 5, p.currency);
      BindText(ip, 6, p.account_number);
      BindText(ip, 7, p.account_name);
      BindText(ip, 8, p.operator_code);
      BindText(ip, 9, p.method);
      BindText(ip, 10, p.email);
      int rc = sqlite3_step(ip);
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Status::AlreadyExists("payout id '" + p.id + "' (line " + std::to_string(p.line) +
                                     ") was used before");
      }
      if (rc != SQLITE_DONE) return DbError("insert payout '" + p.id + "'");
      auto it = by_currency.find(p.currency);
      if (it == by_currency.end()) it = by_currency.emplace(p.currency, TotalsDelta{}).first;
      if (!AddChecked(&it->second.payouts, 1) ||
          !AddChecked(&it->second.amount_minor, p.amount_minor)) {
        return Status::InvalidArgument("batch '" + batch.id + "': the " + p.currency +
                                       " total overflows int64");
      }
    }
    std::map<TotalsKey, TotalsDelta> deltas;
    for (const auto& [currency, d] : by_currency)
      deltas[TotalsKey{batch.id, 0, 0, currency, false, ""}] = d;
    PAYOUTD_RETURN_IF_ERROR(ApplyTotals(deltas));
    return txn.Commit();
  }

  Status Apply(const std::vector<PayoutUpdate>& updates) override {
    if (updates.empty()) return Status::Ok();
    sqlite3_stmt* sel = Prepare(
        "SELECT stage, state, batch_id, currency, amount_minor, has_fee, fee_minor, fee_currency "
        "FROM payouts WHERE id = ?1");
    sqlite3_stmt* upd = Prepare(
        "UPDATE payouts SET stage = ?2, state = ?3, attempts = ?4, next_at_ms = ?5, since_ms = ?6, "
        "gateway_status = ?7, has_fee = ?8, fee_minor = ?9, fee_currency = ?10, processed_at = "
        "?11, error = ?12 "
        "WHERE id = ?1");
    if (!sel || !upd) return DbError("prepare payout update");
    Txn txn(this, "BEGIN IMMEDIATE");
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    std::map<TotalsKey, TotalsDelta> deltas;
    for (const PayoutUpdate& update : updates) {
      const PayoutProgress& u = update.progress;
      // An outcome goes with the final stage and only with it: results.csv is written from it.
      PAYOUTD_CHECK((u.stage == Stage::kFinal) == (u.state != FinalState::kNone));
      Stage old_stage;
      FinalState old_state;
      {
        StmtUse use(sel);
        BindText(sel, 1, update.id);
        int rc = sqlite3_step(sel);
        if (rc == SQLITE_DONE)
          return Status::NotFound("apply: unknown payout id '" + update.id + "'");
        if (rc != SQLITE_ROW) return DbError("read payout '" + update.id + "'");
        old_stage = StageFromInt(ColInt(sel, 0));
        old_state = FinalStateFromInt(ColInt(sel, 1));
        std::string batch_id = ColText(sel, 2);
        std::string currency = ColText(sel, 3);
        int64_t amount = ColInt(sel, 4);
        TotalsDelta& from =
            deltas[TotalsKey{batch_id, static_cast<int>(old_stage), static_cast<int>(old_state),
                             currency, ColInt(sel, 5) != 0, ColText(sel, 7)}];
        TotalsDelta& to = deltas[TotalsKey{std::move(batch_id), static_cast<int>(u.stage),
                                           static_cast<int>(u.state), std::move(currency),
                                           u.has_fee, u.fee_currency}];
        // The fee comes from the gateway: an absurd one is an error, not a crash.
        if (!AddChecked(&from.payouts, -1) || !AddChecked(&from.amount_minor, -amount) ||
            !AddChecked(&from.fee_minor, -ColInt(sel, 6)) || !AddChecked(&to.payouts, 1) ||
            !AddChecked(&to.amount_minor, amount) || !AddChecked(&to.fee_minor, u.fee_minor)) {
          return Status::InvalidArgument("apply: totals overflow int64 at payout '" + update.id +
                                         "'");
        }
      }
      // The state machine, enforced where it becomes durable. A final payout keeps its outcome
      // forever: re-applying the same final state is allowed (idempotent), changing it is a bug.
      PAYOUTD_CHECK(u.stage == old_stage || IsAllowedTransition(old_stage, u.stage));
      PAYOUTD_CHECK(old_stage != Stage::kFinal || u.state == old_state);
      // Never sent, then final: only an operator's cancel does that.
      PAYOUTD_CHECK(old_stage != Stage::kNew || u.stage != Stage::kFinal ||
                    u.state == FinalState::kCancelled);
      StmtUse use(upd);
      BindText(upd, 1, update.id);
      BindInt(upd, 2, static_cast<int>(u.stage));
      BindInt(upd, 3, static_cast<int>(u.state));
      BindInt(upd, 4, u.attempts);
      BindInt(upd, 5, u.next_at_ms);
      BindInt(upd, 6, u.since_ms);
      BindText(upd, 7, u.gateway_status);
      BindInt(upd, 8, u.has_fee ? 1 : 0);
      BindInt(upd, 9, u.fee_minor);
      BindText(upd, 10, u.fee_currency);
      BindText(upd, 11, u.processed_at);
      BindText(upd, 12, u.error);
      if (sqlite3_step(upd) != SQLITE_DONE) return DbError("update payout '" + update.id + "'");
    }
    PAYOUTD_RETURN_IF_ERROR(ApplyTotals(deltas));
    if (PAYOUTD_FAILPOINT("sqlite_store.apply"))
      return Status::Unavailable("failpoint sqlite_store.apply");  // rolled back
    return txn.Commit();
  }

  Status RecordOutage(const GatewayOutage& o) override {
    sqlite3_stmt* s = Prepare(
        "INSERT INTO gateway_outages (started_at_ms, ended_at_ms, next_probe_at_ms, cause) VALUES "
        "(?1, ?2, ?3, ?4) "
        "ON CONFLICT (started_at_ms) DO UPDATE SET ended_at_ms = ?2, next_probe_at_ms = ?3, cause "
        "= ?4");
    if (!s) return DbError("prepare outage record");
    StmtUse use(s);
    BindInt(s, 1, o.started_at_ms);
    BindInt(s, 2, o.ended_at_ms);
    BindInt(s, 3, o.next_probe_at_ms);
    BindText(s, 4, o.cause);
    if (sqlite3_step(s) != SQLITE_DONE) return DbError("record gateway outage");
    return Status::Ok();
  }

  Result<std::vector<GatewayOutage>> LoadOutages(int64_t ended_after_ms) override {
    sqlite3_stmt* s = Prepare(
        "SELECT started_at_ms, ended_at_ms, next_probe_at_ms, cause FROM gateway_outages "
        "WHERE ended_at_ms = 0 OR ended_at_ms > ?1 ORDER BY started_at_ms");
    if (!s) return DbError("prepare outage list");
    StmtUse use(s);
    BindInt(s, 1, ended_after_ms);
    return ReadRows(s, "list gateway outages", [](sqlite3_stmt* row) {
      return GatewayOutage{ColInt(row, 0), ColInt(row, 1), ColInt(row, 2), ColText(row, 3)};
    });
  }

  Result<std::vector<BatchRecord>> ListBatches() override {
    sqlite3_stmt* s = Prepare(std::string("SELECT ") + kBatchColumns +
                              " FROM batches ORDER BY started_at_ms, id");
    if (!s) return DbError("prepare batch list");
    StmtUse use(s);
    return ReadRows(s, "list batches", ReadBatch);
  }

  Result<std::optional<BatchRecord>> GetBatch(std::string_view batch_id) override {
    sqlite3_stmt* s =
        Prepare(std::string("SELECT ") + kBatchColumns + " FROM batches WHERE id = ?1");
    if (!s) return DbError("prepare batch lookup");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    return ReadRow(s, "read batch", ReadBatch);
  }

  Status SetBatchStatus(std::string_view batch_id, BatchRecord::Status status,
                        int64_t at_ms) override {
    Txn txn(this, "BEGIN IMMEDIATE");
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    PAYOUTD_ASSIGN_OR_RETURN(std::optional<BatchRecord> batch, GetBatch(batch_id));
    if (!batch) return Status::NotFound("unknown batch '" + std::string(batch_id) + "'");
    // Only the moves of the batch's life (header), and "finished" or "rejected" means every payout
    // is final (header rule 2).
    PAYOUTD_CHECK(batch->status == status || BatchRecord::MayMove(batch->status, status));
    if (status == BatchRecord::Status::kFinished || status == BatchRecord::Status::kRejected) {
      PAYOUTD_ASSIGN_OR_RETURN(int64_t pending, CountNotFinal(batch_id));
      PAYOUTD_CHECK(pending == 0);
    }
    sqlite3_stmt* s = Prepare("UPDATE batches SET status = ?2, finished_at_ms = ?3 WHERE id = ?1");
    if (!s) return DbError("prepare batch status update");
    {
      StmtUse use(s);
      BindText(s, 1, batch_id);
      BindInt(s, 2, static_cast<int>(status));
      BindInt(s, 3, at_ms);
      if (sqlite3_step(s) != SQLITE_DONE) return DbError("update batch status");
    }
    return txn.Commit();
  }

  Result<bool> AddApproval(std::string_view batch_id, const Approval& a) override {
    sqlite3_stmt* s = Prepare(
        "INSERT INTO approvals (batch_id, principal, key_fingerprint, file, at_ms) VALUES (?1, ?2, "
        "?3, ?4, ?5) "
        "ON CONFLICT (batch_id, principal) DO NOTHING");
    if (!s) return DbError("prepare approval insert");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    BindText(s, 2, a.principal);
    BindText(s, 3, a.key_fingerprint);
    BindText(s, 4, a.file);
    BindInt(s, 5, a.at_ms);
    if (sqlite3_step(s) != SQLITE_DONE)
      return DbError("record approval of batch '" + std::string(batch_id) + "'");
    return sqlite3_changes(db_) == 1;
  }

  Result<std::vector<Approval>> ListApprovals(std::string_view batch_id) override {
    sqlite3_stmt* s = Prepare(
        "SELECT principal, key_fingerprint, file, at_ms FROM approvals WHERE batch_id = ?1 ORDER "
        "BY at_ms, principal");
    if (!s) return DbError("prepare approval list");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    std::vector<Approval> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(Approval{ColText(s, 0), ColText(s, 1), ColText(s, 2), ColInt(s, 3)});
    if (rc != SQLITE_DONE) return DbError("list approvals");
    return out;
  }

  Status AddAudit(std::string_view batch_id, const AuditEntry& e) override {
    sqlite3_stmt* s = Prepare(
        "INSERT INTO audit (batch_id, at_ms, action, by, reason) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!s) return DbError("prepare audit insert");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    BindInt(s, 2, e.at_ms);
    BindText(s, 3, e.action);
    BindText(s, 4, e.by);
    BindText(s, 5, e.reason);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
      return Status::NotFound("unknown batch '" + std::string(batch_id) + "'");
    if (rc != SQLITE_DONE) return DbError("record audit of batch '" + std::string(batch_id) + "'");
    return Status::Ok();
  }

  Result<std::vector<AuditEntry>> ListAudit(std::string_view batch_id) override {
    sqlite3_stmt* s =
        Prepare("SELECT at_ms, action, by, reason FROM audit WHERE batch_id = ?1 ORDER BY seq");
    if (!s) return DbError("prepare audit list");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    std::vector<AuditEntry> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(AuditEntry{ColInt(s, 0), ColText(s, 1), ColText(s, 2), ColText(s, 3)});
    if (rc != SQLITE_DONE) return DbError("list audit");
    return out;
  }

  Status SetHold(std::string_view batch_id, const Hold& h) override {
    sqlite3_stmt* s =
        Prepare("UPDATE batches SET held_at_ms = ?2, held_by = ?3, hold_reason = ?4 WHERE id = ?1");
    if (!s) return DbError("prepare hold");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    BindInt(s, 2, h.at_ms);
    BindText(s, 3, h.by);
    BindText(s, 4, h.reason);
    if (sqlite3_step(s) != SQLITE_DONE)
      return DbError("hold batch '" + std::string(batch_id) + "'");
    if (sqlite3_changes(db_) != 1)
      return Status::NotFound("unknown batch '" + std::string(batch_id) + "'");
    return Status::Ok();
  }

  Status SetHoldAll(const Hold& h) override {
    Txn txn(this, "BEGIN IMMEDIATE");
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    sqlite3_stmt* s = Prepare(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = "
        "?2");
    if (!s) return DbError("prepare setting");
    const std::pair<const char*, std::string> values[] = {
        {"hold_all.at_ms", std::to_string(h.at_ms)},
        {"hold_all.by", h.by},
        {"hold_all.reason", h.reason}};
    for (const auto& [key, value] : values) {
      StmtUse use(s);
      BindText(s, 1, key);
      BindText(s, 2, value);
      if (sqlite3_step(s) != SQLITE_DONE) return DbError("write setting " + std::string(key));
    }
    return txn.Commit();
  }

  Result<Hold> GetHoldAll() override {
    sqlite3_stmt* s = Prepare("SELECT key, value FROM settings WHERE key LIKE 'hold_all.%'");
    if (!s) return DbError("prepare settings");
    StmtUse use(s);
    Hold h;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const std::string key = ColText(s, 0), value = ColText(s, 1);
      if (key == "hold_all.at_ms") h.at_ms = std::strtoll(value.c_str(), nullptr, 10);
      if (key == "hold_all.by") h.by = value;
      if (key == "hold_all.reason") h.reason = value;
    }
    if (rc != SQLITE_DONE) return DbError("read settings");
    return h;
  }

  Result<CancelOutcome> CancelUnsent(std::string_view batch_id, int64_t at_ms,
                                     std::string_view error) override {
    Txn txn(this, "BEGIN IMMEDIATE");
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    PAYOUTD_ASSIGN_OR_RETURN(std::optional<BatchRecord> batch, GetBatch(batch_id));
    if (!batch) return Status::NotFound("unknown batch '" + std::string(batch_id) + "'");
    // batch_totals moves with the payouts: every never-sent payout leaves (new, none) for
    // (final, CANCELLED), by currency.
    sqlite3_stmt* sum = Prepare(
        "SELECT currency, count(*), sum(amount_minor) FROM payouts WHERE batch_id = ?1 AND stage = "
        "0 GROUP BY currency");
    if (!sum) return DbError("prepare cancel totals");
    std::map<TotalsKey, TotalsDelta> deltas;
    CancelOutcome out;
    {
      StmtUse use(sum);
      BindText(sum, 1, batch_id);
      int rc;
      while ((rc = sqlite3_step(sum)) == SQLITE_ROW) {
        const std::string currency = ColText(sum, 0);
        const int64_t n = ColInt(sum, 1), amount = ColInt(sum, 2);
        deltas[TotalsKey{std::string(batch_id), 0, 0, currency, false, ""}] =
            TotalsDelta{-n, -amount, 0};
        deltas[TotalsKey{std::string(batch_id), static_cast<int>(Stage::kFinal),
                         static_cast<int>(FinalState::kCancelled), currency, false, ""}] =
            TotalsDelta{n, amount, 0};
        out.cancelled += n;
      }
      if (rc != SQLITE_DONE) return DbError("sum unsent payouts");
    }
    sqlite3_stmt* upd = Prepare(
        "UPDATE payouts SET stage = 4, state = 5, next_at_ms = 0, error = ?2 WHERE batch_id = ?1 "
        "AND stage = 0");
    sqlite3_stmt* mark =
        Prepare("UPDATE batches SET cancelled_at_ms = ?2 WHERE id = ?1 AND cancelled_at_ms = 0");
    if (!upd || !mark) return DbError("prepare cancel");
    {
      StmtUse use(upd);
      BindText(upd, 1, batch_id);
      BindText(upd, 2, error);
      if (sqlite3_step(upd) != SQLITE_DONE)
        return DbError("cancel payouts of batch '" + std::string(batch_id) + "'");
      PAYOUTD_CHECK(sqlite3_changes(db_) == out.cancelled);
    }
    {
      StmtUse use(mark);
      BindText(mark, 1, batch_id);
      BindInt(mark, 2, at_ms);
      if (sqlite3_step(mark) != SQLITE_DONE)
        return DbError("mark batch '" + std::string(batch_id) + "' cancelled");
    }
    PAYOUTD_RETURN_IF_ERROR(ApplyTotals(deltas));
    PAYOUTD_ASSIGN_OR_RETURN(out.still_running, CountNotFinal(batch_id));
    out.all_final = out.still_running == 0;
    PAYOUTD_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  Result<std::vector<PayoutRow>> LoadByStage(std::string_view batch_id, Stage stage,
                                             uint32_t after_line, size_t limit) override {
    sqlite3_stmt* s = Prepare(
        std::string("SELECT ") + kPayoutColumns +
        " FROM payouts WHERE batch_id = ?1 AND stage = ?2 AND line > ?3 ORDER BY line LIMIT ?4");
    if (!s) return DbError("prepare load by stage");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    BindInt(s, 2, static_cast<int>(stage));
    BindInt(s, 3, after_line);
    BindInt(s, 4, ClampLimit(limit));
    return ReadRows(s, "load payouts by stage", ReadPayoutRow);
  }

  Result<std::vector<PayoutRow>> LoadDue(int64_t now_ms, size_t limit) override {
    sqlite3_stmt* s = Prepare(
        std::string("SELECT ") + kPayoutColumns +
        " FROM payouts WHERE stage IN (2, 3) AND next_at_ms <= ?1 ORDER BY next_at_ms LIMIT ?2");
    if (!s) return DbError("prepare load due");
    StmtUse use(s);
    BindInt(s, 1, now_ms);
    BindInt(s, 2, ClampLimit(limit));
    return ReadRows(s, "load due payouts", ReadPayoutRow);
  }

  Result<std::vector<DueRow>> LoadDueAfter(int64_t now_ms, DuePosition after,
                                           size_t limit) override {
    // The partial index payouts_due is (next_at_ms, rowid): this reads it in order, without a sort.
    sqlite3_stmt* s =
        Prepare(std::string("SELECT ") + kPayoutColumns +
                ", rowid FROM payouts WHERE stage IN (2, 3) AND next_at_ms <= ?1"
                " AND (next_at_ms, rowid) > (?3, ?4) ORDER BY next_at_ms, rowid LIMIT ?2");
    if (!s) return DbError("prepare load due");
    StmtUse use(s);
    BindInt(s, 1, now_ms);
    BindInt(s, 2, ClampLimit(limit));
    BindInt(s, 3, after.next_at_ms);
    BindInt(s, 4, after.row);
    return ReadRows(s, "load due payouts", [](sqlite3_stmt* row) {
      DueRow d;
      d.row = ReadPayoutRow(row);
      d.position = DuePosition{d.row.progress.next_at_ms, ColInt(row, kPayoutColumnCount)};
      return d;
    });
  }

  Result<std::optional<int64_t>> NextDueAt() override {
    sqlite3_stmt* s =
        Prepare("SELECT next_at_ms FROM payouts WHERE stage IN (2, 3) ORDER BY next_at_ms LIMIT 1");
    if (!s) return DbError("prepare next due");
    StmtUse use(s);
    return ReadRow(s, "read next due", [](sqlite3_stmt* row) { return ColInt(row, 0); });
  }

  Result<std::optional<PayoutRow>> GetPayout(std::string_view payout_id) override {
    sqlite3_stmt* s =
        Prepare(std::string("SELECT ") + kPayoutColumns + " FROM payouts WHERE id = ?1");
    if (!s) return DbError("prepare payout lookup");
    StmtUse use(s);
    BindText(s, 1, payout_id);
    return ReadRow(s, "read payout", ReadPayoutRow);
  }

  Status ForEachPayout(std::string_view batch_id,
                       const std::function<void(const PayoutRow&)>& fn) override {
    // Line order without a sort and without another index: the (batch_id, stage, line) index gives
    // each stage's rows in line order, so merge the five stage streams. All five read inside one
    // transaction, i.e. one snapshot. `fn` must not write to the store (its Apply would fail).
    // The statements are not the cached ones, so `fn` may read through the store meanwhile.
    const std::string sql = std::string("SELECT ") + kPayoutColumns +
                            " FROM payouts WHERE batch_id = ?1 AND stage = ?2 ORDER BY line";
    Txn txn(this, "BEGIN");
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    struct Stream {
      StmtPtr stmt;
      bool has_row = false;
    };
    constexpr int kStages = static_cast<int>(Stage::kFinal) + 1;
    Stream streams[kStages];
    auto advance = [&](Stream& st) -> bool {
      int rc = sqlite3_step(st.stmt.get());
      st.has_row = rc == SQLITE_ROW;
      return rc == SQLITE_ROW || rc == SQLITE_DONE;
    };
    for (int stage = 0; stage < kStages; ++stage) {
      sqlite3_stmt* raw = nullptr;
      if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
        sqlite3_finalize(raw);
        return DbError("prepare payout scan");
      }
      streams[stage].stmt.reset(raw);
      BindText(raw, 1, batch_id);
      BindInt(raw, 2, stage);
      if (!advance(streams[stage])) return DbError("scan payouts");
    }
    for (;;) {
      Stream* next = nullptr;
      for (Stream& st : streams) {
        if (st.has_row && (!next || ColInt(st.stmt.get(), 2) < ColInt(next->stmt.get(), 2)))
          next = &st;
      }
      if (!next) break;
      fn(ReadPayoutRow(next->stmt.get()));
      if (!advance(*next)) return DbError("scan payouts");
    }
    for (Stream& st : streams) st.stmt.reset();  // finish the reads before COMMIT
    return txn.Commit();
  }

  Result<BatchProgress> Progress(std::string_view batch_id) override {
    Txn txn(this, "BEGIN");  // the batch row and the aggregates from one snapshot
    PAYOUTD_RETURN_IF_ERROR(txn.status());
    PAYOUTD_ASSIGN_OR_RETURN(std::optional<BatchRecord> batch, GetBatch(batch_id));
    if (!batch) return Status::NotFound("unknown batch '" + std::string(batch_id) + "'");
    BatchProgress progress;
    progress.batch = std::move(*batch);

    // batch_totals holds the GROUP BY of the batch's payouts, kept by CreateBatch and Apply.
    sqlite3_stmt* s = Prepare(
        "SELECT stage, state, currency, has_fee, fee_currency, payouts, amount_minor, fee_minor "
        "FROM batch_totals WHERE batch_id = ?1");
    if (!s) return DbError("prepare progress");
    StmtUse use(s);
    BindText(s, 1, batch_id);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const std::string currency = ColText(s, 2);
      const std::string fee_currency = ColText(s, 4);
      const bool ok = AddToProgress(
          TotalsBucket{StageFromInt(ColInt(s, 0)), FinalStateFromInt(ColInt(s, 1)), currency,
                       ColInt(s, 3) != 0, fee_currency, ColInt(s, 5), ColInt(s, 6), ColInt(s, 7)},
          &progress);
      if (!ok) {
        return Status::Internal("progress of batch '" + std::string(batch_id) +
                                "': total overflows int64");
      }
    }
    if (rc != SQLITE_DONE) return DbError("progress of batch '" + std::string(batch_id) + "'");

    {
      sqlite3_stmt* o = Prepare(
          "SELECT min(since_ms) FROM payouts WHERE batch_id = ?1 AND stage < 4 AND since_ms > 0");
      if (!o) return DbError("prepare oldest pending");
      StmtUse use_oldest(o);
      BindText(o, 1, batch_id);
      if (sqlite3_step(o) != SQLITE_ROW)
        return DbError("oldest pending of batch '" + std::string(batch_id) + "'");
      progress.oldest_pending_since_ms = ColInt(o, 0);  // NULL (none) reads as 0
    }
    sqlite3_reset(s);
    PAYOUTD_RETURN_IF_ERROR(txn.Commit());
    return progress;
  }

 private:
  // A transaction that rolls back unless committed. A read transaction ("BEGIN") inside another
  // one (a ForEachPayout callback asking for Progress) joins it: same snapshot, nothing to do. A
  // write transaction inside another fails with an error Status (SQLite refuses the BEGIN).
  class Txn {
   public:
    Txn(SqlitePayoutStore* store, const char* begin) : store_(store) {
      if (std::string_view(begin) == "BEGIN" && !sqlite3_get_autocommit(store_->db_))
        return;  // joined
      status_ = store_->Exec(begin);
      open_ = status_.ok();
    }
    ~Txn() {
      if (open_) Rollback();
    }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    const Status& status() const { return status_; }
    Status Commit() {
      if (!open_) return status_;  // joined an outer transaction, or BEGIN failed
      open_ = false;
      Status s = store_->Exec("COMMIT");
      if (!s.ok() && !sqlite3_get_autocommit(store_->db_)) Rollback();
      return s;
    }

   private:
    // A failed ROLLBACK leaves nothing more to do: SQLite rolls back by itself when the
    // connection closes, and the caller reports the failure that led here.
    void Rollback() { (void)store_->Exec("ROLLBACK"); }

    SqlitePayoutStore* store_;
    Status status_;
    bool open_ = false;
  };

  // Adds the deltas to batch_totals, inside the caller's transaction.
  Status ApplyTotals(const std::map<TotalsKey, TotalsDelta>& deltas) {
    sqlite3_stmt* s = Prepare(
        "INSERT INTO batch_totals (batch_id, stage, state, currency, has_fee, fee_currency, "
        "payouts, amount_minor, "
        "fee_minor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
        "ON CONFLICT DO UPDATE SET payouts = payouts + excluded.payouts, "
        "amount_minor = amount_minor + excluded.amount_minor, fee_minor = fee_minor + "
        "excluded.fee_minor");
    if (!s) return DbError("prepare totals update");
    for (const auto& [key, d] : deltas) {
      if (d.payouts == 0 && d.amount_minor == 0 && d.fee_minor == 0) continue;
      StmtUse use(s);
      BindText(s, 1, key.batch_id);
      BindInt(s, 2, key.stage);
      BindInt(s, 3, key.state);
      BindText(s, 4, key.currency);
      BindInt(s, 5, key.has_fee ? 1 : 0);
      BindText(s, 6, key.fee_currency);
      BindInt(s, 7, d.payouts);
      BindInt(s, 8, d.amount_minor);
      BindInt(s, 9, d.fee_minor);
      int rc = sqlite3_step(s);
      if (rc == SQLITE_CONSTRAINT_DATATYPE)
        return Status::InvalidArgument("batch '" + key.batch_id + "': totals overflow int64");
      if (rc != SQLITE_DONE) return DbError("update totals of batch '" + key.batch_id + "'");
    }
    return Status::Ok();
  }

  Result<int64_t> CountNotFinal(std::string_view batch_id) {
    sqlite3_stmt* c = Prepare("SELECT count(*) FROM payouts WHERE batch_id = ?1 AND stage < 4");
    if (!c) return DbError("prepare pending count");
    StmtUse use(c);
    BindText(c, 1, batch_id);
    if (sqlite3_step(c) != SQLITE_ROW) return DbError("count pending payouts");
    return ColInt(c, 0);
  }

  // v4's widened CHECKs, edited in the schema text (see kMigrateV3ToV4). Inside the opening
  // transaction; the schema_version bump makes every connection re-read the schema.
  Status WidenChecks() {
    PAYOUTD_ASSIGN_OR_RETURN(const int64_t schema, QueryInt("PRAGMA schema_version"));
    PAYOUTD_RETURN_IF_ERROR(Exec("PRAGMA writable_schema = ON"));
    PAYOUTD_RETURN_IF_ERROR(
        Exec("UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (status BETWEEN 0 AND 2)', 'CHECK "
             "(status BETWEEN 0 AND 4)') "
             "WHERE type = 'table' AND name = 'batches';"
             "UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state BETWEEN 0 AND 4)', 'CHECK "
             "(state BETWEEN 0 AND 5)') "
             "WHERE type = 'table' AND name = 'payouts'"));
    PAYOUTD_RETURN_IF_ERROR(Exec("PRAGMA schema_version = " + std::to_string(schema + 1)));
    return Exec("PRAGMA writable_schema = OFF");
  }

  Status CheckVersion() {
    PAYOUTD_ASSIGN_OR_RETURN(int64_t v, QueryInt("PRAGMA user_version"));
    if (v == 0) {
      return Status::FailedPrecondition("state " + path_ +
                                        " holds no payoutd state (schema not created)");
    }
    if (v > kSchemaVersion) {
      return Status::FailedPrecondition(
          "state " + path_ + " has schema version " + std::to_string(v) +
          ", newer than this payoutd understands (" + std::to_string(kSchemaVersion) + ")");
    }
    if (v < kSchemaVersion) {  // only a read-only open gets here: it cannot migrate
      return Status::FailedPrecondition(
          "state " + path_ + " has schema version " + std::to_string(v) +
          "; it is upgraded when payoutd next opens it for writing (payoutd run)");
    }
    return Status::Ok();
  }

  Status CreateOrCheckSchema() {
    PAYOUTD_ASSIGN_OR_RETURN(const int64_t found, QueryInt("PRAGMA user_version"));
    if (found > kSchemaVersion) return CheckVersion();
    int64_t version = found;
    if (version == 0) {
      PAYOUTD_RETURN_IF_ERROR(Exec(kSchemaV1));
      version = 1;
    }
    if (version == 1) {
      PAYOUTD_RETURN_IF_ERROR(Exec(kMigrateV1ToV2));
      version = 2;
    }
    if (version == 2) {
      PAYOUTD_RETURN_IF_ERROR(Exec(kMigrateV2ToV3));
      version = 3;
    }
    if (version == 3) {
      PAYOUTD_RETURN_IF_ERROR(Exec(kMigrateV3ToV4));
      PAYOUTD_RETURN_IF_ERROR(WidenChecks());
      version = 4;
    }
    if (version == found) return Status::Ok();
    return Exec("PRAGMA user_version = " + std::to_string(version));
  }

  Result<std::optional<std::string>> FindBatchByContent(std::string_view sha256) {
    sqlite3_stmt* s = Prepare("SELECT id FROM batches WHERE sha256 = ?1");
    if (!s) return DbError("prepare content lookup");
    StmtUse use(s);
    BindText(s, 1, sha256);
    return ReadRow(s, "look up batch content", [](sqlite3_stmt* row) { return ColText(row, 0); });
  }

  Result<bool> Exists(const char* sql, std::string_view key) {
    sqlite3_stmt* s = Prepare(sql);
    if (!s) return DbError("prepare lookup");
    StmtUse use(s);
    BindText(s, 1, key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return DbError("lookup");
  }

  // Steps `s` (bound, in a StmtUse) to its end: read(s) of every row, in order. `what` names the
  // read in the error when a step fails.
  template <typename Read, typename Row = std::invoke_result_t<Read, sqlite3_stmt*>>
  Result<std::vector<Row>> ReadRows(sqlite3_stmt* s, const char* what, Read read) {
    std::vector<Row> rows;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) rows.push_back(read(s));
    if (rc != SQLITE_DONE) return DbError(what);
    return rows;
  }

  // The first row of `s`, read(s), or nullopt when there is none.
  template <typename Read, typename Row = std::invoke_result_t<Read, sqlite3_stmt*>>
  Result<std::optional<Row>> ReadRow(sqlite3_stmt* s, const char* what, Read read) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return std::optional<Row>();
    if (rc != SQLITE_ROW) return DbError(what);
    return std::optional<Row>(read(s));
  }

  static int64_t ClampLimit(size_t limit) {
    return limit > static_cast<size_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(limit);
  }

  // The cached prepared statement for `sql`, or nullptr (see sqlite3_errmsg).
  sqlite3_stmt* Prepare(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return it->second.get();
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
        SQLITE_OK) {
      sqlite3_finalize(s);
      return nullptr;
    }
    stmts_.emplace(sql, StmtPtr(s));
    return s;
  }

  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err); rc != SQLITE_OK) {
      std::string msg = "state " + path_ + ": " + (err ? err : sqlite3_errmsg(db_));
      sqlite3_free(err);
      return Status(CodeOf(rc), msg);
    }
    return Status::Ok();
  }

  Result<int64_t> QueryInt(const char* sql) {
    sqlite3_stmt* s = Prepare(sql);
    if (!s) return DbError(sql);
    StmtUse use(s);
    if (sqlite3_step(s) != SQLITE_ROW) return DbError(sql);
    return ColInt(s, 0);
  }

  Result<std::string> QueryText(const char* sql) {
    sqlite3_stmt* s = Prepare(sql);
    if (!s) return DbError(sql);
    StmtUse use(s);
    if (sqlite3_step(s) != SQLITE_ROW) return DbError(sql);
    return ColText(s, 0);
  }

  Status DbError(const std::string& what) const {
    return Status(CodeOf(sqlite3_errcode(db_)),
                  "state " + path_ + ": " + what + ": " + sqlite3_errmsg(db_));
  }

  sqlite3* db_;
  std::string path_;
  std::map<std::string, StmtPtr> stmts_;
};

}  // namespace

Result<std::unique_ptr<PayoutStore>> PayoutStore::Open(const std::string& path, bool read_only) {
  // One thread at a time uses a store (header), so the connection needs no mutex of its own.
  int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
              SQLITE_OPEN_NOMUTEX;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg =
        "cannot open state " + path + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return Status(CodeOf(rc), msg);
  }
  auto store = std::make_unique<SqlitePayoutStore>(db, path);
  PAYOUTD_RETURN_IF_ERROR(store->Init(read_only));
  return std::unique_ptr<PayoutStore>(std::move(store));
}

}  // namespace payoutd
