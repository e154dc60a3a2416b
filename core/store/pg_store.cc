// PayoutStore on PostgreSQL. See pg_store.h for what differs from SQLite, pg_schema.cc for the
// schema, payout_store.h for the contract.
#include "core/store/pg_store.h"

#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unordered_set>
#include <utility>

#include "core/base/failpoint.h"
#include "core/store/pg_schema.h"

namespace payoutd {
namespace {

// The error kinds of payout_store.h, in one place.
Status AlreadyExistsError(std::string m) {
  return Status::AlreadyExists(std::move(m));
}
Status NotFoundError(std::string m) {
  return Status::NotFound(std::move(m));
}
Status FailedPreconditionError(std::string m) {
  return Status::FailedPrecondition(std::move(m));
}
Status InternalError(std::string m) {
  return Status::Internal(std::move(m));
}

constexpr const char* kPayoutColumns =
    "id, batch_id, line, amount_minor, currency, account_number, account_name, operator_code, "
    "method, email, stage, state, attempts, next_at_ms, since_ms, gateway_status, has_fee, "
    "fee_minor, fee_currency, processed_at, error";
constexpr int kPayoutColumnCount = 21;
constexpr const char* kBatchColumns =
    "id, sha256, file_name, rows, status, started_at_ms, finished_at_ms, approvals_required, "
    "held_at_ms, held_by, hold_reason, cancelled_at_ms";
// FindUsedPayoutIds sends the ids in groups of this many (one array parameter each).
constexpr size_t kIdsPerLookup = 10000;
constexpr int kFetchRows = 1000;

// A row selected with kPayoutColumns.
PayoutRow ReadPayoutRow(const PgResult& r, int i) {
  PayoutRow row;
  row.payout.id = std::string(r.Text(i, 0));
  row.batch_id = std::string(r.Text(i, 1));
  row.payout.line = static_cast<uint32_t>(r.Int(i, 2));
  row.payout.amount_minor = r.Int(i, 3);
  row.payout.currency = std::string(r.Text(i, 4));
  row.payout.account_number = std::string(r.Text(i, 5));
  row.payout.account_name = std::string(r.Text(i, 6));
  row.payout.operator_code = std::string(r.Text(i, 7));
  row.payout.method = std::string(r.Text(i, 8));
  row.payout.email = std::string(r.Text(i, 9));
  row.progress.stage = StageFromInt(r.Int(i, 10));
  row.progress.state = FinalStateFromInt(r.Int(i, 11));
  row.progress.attempts = static_cast<int>(r.Int(i, 12));
  row.progress.next_at_ms = r.Int(i, 13);
  row.progress.since_ms = r.Int(i, 14);
  row.progress.gateway_status = std::string(r.Text(i, 15));
  row.progress.has_fee = r.Bool(i, 16);
  row.progress.fee_minor = r.Int(i, 17);
  row.progress.fee_currency = std::string(r.Text(i, 18));
  row.progress.processed_at = std::string(r.Text(i, 19));
  row.progress.error = std::string(r.Text(i, 20));
  return row;
}

BatchRecord ReadBatch(const PgResult& r, int i) {
  BatchRecord b;
  b.id = std::string(r.Text(i, 0));
  b.sha256 = std::string(r.Text(i, 1));
  b.file_name = std::string(r.Text(i, 2));
  b.rows = r.Int(i, 3);
  int64_t status = r.Int(i, 4);
  PAYOUTD_CHECK(status >= 0 && status <= static_cast<int64_t>(BatchRecord::Status::kRejected));
  b.status = static_cast<BatchRecord::Status>(status);
  b.started_at_ms = r.Int(i, 5);
  b.finished_at_ms = r.Int(i, 6);
  b.approvals_required = static_cast<int>(r.Int(i, 7));
  b.hold = Hold{r.Int(i, 8), std::string(r.Text(i, 9)), std::string(r.Text(i, 10))};
  b.cancelled_at_ms = r.Int(i, 11);
  return b;
}

bool AddChecked(int64_t* acc, int64_t v) {
  return !__builtin_add_overflow(*acc, v, acc);
}

int64_t ClampLimit(size_t limit) {
  return limit > static_cast<size_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(limit);
}

// from * 5 + to for every edge IsAllowedTransition allows: payoutd_apply checks the stored
// stages against the rules of core/batch/payout.h, not a copy of them.
std::string AllowedEdges() {
  PgArray edges;
  for (int from = 0; from <= static_cast<int>(Stage::kFinal); ++from) {
    for (int to = 0; to <= static_cast<int>(Stage::kFinal); ++to) {
      if (IsAllowedTransition(static_cast<Stage>(from), static_cast<Stage>(to))) {
        edges.Add(static_cast<int64_t>(from * 5 + to));
      }
    }
  }
  return edges.Take();
}

std::string RandomToken() {
  std::random_device rd;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return buf;
}

// One COPY text-format line of a new payout (stage kNew, nothing else known yet).
void AppendNewPayout(std::string* out, const std::string& batch_id, const Payout& p) {
  AppendCopyField(out, p.id);
  *out += '\t';
  AppendCopyField(out, batch_id);
  *out += '\t';
  *out += std::to_string(p.line);
  *out += '\t';
  *out += std::to_string(p.amount_minor);
  for (const std::string* s :
       {&p.currency, &p.account_number, &p.account_name, &p.operator_code, &p.method, &p.email}) {
    *out += '\t';
    AppendCopyField(out, *s);
  }
  // stage, state, attempts, next_at_ms, since_ms, gateway_status, has_fee, fee_minor,
  // fee_currency, processed_at, error
  *out += "\t0\t0\t0\t0\t0\t\tf\t0\t\t\t\n";
}

class PgPayoutStore final : public PayoutStore {
 public:
  PgPayoutStore(PgConnectOptions db, int64_t fencing, bool read_only)
      : conn_(std::move(db)), fencing_(fencing), read_only_(read_only), allowed_(AllowedEdges()) {}

  Status Init() {
    PgResult r = conn_.Connect();
    if (r.ok()) r = EnsurePgSchema(conn_, !read_only_);
    return r.ToStatus("state " + conn_.where());
  }

  Result<bool> HasBatchId(std::string_view batch_id) override {
    return Exists("SELECT EXISTS (SELECT 1 FROM batches WHERE id = $1)", batch_id);
  }

  Result<bool> HasContent(std::string_view sha256) override {
    return Exists("SELECT EXISTS (SELECT 1 FROM batches WHERE sha256 = $1)", sha256);
  }

  Result<std::vector<std::string>> FindUsedPayoutIds(const PayoutList& payouts) override {
    Txn txn(this, Txn::kSnapshot);  // one snapshot for all lookups
    if (!txn.status().ok()) return txn.status();
    std::vector<std::string> used;
    PgArray ids;
    auto flush = [&]() -> Status {
      if (ids.size() == 0) return Status::Ok();
      PgResult r = conn_.Run(
          "SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u (id, o) "
          "WHERE EXISTS (SELECT 1 FROM payouts p WHERE p.id = u.id) ORDER BY u.o",
          PgParams().Add(ids.Take()));
      if (!r.ok()) return Fail(r, "look up payout ids");
      for (int i = 0; i < r.rows(); ++i) used.emplace_back(r.Text(i, 0));
      return Status::Ok();
    };
    for (size_t i = 0; i < payouts.size(); ++i) {
      ids.Add(payouts.id(i));  // in place: no Payout is materialised
      if (ids.size() >= kIdsPerLookup) {
        if (Status s = flush(); !s.ok()) return s;
      }
    }
    if (Status s = flush(); !s.ok()) return s;
    if (Status s = txn.Commit(); !s.ok()) return s;
    return used;
  }

  Status Apply(const std::vector<PayoutUpdate>& updates) override {
    if (updates.empty()) return Status::Ok();
    if (Status s = CheckWritable("apply"); !s.ok()) return s;
    for (const PayoutUpdate& u : updates) {
      // An outcome goes with the final stage and only with it (checked again by payoutd_apply).
      PAYOUTD_CHECK((u.progress.stage == Stage::kFinal) == (u.progress.state != FinalState::kNone));
    }
    // payoutd_apply takes each id once: a group that moves a payout twice goes in runs, in
    // order, inside one transaction. The engine's groups hardly ever do.
    std::vector<std::pair<size_t, size_t>> runs;
    std::unordered_set<std::string_view> seen;
    size_t start = 0;
    for (size_t i = 0; i < updates.size(); ++i) {
      if (!seen.insert(updates[i].id).second) {
        runs.emplace_back(start, i);
        seen.clear();
        seen.insert(updates[i].id);
        start = i;
      }
    }
    runs.emplace_back(start, updates.size());
    if (runs.size() == 1) return ApplyRun(updates, 0, updates.size());
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    for (auto [from, to] : runs) {
      if (Status s = ApplyRun(updates, from, to); !s.ok()) return s;
    }
    return txn.Commit();
  }

  Status RecordOutage(const GatewayOutage& o) override {
    return WriteOne(
        "INSERT INTO gateway_outages (started_at_ms, ended_at_ms, next_probe_at_ms, cause) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (started_at_ms) DO UPDATE SET "
        "ended_at_ms = excluded.ended_at_ms, next_probe_at_ms = excluded.next_probe_at_ms, "
        "cause = excluded.cause",
        PgParams().Add(o.started_at_ms).Add(o.ended_at_ms).Add(o.next_probe_at_ms).Add(o.cause),
        "record gateway outage");
  }

  Result<std::vector<GatewayOutage>> LoadOutages(int64_t ended_after_ms) override {
    PgResult r = conn_.Run(
        "SELECT started_at_ms, ended_at_ms, next_probe_at_ms, cause FROM gateway_outages "
        "WHERE ended_at_ms = 0 OR ended_at_ms > $1 ORDER BY started_at_ms",
        PgParams().Add(ended_after_ms));
    if (!r.ok()) return Fail(r, "list gateway outages");
    std::vector<GatewayOutage> out;
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(
          GatewayOutage{r.Int(i, 0), r.Int(i, 1), r.Int(i, 2), std::string(r.Text(i, 3))});
    }
    return out;
  }

  Result<std::vector<BatchRecord>> ListBatches() override {
    PgResult r = conn_.Run(std::string("SELECT ") + kBatchColumns +
                           " FROM batches ORDER BY started_at_ms, id");
    if (!r.ok()) return Fail(r, "list batches");
    std::vector<BatchRecord> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(ReadBatch(r, i));
    return out;
  }

  Result<std::optional<BatchRecord>> GetBatch(std::string_view batch_id) override {
    PgResult r = conn_.Run(std::string("SELECT ") + kBatchColumns + " FROM batches WHERE id = $1",
                           PgParams().Add(batch_id));
    if (!r.ok()) return Fail(r, "read batch");
    if (r.rows() == 0) return std::optional<BatchRecord>();
    return std::optional<BatchRecord>(ReadBatch(r, 0));
  }

  Status SetBatchStatus(std::string_view batch_id, BatchRecord::Status status,
                        int64_t at_ms) override {
    if (Status s = CheckWritable("set batch status"); !s.ok()) return s;
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    PgResult r =
        conn_.Run("SELECT status FROM batches WHERE id = $1 FOR UPDATE", PgParams().Add(batch_id));
    if (!r.ok()) return Fail(r, "read batch");
    if (r.rows() == 0) return NotFoundError("unknown batch '" + std::string(batch_id) + "'");
    // Only the moves of the batch's life (payout_store.h), and "finished" or "rejected" means
    // every payout is final.
    auto from = static_cast<BatchRecord::Status>(r.Int(0, 0));
    PAYOUTD_CHECK(from == status || BatchRecord::MayMove(from, status));
    if (status == BatchRecord::Status::kFinished || status == BatchRecord::Status::kRejected) {
      auto pending = CountNotFinal(batch_id);
      if (!pending.ok()) return pending.status();
      PAYOUTD_CHECK(*pending == 0);
    }
    PgResult u = conn_.Run("UPDATE batches SET status = $2, finished_at_ms = $3 WHERE id = $1",
                           PgParams().Add(batch_id).Add(static_cast<int>(status)).Add(at_ms));
    if (!u.ok()) return Fail(u, "update batch status");
    return txn.Commit();
  }

  // --- Finance controls ---

  Result<bool> AddApproval(std::string_view batch_id, const Approval& a) override {
    if (Status s = CheckWritable("record approval"); !s.ok()) return s;
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    PgResult r = conn_.Run(
        "INSERT INTO approvals (batch_id, principal, key_fingerprint, file, at_ms) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (batch_id, principal) DO NOTHING",
        PgParams().Add(batch_id).Add(a.principal).Add(a.key_fingerprint).Add(a.file).Add(a.at_ms));
    if (r.error_kind() == PgErrorKind::kNotFound) {  // a foreign key names no batch
      return NotFoundError("unknown batch '" + std::string(batch_id) + "'");
    }
    if (!r.ok()) return Fail(r, "record approval of batch '" + std::string(batch_id) + "'");
    if (Status s = txn.Commit(); !s.ok()) return s;
    return r.affected() == 1;
  }

  Result<std::vector<Approval>> ListApprovals(std::string_view batch_id) override {
    PgResult r = conn_.Run(
        "SELECT principal, key_fingerprint, file, at_ms FROM approvals WHERE batch_id = $1 "
        "ORDER BY at_ms, principal",
        PgParams().Add(batch_id));
    if (!r.ok()) return Fail(r, "list approvals");
    std::vector<Approval> out;
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(Approval{std::string(r.Text(i, 0)), std::string(r.Text(i, 1)),
                             std::string(r.Text(i, 2)), r.Int(i, 3)});
    }
    return out;
  }

  Status AddAudit(std::string_view batch_id, const AuditEntry& e) override {
    Status s = WriteOne(
        "INSERT INTO audit (batch_id, at_ms, action, \"by\", reason) VALUES ($1, $2, $3, $4, $5)",
        PgParams().Add(batch_id).Add(e.at_ms).Add(e.action).Add(e.by).Add(e.reason),
        "record audit");
    if (s.code() == StatusCode::kNotFound) {  // the batch (a foreign key violation)
      return NotFoundError("unknown batch '" + std::string(batch_id) + "'");
    }
    return s;
  }

  Result<std::vector<AuditEntry>> ListAudit(std::string_view batch_id) override {
    PgResult r = conn_.Run(
        "SELECT at_ms, action, \"by\", reason FROM audit WHERE batch_id = $1 ORDER BY seq",
        PgParams().Add(batch_id));
    if (!r.ok()) return Fail(r, "list audit");
    std::vector<AuditEntry> out;
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(AuditEntry{r.Int(i, 0), std::string(r.Text(i, 1)), std::string(r.Text(i, 2)),
                               std::string(r.Text(i, 3))});
    }
    return out;
  }

  Status SetHold(std::string_view batch_id, const Hold& h) override {
    if (Status s = CheckWritable("hold"); !s.ok()) return s;
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    PgResult r = conn_.Run(
        "UPDATE batches SET held_at_ms = $2, held_by = $3, hold_reason = $4 WHERE id = $1",
        PgParams().Add(batch_id).Add(h.at_ms).Add(h.by).Add(h.reason));
    if (!r.ok()) return Fail(r, "hold batch '" + std::string(batch_id) + "'");
    if (r.affected() != 1) return NotFoundError("unknown batch '" + std::string(batch_id) + "'");
    return txn.Commit();
  }

  Status SetHoldAll(const Hold& h) override {
    if (Status s = CheckWritable("hold all"); !s.ok()) return s;
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    PgResult r = conn_.Run(
        "INSERT INTO settings (key, value) VALUES ('hold_all.at_ms', $1), ('hold_all.by', $2),"
        " ('hold_all.reason', $3) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        PgParams().Add(std::to_string(h.at_ms)).Add(h.by).Add(h.reason));
    if (!r.ok()) return Fail(r, "hold all");
    return txn.Commit();
  }

  Result<Hold> GetHoldAll() override {
    PgResult r = conn_.Run("SELECT key, value FROM settings WHERE key LIKE 'hold\\_all.%'");
    if (!r.ok()) return Fail(r, "read settings");
    Hold h;
    for (int i = 0; i < r.rows(); ++i) {
      std::string_view key = r.Text(i, 0);
      std::string value(r.Text(i, 1));
      if (key == "hold_all.at_ms") h.at_ms = std::strtoll(value.c_str(), nullptr, 10);
      if (key == "hold_all.by") h.by = value;
      if (key == "hold_all.reason") h.reason = value;
    }
    return h;
  }

  Result<CancelOutcome> CancelUnsent(std::string_view batch_id, int64_t at_ms,
                                     std::string_view error) override {
    if (Status s = CheckWritable("cancel"); !s.ok()) return s;
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    PgResult b =
        conn_.Run("SELECT 1 FROM batches WHERE id = $1 FOR UPDATE", PgParams().Add(batch_id));
    if (!b.ok()) return Fail(b, "read batch");
    if (b.rows() == 0) return NotFoundError("unknown batch '" + std::string(batch_id) + "'");
    // Every never-sent payout becomes final CANCELLED, and batch_totals moves with them: each
    // bucket of (new, none) to (final, CANCELLED), fee fields as they were. One statement.
    PgResult r = conn_.Run(R"sql(
WITH cancelled AS (
  UPDATE payouts SET stage = 4, state = 5, next_at_ms = 0, error = $2
  WHERE batch_id = $1 AND stage = 0
  RETURNING currency, has_fee, fee_currency, amount_minor, fee_minor),
sums AS (
  SELECT currency, has_fee, fee_currency, count(*) AS n, sum(amount_minor)::bigint AS a,
         sum(fee_minor)::bigint AS f
  FROM cancelled GROUP BY currency, has_fee, fee_currency),
moved AS (
  INSERT INTO batch_totals AS t
      (batch_id, stage, state, currency, has_fee, fee_currency, payouts, amount_minor, fee_minor)
    SELECT $1, 0, 0, currency, has_fee, fee_currency, -n, -a, -f FROM sums
    UNION ALL
    SELECT $1, 4, 5, currency, has_fee, fee_currency, n, a, f FROM sums
  ON CONFLICT (batch_id, stage, state, currency, has_fee, fee_currency) DO UPDATE SET
    payouts = t.payouts + excluded.payouts,
    amount_minor = t.amount_minor + excluded.amount_minor,
    fee_minor = t.fee_minor + excluded.fee_minor)
SELECT coalesce(sum(n), 0)::bigint FROM sums)sql",
                           PgParams().Add(batch_id).Add(error));
    if (!r.ok()) return Fail(r, "cancel payouts of batch '" + std::string(batch_id) + "'");
    CancelOutcome out;
    out.cancelled = r.Int(0, 0);
    PgResult mark =
        conn_.Run("UPDATE batches SET cancelled_at_ms = $2 WHERE id = $1 AND cancelled_at_ms = 0",
                  PgParams().Add(batch_id).Add(at_ms));
    if (!mark.ok()) return Fail(mark, "mark batch '" + std::string(batch_id) + "' cancelled");
    auto running = CountNotFinal(batch_id);
    if (!running.ok()) return running.status();
    out.still_running = *running;
    out.all_final = out.still_running == 0;
    if (Status s = txn.Commit(); !s.ok()) return s;
    return out;
  }

  Result<std::vector<PayoutRow>> LoadByStage(std::string_view batch_id, Stage stage,
                                             uint32_t after_line, size_t limit) override {
    PgResult r = conn_.Run(std::string("SELECT ") + kPayoutColumns +
                               " FROM payouts WHERE batch_id = $1 AND stage = $2 AND line > $3"
                               " ORDER BY line LIMIT $4",
                           PgParams()
                               .Add(batch_id)
                               .Add(static_cast<int>(stage))
                               .Add(after_line)
                               .Add(ClampLimit(limit)));
    if (!r.ok()) return Fail(r, "load payouts by stage");
    return Rows(r);
  }

  Result<std::vector<PayoutRow>> LoadDue(int64_t now_ms, size_t limit) override {
    PgResult r = conn_.Run(std::string("SELECT ") + kPayoutColumns +
                               " FROM payouts WHERE stage IN (2, 3) AND next_at_ms <= $1"
                               " ORDER BY next_at_ms, seq LIMIT $2",
                           PgParams().Add(now_ms).Add(ClampLimit(limit)));
    if (!r.ok()) return Fail(r, "load due payouts");
    return Rows(r);
  }

  Result<std::vector<DueRow>> LoadDueAfter(int64_t now_ms, DuePosition after,
                                           size_t limit) override {
    // The partial index payouts_due is (next_at_ms, seq): read in order, without a sort.
    PgResult r = conn_.Run(
        std::string("SELECT ") + kPayoutColumns +
            ", seq FROM payouts WHERE stage IN (2, 3) AND next_at_ms <= $1"
            " AND (next_at_ms, seq) > ($3, $4) ORDER BY next_at_ms, seq"
            " LIMIT $2",
        PgParams().Add(now_ms).Add(ClampLimit(limit)).Add(after.next_at_ms).Add(after.row));
    if (!r.ok()) return Fail(r, "load due payouts");
    std::vector<DueRow> rows;
    rows.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      DueRow d;
      d.row = ReadPayoutRow(r, i);
      d.position = DuePosition{d.row.progress.next_at_ms, r.Int(i, kPayoutColumnCount)};
      rows.push_back(std::move(d));
    }
    return rows;
  }

  Result<std::optional<int64_t>> NextDueAt() override {
    PgResult r = conn_.Run(
        "SELECT next_at_ms FROM payouts WHERE stage IN (2, 3) ORDER BY next_at_ms LIMIT 1");
    if (!r.ok()) return Fail(r, "read next due");
    if (r.rows() == 0) return std::optional<int64_t>();
    return std::optional<int64_t>(r.Int(0, 0));
  }

  Result<std::optional<PayoutRow>> GetPayout(std::string_view payout_id) override {
    PgResult r = conn_.Run(std::string("SELECT ") + kPayoutColumns + " FROM payouts WHERE id = $1",
                           PgParams().Add(payout_id));
    if (!r.ok()) return Fail(r, "read payout");
    if (r.rows() == 0) return std::optional<PayoutRow>();
    return std::optional<PayoutRow>(ReadPayoutRow(r, 0));
  }

  Status ForEachPayout(std::string_view batch_id,
                       const std::function<void(const PayoutRow&)>& fn) override {
    // One snapshot, read through a cursor in pages, so memory does not follow the batch and `fn`
    // may read through the store between pages (its reads join the snapshot). Line order from the
    // (batch_id, stage, line) index: one ordered scan per stage, merged (Merge Append).
    Txn txn(this, Txn::kSnapshot);
    if (!txn.status().ok()) return txn.status();
    std::string cursor = "payout_scan_" + std::to_string(++cursors_);
    std::string sql = "DECLARE " + cursor + " NO SCROLL CURSOR FOR ";
    for (int stage = 0; stage <= static_cast<int>(Stage::kFinal); ++stage) {
      if (stage > 0) sql += " UNION ALL ";
      sql += std::string("(SELECT ") + kPayoutColumns + " FROM payouts WHERE batch_id = $1" +
             " AND stage = " + std::to_string(stage) + " ORDER BY line)";
    }
    sql += " ORDER BY line";
    PgResult d = conn_.Exec(sql, PgParams().Add(batch_id));
    if (!d.ok()) return Fail(d, "scan payouts");
    const std::string fetch = "FETCH " + std::to_string(kFetchRows) + " FROM " + cursor;
    for (;;) {
      PgResult page = conn_.Exec(fetch);
      if (!page.ok()) return Fail(page, "scan payouts");
      for (int i = 0; i < page.rows(); ++i) fn(ReadPayoutRow(page, i));
      if (page.rows() < kFetchRows) break;
    }
    if (PgResult c = conn_.Exec("CLOSE " + cursor); !c.ok()) return Fail(c, "scan payouts");
    return txn.Commit();
  }

  Result<BatchProgress> Progress(std::string_view batch_id) override {
    Txn txn(this, Txn::kSnapshot);  // the batch row and the aggregates from one snapshot
    if (!txn.status().ok()) return txn.status();
    auto batch = GetBatch(batch_id);
    if (!batch.ok()) return batch.status();
    if (!batch->has_value()) return NotFoundError("unknown batch '" + std::string(batch_id) + "'");
    BatchProgress progress;
    progress.batch = std::move(**batch);
    // batch_totals holds the GROUP BY of the batch's payouts, kept by CreateBatch and Apply.
    PgResult r = conn_.Run(
        "SELECT stage, state, currency, has_fee, fee_currency, payouts, amount_minor, fee_minor "
        "FROM batch_totals WHERE batch_id = $1",
        PgParams().Add(batch_id));
    if (!r.ok()) return Fail(r, "progress of batch '" + std::string(batch_id) + "'");
    for (int i = 0; i < r.rows(); ++i) {
      if (!AddBucket(r, i, &progress)) {
        return InternalError("progress of batch '" + std::string(batch_id) +
                             "': total overflows int64");
      }
    }
    PgResult o = conn_.Run(
        "SELECT coalesce(min(since_ms), 0) FROM payouts "
        "WHERE batch_id = $1 AND stage < 4 AND since_ms > 0",
        PgParams().Add(batch_id));
    if (!o.ok()) return Fail(o, "oldest pending of batch '" + std::string(batch_id) + "'");
    progress.oldest_pending_since_ms = o.Int(0, 0);
    if (Status s = txn.Commit(); !s.ok()) return s;
    return progress;
  }

 private:
  // A transaction that rolls back unless committed. A read inside another transaction (a
  // ForEachPayout callback asking for Progress) joins it: same snapshot, nothing to do. A write
  // transaction begins with the fencing check.
  class Txn {
   public:
    enum Kind { kWrite, kSnapshot };
    Txn(PgPayoutStore* store, Kind kind) : store_(store) {
      PgConnection& c = store_->conn_;
      if (kind == kSnapshot && c.in_transaction()) return;  // joined
      PAYOUTD_CHECK(!c.in_transaction());                   // writes check CheckWritable() first
      PgResult r = c.ExecScript(kind == kWrite ? "BEGIN"
                                               : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      if (r.ok() && kind == kWrite) r = store_->Fence();
      open_ = c.in_transaction();
      if (!r.ok()) status_ = store_->Fail(r, "begin");
    }
    ~Txn() {
      if (open_ && store_->conn_.connected()) (void)store_->conn_.ExecScript("ROLLBACK");
    }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    const Status& status() const { return status_; }
    // Ends a transaction a failed statement has aborted, so that the connection can be used
    // again at once.
    void Rollback() {
      if (open_ && store_->conn_.connected()) (void)store_->conn_.ExecScript("ROLLBACK");
      open_ = false;
    }
    Status Commit() {
      if (!open_) return status_;  // joined an outer transaction, or BEGIN failed
      open_ = false;
      PgResult r = store_->conn_.ExecScript("COMMIT");
      if (!r.ok()) return store_->Fail(r, "commit");
      return Status::Ok();
    }

   private:
    PgPayoutStore* store_;
    Status status_;
    bool open_ = false;
  };

  // Writes are refused from a read-only store and inside a ForEachPayout callback (its snapshot
  // is read-only), as SQLite refuses them.
  Status CheckWritable(const char* what) {
    if (read_only_) return FailedPreconditionError(std::string(what) + ": the store is read-only");
    if (conn_.in_transaction()) {
      return FailedPreconditionError(std::string(what) +
                                     ": no writes while a ForEachPayout scan is open");
    }
    return Status::Ok();
  }

  PgResult Fence() {
    if (fencing_ == 0) return PgResult();
    return conn_.Run("SELECT payoutd_fence($1)", PgParams().Add(fencing_));
  }

  // One statement in its own transaction, after the fencing check.
  Status WriteOne(const std::string& sql, const PgParams& params, const char* what) {
    if (Status s = CheckWritable(what); !s.ok()) return s;
    if (fencing_ == 0) {
      PgResult r = conn_.Run(sql, params);
      return r.ok() ? Status::Ok() : Fail(r, what);
    }
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    if (PgResult r = conn_.Run(sql, params); !r.ok()) return Fail(r, what);
    return txn.Commit();
  }

  Status ApplyRun(const std::vector<PayoutUpdate>& updates, size_t from, size_t to) {
    PgArray ids, stages, states, attempts, next_ats, sinces, gateway_statuses, has_fees, fees,
        fee_currencies, processed_ats, errors;
    for (size_t i = from; i < to; ++i) {
      const PayoutProgress& u = updates[i].progress;
      ids.Add(updates[i].id);
      stages.Add(static_cast<int64_t>(u.stage));
      states.Add(static_cast<int64_t>(u.state));
      attempts.Add(static_cast<int64_t>(u.attempts));
      next_ats.Add(u.next_at_ms);
      sinces.Add(u.since_ms);
      gateway_statuses.Add(u.gateway_status);
      has_fees.Add(u.has_fee);
      fees.Add(u.fee_minor);
      fee_currencies.Add(u.fee_currency);
      processed_ats.Add(u.processed_at);
      errors.Add(u.error);
    }
    PgParams params;
    params.Add(fencing_).Add(allowed_);
    for (PgArray* a : {&ids, &stages, &states, &attempts, &next_ats, &sinces, &gateway_statuses,
                       &has_fees, &fees, &fee_currencies, &processed_ats, &errors}) {
      params.Add(a->Take());
    }
    PgResult r = conn_.Run(
        "SELECT payoutd_apply($1, $2::integer[], $3::text[], $4::smallint[], $5::smallint[], "
        "$6::integer[], $7::bigint[], $8::bigint[], $9::text[], $10::boolean[], $11::bigint[], "
        "$12::text[], $13::text[], $14::text[])",
        params);
    if (r.ok()) return Status::Ok();
    if (r.error_kind() == PgErrorKind::kForbidden) {
      // The state machine, enforced where it becomes durable: the database refused the group
      // (nothing of it is written), and a forbidden edge is a bug of the caller.
      std::fprintf(stderr, "payoutd: %s\n", r.message().c_str());
      PAYOUTD_CHECK(r.error_kind() != PgErrorKind::kForbidden);
    }
    if (r.error_kind() == PgErrorKind::kNotFound) return NotFoundError(r.message());
    if (r.sqlstate() == "22003") {
      return InternalError("apply: totals overflow int64 (" + r.message() + ")");
    }
    return Fail(r, "apply");
  }

  Status CreateBatch(const BatchRecord& batch, const PayoutList& payouts) override {
    if (Status s = CheckWritable("create batch"); !s.ok()) return s;
    // The last call for this batch got no answer to its COMMIT: if that COMMIT went through, the
    // batch is ours, recorded whole, and this call is its retry.
    if (pending_create_ && pending_create_->first == batch.id) {
      PgResult r =
          conn_.Run("SELECT created_by FROM batches WHERE id = $1", PgParams().Add(batch.id));
      if (!r.ok()) return Fail(r, "read batch");
      bool ours = r.rows() == 1 && r.Text(0, 0) == pending_create_->second;
      pending_create_.reset();
      if (ours) return Status::Ok();
    }
    std::map<std::string, std::pair<int64_t, int64_t>, std::less<>> by_currency;  // count, sum
    for (const Payout& p : payouts) {
      auto& [count, sum] = by_currency[p.currency];
      if (!AddChecked(&count, 1) || !AddChecked(&sum, p.amount_minor)) {
        return InternalError("batch '" + batch.id + "': the " + p.currency +
                             " total overflows int64");
      }
    }
    std::string token = RandomToken();
    Txn txn(this, Txn::kWrite);
    if (!txn.status().ok()) return txn.status();
    if (Status s = CheckUnseen(batch); !s.ok()) return s;
    PgResult r = conn_.Run(
        "INSERT INTO batches (id, sha256, file_name, rows, status, started_at_ms, finished_at_ms,"
        " approvals_required, held_at_ms, held_by, hold_reason, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        PgParams()
            .Add(batch.id)
            .Add(batch.sha256)
            .Add(batch.file_name)
            .Add(batch.rows)
            .Add(static_cast<int>(batch.status))
            .Add(batch.started_at_ms)
            .Add(batch.finished_at_ms)
            .Add(batch.approvals_required)
            .Add(batch.hold.at_ms)
            .Add(batch.hold.by)
            .Add(batch.hold.reason)
            .Add(token));
    if (r.error_kind() == PgErrorKind::kUniqueViolation) {
      return AlreadyExistsError("batch '" + batch.id + "' was recorded meanwhile (" + r.message() +
                                ")");
    }
    if (!r.ok()) return Fail(r, "insert batch '" + batch.id + "'");
    auto it = payouts.begin();
    auto end = payouts.end();
    r = conn_.CopyIn(std::string("COPY payouts (") + kPayoutColumns + ") FROM STDIN",
                     [&](std::string* buf) {
                       if (it == end) return false;
                       AppendNewPayout(buf, batch.id, *it);
                       ++it;
                       return it != end;
                     });
    if (r.error_kind() == PgErrorKind::kUniqueViolation) {
      txn.Rollback();
      return UsedPayoutIdError(payouts);
    }
    if (!r.ok()) return Fail(r, "insert the payouts of batch '" + batch.id + "'");
    for (const auto& [currency, sums] : by_currency) {
      r = conn_.Run(
          "INSERT INTO batch_totals (batch_id, stage, state, currency, has_fee, fee_currency,"
          " payouts, amount_minor, fee_minor) VALUES ($1, 0, 0, $2, false, '', $3, $4, 0)",
          PgParams().Add(batch.id).Add(currency).Add(sums.first).Add(sums.second));
      if (!r.ok()) return Fail(r, "insert the totals of batch '" + batch.id + "'");
    }
    Status committed = txn.Commit();
    if (committed.ok() && PAYOUTD_FAILPOINT("pg_store.create_batch.commit_answer_lost")) {
      conn_.Close();  // as if the connection broke after the server committed
      committed = Status::Unavailable("state " + conn_.where() + ": commit: connection lost");
    }
    if (!committed.ok() && !conn_.connected()) pending_create_.emplace(batch.id, token);
    return committed;
  }

  Status CheckUnseen(const BatchRecord& batch) {
    PgResult r = conn_.Run("SELECT id, sha256 FROM batches WHERE id = $1 OR sha256 = $2",
                           PgParams().Add(batch.id).Add(batch.sha256));
    if (!r.ok()) return Fail(r, "look up batch");
    for (int i = 0; i < r.rows(); ++i) {
      if (r.Text(i, 0) == batch.id) {
        return AlreadyExistsError("batch id '" + batch.id + "' was seen before");
      }
    }
    if (r.rows() > 0) {
      return AlreadyExistsError("batch content (sha256 " + batch.sha256 +
                                ") was seen before, as batch '" + std::string(r.Text(0, 0)) + "'");
    }
    return Status::Ok();
  }

  // After COPY met a payout id that exists: names the first one, in the batch's order, that was
  // used before (by an earlier batch, or earlier in this one).
  Status UsedPayoutIdError(const PayoutList& payouts) {
    auto used = FindUsedPayoutIds(payouts);
    if (!used.ok()) return used.status();
    std::set<std::string, std::less<>> earlier(used->begin(), used->end());
    std::unordered_set<std::string_view> in_batch;
    for (size_t i = 0; i < payouts.size(); ++i) {
      std::string_view id = payouts.id(i);
      if (earlier.count(id) > 0 || !in_batch.emplace(id).second) {
        return AlreadyExistsError("payout id '" + std::string(id) + "' (line " +
                                  std::to_string(payouts.line(i)) + ") was used before");
      }
    }
    return AlreadyExistsError("a payout id was used before (recorded meanwhile)");
  }

  Result<int64_t> CountNotFinal(std::string_view batch_id) {
    PgResult c = conn_.Run("SELECT count(*) FROM payouts WHERE batch_id = $1 AND stage < 4",
                           PgParams().Add(batch_id));
    if (!c.ok()) return Fail(c, "count pending payouts");
    return c.Int(0, 0);
  }

  Result<bool> Exists(const char* sql, std::string_view key) {
    PgResult r = conn_.Run(sql, PgParams().Add(key));
    if (!r.ok()) return Fail(r, "lookup");
    return r.Bool(0, 0);
  }

  static bool AddBucket(const PgResult& r, int i, BatchProgress* progress) {
    return AddToProgress(
        TotalsBucket{StageFromInt(r.Int(i, 0)), FinalStateFromInt(r.Int(i, 1)), r.Text(i, 2),
                     r.Bool(i, 3), r.Text(i, 4), r.Int(i, 5), r.Int(i, 6), r.Int(i, 7)},
        progress);
  }

  static std::vector<PayoutRow> Rows(const PgResult& r) {
    std::vector<PayoutRow> rows;
    rows.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) rows.push_back(ReadPayoutRow(r, i));
    return rows;
  }

  Status Fail(const PgResult& r, const std::string& what) const {
    return r.ToStatus("state " + conn_.where() + ": " + what);
  }

  PgConnection conn_;
  const int64_t fencing_;
  const bool read_only_;
  const std::string allowed_;
  int64_t cursors_ = 0;
  // The batch id and token of a CreateBatch whose COMMIT got no answer.
  std::optional<std::pair<std::string, std::string>> pending_create_;
};

}  // namespace

Result<std::unique_ptr<PayoutStore>> OpenPgPayoutStore(PgConnectOptions db, int64_t fencing_token,
                                                       bool read_only) {
  // A session that dies with its client: a transaction left open by a client that vanished
  // would hold the fencing row and keep a standby from taking over.
  db.session_sql += "SET idle_in_transaction_session_timeout = 60000; ";
  db.session_sql += kPgDropVanishedClients;
  if (read_only) db.session_sql += " SET default_transaction_read_only = on;";
  auto store = std::make_unique<PgPayoutStore>(std::move(db), fencing_token, read_only);
  if (Status s = store->Init(); !s.ok()) return s;
  return std::unique_ptr<PayoutStore>(std::move(store));
}

}  // namespace payoutd
