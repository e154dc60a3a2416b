// payoutd migrate-state: a single-host SQLite state moves into PostgreSQL whole (finished and
// unfinished batches, every payout's progress, totals, gateway outages, the stored order), the
// duplicate rules hold across the move, and a target that is not empty is refused untouched.
#include "core/store/migrate.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/store/open_store.h"
#include "core/store/payout_store.h"
#include "tests/support/postgres_server.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "migrate_test.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

Payout MakePayout(const std::string& batch, int i) {
  Payout p;
  p.line = static_cast<uint32_t>(i + 2);
  p.id = batch + "-" + std::to_string(i);
  p.amount_minor = 1000 + i;
  p.currency = i % 2 ? "USD" : "EUR";
  p.account_number = "DE8937040044053201" + std::to_string(i);
  p.account_name = "Jane \"Tab\"\tRoe\\" + std::to_string(i);  // COPY escapes must hold
  p.operator_code = "OP1";
  p.method = "BANK_TRANSFER";
  p.email = i % 2 ? "jane@example.com" : "";
  return p;
}

PayoutList MakePayouts(const std::string& batch, int n) {
  PayoutList out;
  for (int i = 0; i < n; ++i) out.push_back(MakePayout(batch, i));
  return out;
}

BatchRecord MakeBatch(const std::string& id, int64_t rows, int64_t started) {
  BatchRecord b;
  b.id = id;
  b.sha256 = "sha-of-" + id;
  b.file_name = id + ".csv";
  b.rows = rows;
  b.started_at_ms = started;
  return b;
}

PayoutUpdate Update(const std::string& id, Stage stage, FinalState state = FinalState::kNone) {
  PayoutUpdate u;
  u.id = id;
  u.progress.stage = stage;
  u.progress.state = state;
  return u;
}

void Must(const Status& s) {
  ASSERT_TRUE(s.ok()) << s.message();
}

// A single-host state: "done" finished and reported, "open" half way (new, submitting, polling
// and final payouts, fees, ties on next_at_ms), and a gateway outage.
void BuildSqliteState(const std::string& path) {
  auto r = PayoutStore::Open(path);
  ASSERT_TRUE(r.ok()) << r.error();
  PayoutStore& store = **r;
  Must(store.CreateBatch(MakeBatch("done", 3, 1'790'000'000'000), MakePayouts("done", 3)));
  for (int i = 0; i < 3; ++i) {
    std::string id = "done-" + std::to_string(i);
    Must(store.Apply({Update(id, Stage::kSubmitting)}));
    FinalState outcome = i == 2 ? FinalState::kFailed : FinalState::kSuccess;
    PayoutUpdate fin = Update(id, Stage::kFinal, outcome);
    fin.progress.attempts = 1;
    fin.progress.gateway_status = i == 2 ? "FAILED" : "SUCCESS";
    fin.progress.has_fee = true;
    fin.progress.fee_minor = 25 + i;
    fin.progress.fee_currency = "EUR";
    fin.progress.processed_at = "2026-11-24T01:02:03Z";
    Must(store.Apply({fin}));
  }
  Must(store.SetBatchStatus("done", BatchRecord::Status::kFinished, 1'790'000'100'000));
  Must(store.SetBatchStatus("done", BatchRecord::Status::kReported, 1'790'000'100'000));

  Must(store.CreateBatch(MakeBatch("open", 8, 1'790'000'200'000), MakePayouts("open", 8)));
  Must(store.SetHold("open", Hold{1'790'000'210'000, "alice (uid 1001)", "check \"IBANs\""}));
  Must(store.AddAudit("open", AuditEntry{1'790'000'210'000, "hold", "alice (uid 1001)", "x"}));
  Must(store.AddAudit("open", AuditEntry{1'790'000'220'000, "resume", "bob (uid 1002)", ""}));
  Must(store.SetHoldAll(Hold{1'790'000'230'000, "ops (uid 1003)", "bank holiday"}));
  BatchRecord waiting = MakeBatch("waiting", 1, 1'790'000'240'000);
  waiting.status = BatchRecord::Status::kAwaitingApproval;
  waiting.approvals_required = 2;
  Must(store.CreateBatch(waiting, MakePayouts("waiting", 1)));
  ASSERT_TRUE(*store.AddApproval("waiting", Approval{"alice@example.com", "SHA256:a", "w.sig", 9}));
  std::vector<PayoutUpdate> group;
  for (int i = 0; i < 6; ++i) {
    PayoutUpdate u = Update("open-" + std::to_string(i), Stage::kSubmitting);
    u.progress.attempts = 1;
    group.push_back(u);
  }
  Must(store.Apply(group));
  for (int i = 0; i < 4; ++i) {
    Stage stage = i == 3 ? Stage::kUnknown : Stage::kPolling;
    PayoutUpdate u = Update("open-" + std::to_string(i), stage);
    u.progress.attempts = 1;
    u.progress.next_at_ms = 5000 + (i / 2);  // ties: the stored order breaks them
    u.progress.since_ms = 400 + i;
    u.progress.gateway_status = "PENDING";
    u.progress.error = i == 3 ? "timeout" : "";
    Must(store.Apply({u}));
  }
  Must(store.Apply({Update("open-5", Stage::kFinal, FinalState::kRejected)}));
  Must(store.CreateBatch(MakeBatch("gone", 2, 1'790'000'250'000), MakePayouts("gone", 2)));
  Must(store.CancelUnsent("gone", 1'790'000'260'000, "cancelled by alice (uid 1001)").status());
  Must(store.RecordOutage(GatewayOutage{1'790'000'000'500, 1'790'000'060'000, 0, "refused"}));
  Must(store.RecordOutage(GatewayOutage{1'790'000'300'000, 0, 1'790'000'300'500, "5xx"}));
}

std::vector<PayoutRow> AllRows(PayoutStore& store, const std::string& batch) {
  std::vector<PayoutRow> rows;
  EXPECT_TRUE(store.ForEachPayout(batch, [&](const PayoutRow& r) { rows.push_back(r); }).ok());
  return rows;
}

void ExpectSameRow(const PayoutRow& a, const PayoutRow& b) {
  EXPECT_EQ(a.batch_id, b.batch_id);
  EXPECT_EQ(a.payout.id, b.payout.id);
  EXPECT_EQ(a.payout.line, b.payout.line);
  EXPECT_EQ(a.payout.amount_minor, b.payout.amount_minor);
  EXPECT_EQ(a.payout.currency, b.payout.currency);
  EXPECT_EQ(a.payout.account_number, b.payout.account_number);
  EXPECT_EQ(a.payout.account_name, b.payout.account_name);
  EXPECT_EQ(a.payout.operator_code, b.payout.operator_code);
  EXPECT_EQ(a.payout.method, b.payout.method);
  EXPECT_EQ(a.payout.email, b.payout.email);
  EXPECT_EQ(a.progress.stage, b.progress.stage);
  EXPECT_EQ(a.progress.state, b.progress.state);
  EXPECT_EQ(a.progress.attempts, b.progress.attempts);
  EXPECT_EQ(a.progress.next_at_ms, b.progress.next_at_ms);
  EXPECT_EQ(a.progress.since_ms, b.progress.since_ms);
  EXPECT_EQ(a.progress.gateway_status, b.progress.gateway_status);
  EXPECT_EQ(a.progress.has_fee, b.progress.has_fee);
  EXPECT_EQ(a.progress.fee_minor, b.progress.fee_minor);
  EXPECT_EQ(a.progress.fee_currency, b.progress.fee_currency);
  EXPECT_EQ(a.progress.processed_at, b.progress.processed_at);
  EXPECT_EQ(a.progress.error, b.progress.error);
}

std::unique_ptr<PayoutStore> OpenPg(const std::string& uri) {
  StateOptions state;
  state.backend = StateOptions::Backend::kPostgresql;
  state.url = uri;
  auto r = OpenStore(state);
  if (!r.ok()) {
    ADD_FAILURE() << r.error();
    return nullptr;
  }
  return std::move(r).value();
}

TEST(MigrateState, MovesEveryBatchPayoutTotalAndOutageAndKeepsTheDuplicateRules) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  TempDir dir;
  std::string path = dir.File("state.db");
  ASSERT_NO_FATAL_FAILURE(BuildSqliteState(path));
  std::string uri = server->CreateDatabase();

  auto report = MigrateState("sqlite:" + path, uri);
  ASSERT_TRUE(report.ok()) << report.error();
  EXPECT_EQ(report->rows.at("batches"), 4);
  EXPECT_EQ(report->rows.at("payouts"), 14);
  EXPECT_EQ(report->rows.at("approvals"), 1);
  EXPECT_EQ(report->rows.at("audit"), 2);
  EXPECT_EQ(report->rows.at("settings"), 3);
  EXPECT_EQ(report->rows.at("gateway_outages"), 2);
  EXPECT_GT(report->rows.at("batch_totals"), 0);

  auto from = PayoutStore::Open(path, /*read_only=*/true);
  ASSERT_TRUE(from.ok()) << from.error();
  auto to = OpenPg(uri);
  ASSERT_TRUE(to);
  auto batches_from = (*from)->ListBatches();
  auto batches_to = to->ListBatches();
  ASSERT_TRUE(batches_to.ok()) << batches_to.error();
  ASSERT_EQ(batches_to->size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const BatchRecord& a = (*batches_from)[i];
    const BatchRecord& b = (*batches_to)[i];
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.sha256, b.sha256);
    EXPECT_EQ(a.file_name, b.file_name);
    EXPECT_EQ(a.rows, b.rows);
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.started_at_ms, b.started_at_ms);
    EXPECT_EQ(a.finished_at_ms, b.finished_at_ms);
    EXPECT_EQ(a.approvals_required, b.approvals_required);
    EXPECT_EQ(a.hold.at_ms, b.hold.at_ms);
    EXPECT_EQ(a.hold.by, b.hold.by);
    EXPECT_EQ(a.hold.reason, b.hold.reason);
    EXPECT_EQ(a.cancelled_at_ms, b.cancelled_at_ms);
    auto rows_from = AllRows(**from, a.id);
    auto rows_to = AllRows(*to, a.id);
    ASSERT_EQ(rows_from.size(), rows_to.size());
    for (size_t r = 0; r < rows_from.size(); ++r) ExpectSameRow(rows_from[r], rows_to[r]);
    auto p_from = (*from)->Progress(a.id);
    auto p_to = to->Progress(a.id);
    ASSERT_TRUE(p_to.ok()) << p_to.error();
    EXPECT_EQ(p_from->stages, p_to->stages);
    EXPECT_EQ(p_from->states, p_to->states);
    EXPECT_EQ(p_from->oldest_pending_since_ms, p_to->oldest_pending_since_ms);
    ASSERT_EQ(p_from->totals.size(), p_to->totals.size());
    for (const auto& [currency, t] : p_from->totals) {
      const CurrencyTotals& u = p_to->totals.at(currency);
      EXPECT_EQ(t.requested, u.requested);
      EXPECT_EQ(t.succeeded, u.succeeded);
      EXPECT_EQ(t.failed, u.failed);
      EXPECT_EQ(t.pending, u.pending);
      EXPECT_EQ(t.fees, u.fees);
    }
  }
  // The due payouts come in the same order, positions included (seq is SQLite's rowid).
  auto due_from = (*from)->LoadDueAfter(INT64_MAX, DuePosition{}, 100);
  auto due_to = to->LoadDueAfter(INT64_MAX, DuePosition{}, 100);
  ASSERT_TRUE(due_to.ok()) << due_to.error();
  ASSERT_EQ(due_from->size(), due_to->size());
  ASSERT_EQ(due_to->size(), 4u);
  for (size_t i = 0; i < due_to->size(); ++i) {
    EXPECT_EQ((*due_from)[i].row.payout.id, (*due_to)[i].row.payout.id);
    EXPECT_EQ((*due_from)[i].position.row, (*due_to)[i].position.row);
  }
  // The finance controls: approvals, the audit trail in its order, holds.
  auto approvals = to->ListApprovals("waiting");
  ASSERT_TRUE(approvals.ok()) << approvals.error();
  ASSERT_EQ(approvals->size(), 1u);
  EXPECT_EQ((*approvals)[0].key_fingerprint, "SHA256:a");
  EXPECT_FALSE(*to->AddApproval("waiting", Approval{"alice@example.com", "SHA256:b", "x", 10}));
  ASSERT_TRUE(to->AddAudit("open", AuditEntry{1, "cancel", "carol (uid 1004)", ""}).ok());
  auto audit = to->ListAudit("open");
  ASSERT_TRUE(audit.ok()) << audit.error();
  ASSERT_EQ(audit->size(), 3u);
  EXPECT_EQ((*audit)[0].action, "hold");
  EXPECT_EQ((*audit)[1].by, "bob (uid 1002)");
  EXPECT_EQ((*audit)[2].action, "cancel") << "a line added after the move comes after the moved";
  EXPECT_EQ(to->GetHoldAll()->reason, "bank holiday");
  EXPECT_EQ((*to->GetBatch("open"))->hold.reason, "check \"IBANs\"");
  EXPECT_EQ((*to->GetBatch("gone"))->cancelled_at_ms, 1'790'000'260'000);

  auto outages = to->LoadOutages(0);
  ASSERT_TRUE(outages.ok()) << outages.error();
  ASSERT_EQ(outages->size(), 2u);
  EXPECT_EQ((*outages)[1].ended_at_ms, 0);
  EXPECT_EQ((*outages)[1].next_probe_at_ms, 1'790'000'300'500);
  EXPECT_EQ((*outages)[0].cause, "refused");

  // A re-drop of a migrated batch is refused by the duplicate rules, whichever rule it meets.
  EXPECT_TRUE(*to->HasBatchId("done"));
  EXPECT_TRUE(*to->HasContent("sha-of-done"));
  EXPECT_EQ(to->CreateBatch(MakeBatch("done", 3, 1), MakePayouts("done", 3)).code(),
            StatusCode::kAlreadyExists);
  BatchRecord renamed = MakeBatch("done-again", 3, 1);
  renamed.sha256 = "sha-of-done";
  EXPECT_EQ(to->CreateBatch(renamed, MakePayouts("x", 3)).code(), StatusCode::kAlreadyExists);
  PayoutList reused = MakePayouts("fresh", 2);
  reused.push_back(MakePayout("open", 7));
  EXPECT_EQ(to->CreateBatch(MakeBatch("fresh", 3, 1), reused).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(*to->FindUsedPayoutIds(reused), (std::vector<std::string>{"open-7"}));

  // The unfinished batch goes on where it was; new payouts are stored after the moved ones.
  ASSERT_TRUE(to->Apply({Update("open-6", Stage::kSubmitting)}).ok());
  ASSERT_TRUE(to->CreateBatch(MakeBatch("fresh", 2, 1), MakePayouts("fresh", 2)).ok());
  PayoutUpdate poll = Update("fresh-0", Stage::kSubmitting);
  ASSERT_TRUE(to->Apply({poll}).ok());
  poll.progress.stage = Stage::kPolling;
  poll.progress.next_at_ms = 5000;
  ASSERT_TRUE(to->Apply({poll}).ok());
  auto due = to->LoadDueAfter(INT64_MAX, DuePosition{}, 100);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 5u);
  EXPECT_EQ((*due)[2].row.payout.id, "fresh-0");  // a tie at 5000 with open-0, open-1: last
}

TEST(MigrateState, RefusesATargetThatIsNotEmptyAndLeavesItAsItWas) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  TempDir dir;
  std::string path = dir.File("state.db");
  ASSERT_NO_FATAL_FAILURE(BuildSqliteState(path));
  std::string uri = server->CreateDatabase();
  ASSERT_TRUE(MigrateState("sqlite:" + path, uri).ok());
  auto again = MigrateState("sqlite:" + path, uri);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.error().find("not empty"), std::string::npos) << again.error();

  std::string other = server->CreateDatabase();
  {
    auto store = OpenPg(other);  // an instance already uses it
    ASSERT_TRUE(store->RecordOutage(GatewayOutage{1, 0, 2, "x"}).ok());
  }
  auto busy = MigrateState("sqlite:" + path, other);
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().find("gateway_outages"), std::string::npos) << busy.error();
  auto store = OpenPg(other);
  EXPECT_TRUE(store->ListBatches()->empty());
  EXPECT_EQ(store->LoadOutages(0)->size(), 1u);
}

TEST(MigrateState, RefusesASourceTableThePostgresqlSchemaHasNoPlaceFor) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  TempDir dir;
  std::string path = dir.File("state.db");
  ASSERT_NO_FATAL_FAILURE(BuildSqliteState(path));
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE holds (batch_id TEXT); INSERT INTO holds VALUES ('x')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  std::string uri = server->CreateDatabase();
  auto r = MigrateState("sqlite:" + path, uri);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("table holds"), std::string::npos) << r.error();
  EXPECT_TRUE(OpenPg(uri)->ListBatches()->empty());
}

TEST(MigrateState, RefusesArgumentsOfTheWrongForm) {
  EXPECT_EQ(MigrateState("/var/lib/payoutd/state.db", "postgresql://h/db").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MigrateState("sqlite:", "postgresql://h/db").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MigrateState("sqlite:/x.db", "mysql://h/db").code(), StatusCode::kInvalidArgument);
  auto bad = MigrateState("sqlite:/x.db", "postgresql://u:s3cret@h/db?nonsense=1");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.error().find("s3cret"), std::string::npos) << bad.error();
}

}  // namespace
}  // namespace payoutd
