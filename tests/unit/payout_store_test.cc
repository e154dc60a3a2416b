// PayoutStore: persistence, duplicate refusal, the state machine at the durable boundary, queries,
// aggregates, concurrent read-only access and all-or-nothing commits under a crash. The contract
// runs on both backends (SQLite, PostgreSQL); what only one of them has stays its own.
#include "core/store/payout_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/store/open_store.h"
#include "core/store/pg_connection.h"
#include "tests/support/payout_list.h"
#include "tests/support/postgres_server.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "payout_store_test.XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

Payout MakePayout(const std::string& batch, int i, int64_t amount = 1000,
                  const std::string& currency = "USD") {
  Payout p;
  p.line = static_cast<uint32_t>(i + 2);
  p.id = batch + "-" + std::to_string(i);
  p.amount_minor = amount;
  p.currency = currency;
  p.account_number = "DE8937040044053201" + std::to_string(i % 100);
  p.account_name = "Jane Roe " + std::to_string(i);
  p.operator_code = "OP1";
  p.method = "BANK_TRANSFER";
  p.email = i % 2 ? "jane@example.com" : "";
  return p;
}

std::vector<Payout> MakePayouts(const std::string& batch, int n) {
  std::vector<Payout> out;
  for (int i = 0; i < n; ++i) out.push_back(MakePayout(batch, i, 100 + i));
  return out;
}

PayoutList MakePayoutList(const std::string& batch, int n) {
  return ToPayoutList(MakePayouts(batch, n));
}

BatchRecord MakeBatch(const std::string& id, int64_t rows) {
  BatchRecord b;
  b.id = id;
  b.sha256 = "sha-of-" + id;
  b.file_name = id + ".csv";
  b.rows = rows;
  b.started_at_ms = 1'790'000'000'000;
  return b;
}

std::unique_ptr<PayoutStore> OpenOrDie(const std::string& path, bool read_only = false) {
  auto r = PayoutStore::Open(path, read_only);
  if (!r.ok()) {
    ADD_FAILURE() << r.error();
    return nullptr;
  }
  return std::move(r).value();
}

PayoutUpdate UpdateTo(const std::string& id, Stage stage, FinalState state = FinalState::kNone) {
  PayoutUpdate u;
  u.id = id;
  u.progress.stage = stage;
  u.progress.state = state;
  return u;
}

// Walks a payout from kNew along allowed edges to `path`'s last stage, one Apply per step.
void Walk(PayoutStore& store, const std::string& id, const std::vector<PayoutUpdate>& steps) {
  for (PayoutUpdate u : steps) {
    u.id = id;
    Status s = store.Apply({u});
    ASSERT_TRUE(s.ok()) << s.message();
  }
}

int64_t CountPayouts(const std::string& path, const std::string& batch_id) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(
      sqlite3_prepare_v2(db, "SELECT count(*) FROM payouts WHERE batch_id = ?1", -1, &s, nullptr),
      SQLITE_OK);
  sqlite3_bind_text(s, 1, batch_id.c_str(), -1, SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

// --- One suite, both backends ------------------------------------------------------------------
// Every test of the PayoutStore contract runs on SQLite (a file in a temporary folder) and on
// PostgreSQL (a fresh database in the test binary's throwaway server, tests/support/
// postgres_server.h). Open() opens another store on the same state, as a restart would. The
// tests below that look at SQLite's own file (schema migration, WAL crashes) stay SQLite-only;
// PostgreSQL's own behaviour (fencing, reconnection) is in pg_store_test.cc.
enum class Backend { kSqlite, kPostgresql };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "sqlite" : "postgresql";
}

class PayoutStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() != Backend::kPostgresql) return;
    PAYOUTD_REQUIRE_POSTGRES(server);
    uri_ = server->CreateDatabase();
  }

  // Through the factory the daemon uses (state.backend picks the implementation).
  std::unique_ptr<PayoutStore> Open(bool read_only = false) {
    StateOptions state;
    if (GetParam() == Backend::kSqlite) {
      state.path = path_;
    } else {
      state.backend = StateOptions::Backend::kPostgresql;
      state.url = uri_;
    }
    auto r = OpenStore(state, StoreAccess{.read_only = read_only});
    if (!r.ok()) {
      ADD_FAILURE() << r.error();
      return nullptr;
    }
    return std::move(r).value();
  }

  // Payout rows of the batch, counted in the database itself.
  int64_t CountPayouts(const std::string& batch_id) {
    if (GetParam() == Backend::kSqlite) return payoutd::CountPayouts(path_, batch_id);
    PgConnectOptions db;
    db.url = uri_;
    PgConnection conn(db);
    PgResult r =
        conn.Exec("SELECT count(*) FROM payouts WHERE batch_id = $1", PgParams().Add(batch_id));
    EXPECT_TRUE(r.ok()) << r.message();
    return r.ok() ? r.Int(0, 0) : -1;
  }

  TempDir dir_;
  std::string path_ = dir_.File("state.db");
  std::string uri_;
};
using PayoutStoreDeathTest = PayoutStoreTest;

TEST_P(PayoutStoreTest, CreateBatchPersistsBatchAndPayoutsAcrossReopen) {
  std::vector<Payout> payouts = MakePayouts("b1", 3);
  {
    auto store = Open();
    ASSERT_TRUE(store);
    Status s = store->CreateBatch(MakeBatch("b1", 3), ToPayoutList(payouts));
    ASSERT_TRUE(s.ok()) << s.message();
  }
  auto store = Open();
  ASSERT_TRUE(store);
  auto batch = store->GetBatch("b1");
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE(batch->has_value());
  EXPECT_EQ((*batch)->sha256, "sha-of-b1");
  EXPECT_EQ((*batch)->file_name, "b1.csv");
  EXPECT_EQ((*batch)->rows, 3);
  EXPECT_EQ((*batch)->status, BatchRecord::Status::kActive);
  EXPECT_EQ((*batch)->started_at_ms, 1'790'000'000'000);
  EXPECT_TRUE(*store->HasBatchId("b1"));
  EXPECT_FALSE(*store->HasBatchId("b2"));
  EXPECT_TRUE(*store->HasContent("sha-of-b1"));
  EXPECT_FALSE(*store->HasContent("sha-of-b2"));

  auto row = store->GetPayout("b1-1");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  const PayoutRow& r = **row;
  EXPECT_EQ(r.batch_id, "b1");
  EXPECT_EQ(r.payout.line, 3u);
  EXPECT_EQ(r.payout.amount_minor, 101);
  EXPECT_EQ(r.payout.currency, "USD");
  EXPECT_EQ(r.payout.account_number, payouts[1].account_number);
  EXPECT_EQ(r.payout.account_name, "Jane Roe 1");
  EXPECT_EQ(r.payout.operator_code, "OP1");
  EXPECT_EQ(r.payout.method, "BANK_TRANSFER");
  EXPECT_EQ(r.payout.email, "jane@example.com");
  EXPECT_EQ(r.progress.stage, Stage::kNew);
  EXPECT_EQ(r.progress.state, FinalState::kNone);
  EXPECT_EQ(r.progress.attempts, 0);
  EXPECT_FALSE(store->GetPayout("nope")->has_value());

  auto list = store->ListBatches();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "b1");
}

TEST_P(PayoutStoreTest, CreateBatchRefusesSeenBatchIdAndRecordsNothing) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 2), MakePayoutList("b1", 2)).ok());
  BatchRecord again = MakeBatch("b1", 2);
  again.sha256 = "other-content";
  Status s = store->CreateBatch(again, MakePayoutList("x", 2));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("batch id 'b1'"), std::string::npos) << s.message();
  EXPECT_FALSE(*store->HasContent("other-content"));
  EXPECT_FALSE(store->GetPayout("x-0")->has_value());
}

TEST_P(PayoutStoreTest, CreateBatchRefusesSeenContentAndRecordsNothing) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 2), MakePayoutList("b1", 2)).ok());
  BatchRecord copy = MakeBatch("b2", 2);
  copy.sha256 = "sha-of-b1";
  Status s = store->CreateBatch(copy, MakePayoutList("b2", 2));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("sha256"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'b1'"), std::string::npos) << s.message();
  EXPECT_FALSE(*store->HasBatchId("b2"));
  EXPECT_FALSE(store->GetPayout("b2-0")->has_value());
}

TEST_P(PayoutStoreTest, CreateBatchRefusesPayoutIdOfEarlierBatchAndRecordsNothing) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 2), MakePayoutList("b1", 2)).ok());
  std::vector<Payout> second = MakePayouts("b2", 5);
  second[3].id = "b1-1";  // reused
  Status s = store->CreateBatch(MakeBatch("b2", 5), ToPayoutList(second));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("payout id 'b1-1'"), std::string::npos) << s.message();
  EXPECT_FALSE(*store->HasBatchId("b2"));
  EXPECT_FALSE(*store->HasContent("sha-of-b2"));
  EXPECT_EQ(CountPayouts("b2"), 0);
  EXPECT_EQ((*store->GetPayout("b1-1"))->batch_id, "b1");
}

TEST_P(PayoutStoreTest, CreateBatchRefusesPayoutIdRepeatedInsideTheBatch) {
  auto store = Open();
  std::vector<Payout> payouts = MakePayouts("b1", 4);
  payouts[2].id = payouts[0].id;
  Status s = store->CreateBatch(MakeBatch("b1", 4), ToPayoutList(payouts));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("'b1-0'"), std::string::npos) << s.message();
  EXPECT_FALSE(*store->HasBatchId("b1"));
  EXPECT_EQ(CountPayouts("b1"), 0);
}

TEST_P(PayoutStoreTest, FindUsedPayoutIdsReturnsOnlyUsedIdsInTheOrderGiven) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 3), MakePayoutList("b1", 3)).ok());
  std::vector<Payout> candidates = {MakePayout("n", 0), MakePayout("b1", 2), MakePayout("n", 1),
                                    MakePayout("b1", 0)};
  auto used = store->FindUsedPayoutIds(ToPayoutList(candidates));
  ASSERT_TRUE(used.ok()) << used.error();
  EXPECT_EQ(*used, (std::vector<std::string>{"b1-2", "b1-0"}));
}

TEST_P(PayoutStoreTest, ApplyPersistsAllowedTransitionsAndEveryField) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 1), MakePayoutList("b1", 1)).ok());
    PayoutUpdate sub = UpdateTo("b1-0", Stage::kSubmitting);
    sub.progress.attempts = 1;
    PayoutUpdate unknown = UpdateTo("b1-0", Stage::kUnknown);
    unknown.progress.attempts = 1;
    unknown.progress.next_at_ms = 500;
    PayoutUpdate poll = UpdateTo("b1-0", Stage::kPolling);
    poll.progress.attempts = 2;
    poll.progress.since_ms = 400;
    poll.progress.gateway_status = "PENDING";
    PayoutUpdate poll_again = poll;  // same stage: always allowed
    poll_again.progress.next_at_ms = 900;
    ASSERT_TRUE(
        store->Apply({sub, unknown, UpdateTo("b1-0", Stage::kSubmitting), poll, poll_again}).ok());
    auto row = *store->GetPayout("b1-0");
    EXPECT_EQ(row->progress.stage, Stage::kPolling);
    EXPECT_EQ(row->progress.next_at_ms, 900);

    PayoutUpdate fin = UpdateTo("b1-0", Stage::kFinal, FinalState::kSuccess);
    fin.progress.attempts = 2;
    fin.progress.next_at_ms = 0;
    fin.progress.since_ms = 400;
    fin.progress.gateway_status = "SUCCESS";
    fin.progress.has_fee = true;
    fin.progress.fee_minor = 125;
    fin.progress.fee_currency = "EUR";
    fin.progress.processed_at = "2026-11-24T01:02:03Z";
    fin.progress.error = "none";
    ASSERT_TRUE(store->Apply({fin}).ok());
    ASSERT_TRUE(store->Apply({fin}).ok()) << "re-applying the same final outcome is idempotent";
  }
  auto store = Open(/*read_only=*/true);
  auto row = *store->GetPayout("b1-0");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->progress.stage, Stage::kFinal);
  EXPECT_EQ(row->progress.state, FinalState::kSuccess);
  EXPECT_EQ(row->progress.attempts, 2);
  EXPECT_EQ(row->progress.since_ms, 400);
  EXPECT_EQ(row->progress.gateway_status, "SUCCESS");
  EXPECT_TRUE(row->progress.has_fee);
  EXPECT_EQ(row->progress.fee_minor, 125);
  EXPECT_EQ(row->progress.fee_currency, "EUR");
  EXPECT_EQ(row->progress.processed_at, "2026-11-24T01:02:03Z");
  EXPECT_EQ(row->progress.error, "none");
}

TEST_P(PayoutStoreTest, ApplyWithUnknownIdFailsAndWritesNothingOfTheGroup) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 1), MakePayoutList("b1", 1)).ok());
  Status s =
      store->Apply({UpdateTo("b1-0", Stage::kSubmitting), UpdateTo("ghost", Stage::kSubmitting)});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'ghost'"), std::string::npos) << s.message();
  EXPECT_EQ((*store->GetPayout("b1-0"))->progress.stage, Stage::kNew);
}

TEST_P(PayoutStoreDeathTest, ApplyAbortsOnForbiddenTransitionAndTheGroupIsNotCommitted) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 2), MakePayoutList("b1", 2)).ok());
  }
  // The child opens its own connection: an SQLite connection must not cross fork().
  EXPECT_DEATH(
      {
        auto store = Open();
        (void)store->Apply(
            {UpdateTo("b1-0", Stage::kSubmitting), UpdateTo("b1-1", Stage::kPolling)});
      },
      "invariant violated");
  auto store = Open();
  EXPECT_EQ((*store->GetPayout("b1-0"))->progress.stage, Stage::kNew);
  EXPECT_EQ((*store->GetPayout("b1-1"))->progress.stage, Stage::kNew);
}

TEST_P(PayoutStoreDeathTest, ApplyAbortsWhenAFinalPayoutWouldChangeItsOutcome) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 1), MakePayoutList("b1", 1)).ok());
    Walk(*store, "b1-0",
         {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kFinal, FinalState::kRejected)});
  }
  EXPECT_DEATH((void)Open()->Apply({UpdateTo("b1-0", Stage::kFinal, FinalState::kSuccess)}),
               "invariant violated");
  EXPECT_DEATH((void)Open()->Apply({UpdateTo("b1-0", Stage::kPolling)}), "invariant violated");
  auto store = Open();
  EXPECT_EQ((*store->GetPayout("b1-0"))->progress.state, FinalState::kRejected);
}

TEST_P(PayoutStoreDeathTest, ApplyAbortsOnFinalStageWithoutOutcome) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 1), MakePayoutList("b1", 1)).ok());
    Walk(*store, "b1-0", {UpdateTo("", Stage::kSubmitting)});
  }
  EXPECT_DEATH((void)Open()->Apply({UpdateTo("b1-0", Stage::kFinal, FinalState::kNone)}),
               "invariant violated");
}

TEST_P(PayoutStoreTest, LoadByStagePagesInLineOrderAfterTheGivenLine) {
  auto store = Open();
  std::vector<Payout> payouts = MakePayouts("b1", 10);  // lines 2..11
  std::swap(payouts[0], payouts[9]);                    // insertion order is not line order
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 10), ToPayoutList(payouts)).ok());
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b2", 3), MakePayoutList("b2", 3)).ok());
  ASSERT_TRUE(
      store->Apply({UpdateTo("b1-4", Stage::kSubmitting), UpdateTo("b1-5", Stage::kSubmitting)})
          .ok());

  std::vector<uint32_t> lines;
  uint32_t after = 0;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = store->LoadByStage("b1", Stage::kNew, after, 3);
    ASSERT_TRUE(page.ok()) << page.error();
    EXPECT_LE(page->size(), 3u);
    if (page->empty()) break;
    for (const PayoutRow& r : *page) {
      EXPECT_EQ(r.batch_id, "b1");
      EXPECT_EQ(r.progress.stage, Stage::kNew);
      lines.push_back(r.payout.line);
    }
    after = page->back().payout.line;
  }
  EXPECT_EQ(lines, (std::vector<uint32_t>{2, 3, 4, 5, 8, 9, 10, 11}));
  auto submitting = store->LoadByStage("b1", Stage::kSubmitting, 0, 100);
  ASSERT_EQ(submitting->size(), 2u);
  EXPECT_EQ((*submitting)[0].payout.id, "b1-4");
  EXPECT_EQ((*submitting)[1].payout.id, "b1-5");
}

TEST_P(PayoutStoreTest, LoadDueReturnsDueUnknownAndPollingPayoutsEarliestFirst) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 6), MakePayoutList("b1", 6)).ok());
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b2", 1), MakePayoutList("b2", 1)).ok());
  EXPECT_FALSE(store->NextDueAt()->has_value());

  auto at = [](const std::string& id, Stage stage, int64_t next) {
    PayoutUpdate u = UpdateTo(id, stage);
    u.progress.next_at_ms = next;
    return u;
  };
  // b1-0 stays kNew; b1-1 submitting (not due: a POST is in flight) even with an old next_at.
  ASSERT_TRUE(store
                  ->Apply({at("b1-1", Stage::kSubmitting, 1), at("b1-2", Stage::kSubmitting, 0),
                           at("b1-2", Stage::kPolling, 300), at("b1-3", Stage::kSubmitting, 0),
                           at("b1-3", Stage::kUnknown, 100), at("b1-4", Stage::kSubmitting, 0),
                           at("b1-4", Stage::kPolling, 900), at("b2-0", Stage::kSubmitting, 0),
                           at("b2-0", Stage::kPolling, 200), at("b1-5", Stage::kSubmitting, 0)})
                  .ok());
  Walk(*store, "b1-5", {UpdateTo("", Stage::kFinal, FinalState::kError)});

  auto due = store->LoadDue(300, 100);
  ASSERT_TRUE(due.ok()) << due.error();
  std::vector<std::string> ids;
  for (const PayoutRow& r : *due) ids.push_back(r.payout.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"b1-3", "b2-0", "b1-2"}));

  auto limited = store->LoadDue(1000, 2);
  ASSERT_EQ(limited->size(), 2u);
  EXPECT_EQ((*limited)[0].payout.id, "b1-3");
  EXPECT_EQ((*limited)[1].payout.id, "b2-0");
  EXPECT_TRUE(store->LoadDue(99, 100)->empty());

  EXPECT_EQ(store->NextDueAt()->value_or(-1), 100);
  Walk(*store, "b1-3", {at("", Stage::kPolling, 950)});
  EXPECT_EQ(store->NextDueAt()->value_or(-1), 200);
}

TEST_P(PayoutStoreTest, LoadDueAfterReadsOnFromAPositionWithTiesInStoredOrder) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 5), MakePayoutList("b1", 5)).ok());
  std::vector<PayoutUpdate> updates;
  // b1-1, b1-2 and b1-3 share next_at 100: stored order breaks the tie. b1-4 is not due at 150.
  for (auto [id, next] : std::vector<std::pair<std::string, int64_t>>{
           {"b1-0", 50}, {"b1-1", 100}, {"b1-2", 100}, {"b1-3", 100}, {"b1-4", 200}}) {
    updates.push_back(UpdateTo(id, Stage::kSubmitting));
    PayoutUpdate u = UpdateTo(id, Stage::kPolling);
    u.progress.next_at_ms = next;
    updates.push_back(u);
  }
  ASSERT_TRUE(store->Apply(updates).ok());
  auto ids = [](const std::vector<DueRow>& rows) {
    std::vector<std::string> out;
    for (const auto& d : rows) out.push_back(d.row.payout.id);
    return out;
  };
  auto first = store->LoadDueAfter(150, DuePosition{}, 2);
  ASSERT_TRUE(first.ok()) << first.error();
  EXPECT_EQ(ids(*first), (std::vector<std::string>{"b1-0", "b1-1"}));
  EXPECT_EQ(first->back().position.next_at_ms, 100);
  // On from b1-1: the rest of the tie, then the end of what is due.
  auto rest = store->LoadDueAfter(150, first->back().position, 10);
  ASSERT_TRUE(rest.ok()) << rest.error();
  EXPECT_EQ(ids(*rest), (std::vector<std::string>{"b1-2", "b1-3"}));
  EXPECT_TRUE(store->LoadDueAfter(150, rest->back().position, 10)->empty());
  // A row given a later next_at is met again further on.
  PayoutUpdate later = UpdateTo("b1-0", Stage::kPolling);
  later.progress.next_at_ms = 120;
  ASSERT_TRUE(store->Apply({later}).ok());
  EXPECT_EQ(ids(*store->LoadDueAfter(150, rest->back().position, 10)),
            (std::vector<std::string>{"b1-0"}));
}

TEST_P(PayoutStoreTest, ProgressCountsAndTotalsAreExactPerCurrency) {
  auto store = Open();
  std::vector<Payout> payouts = {MakePayout("b", 1, 1000, "USD"), MakePayout("b", 2, 2000, "USD"),
                                 MakePayout("b", 3, 300, "USD"),  MakePayout("b", 4, 400, "USD"),
                                 MakePayout("b", 5, 50, "EUR"),   MakePayout("b", 6, 70, "EUR"),
                                 MakePayout("b", 7, 9, "JPY")};
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 7), ToPayoutList(payouts)).ok());
  const PayoutList other = ToPayoutList({MakePayout("other", 1, 5555, "USD")});
  ASSERT_TRUE(store->CreateBatch(MakeBatch("other", 1), other).ok());

  PayoutUpdate sub = UpdateTo("", Stage::kSubmitting);
  PayoutUpdate poll = UpdateTo("", Stage::kPolling);
  poll.progress.since_ms = 7000;
  PayoutUpdate success = UpdateTo("", Stage::kFinal, FinalState::kSuccess);
  success.progress.since_ms = 1000;  // final: never the oldest pending
  success.progress.has_fee = true;
  success.progress.fee_minor = 10;
  success.progress.fee_currency = "USD";
  PayoutUpdate rejected = UpdateTo("", Stage::kFinal, FinalState::kRejected);
  rejected.progress.has_fee = true;
  rejected.progress.fee_minor = 5;
  rejected.progress.fee_currency = "EUR";
  PayoutUpdate polling_since_5000 = poll;
  polling_since_5000.progress.since_ms = 5000;
  PayoutUpdate unknown_since_3000 = UpdateTo("", Stage::kUnknown);
  unknown_since_3000.progress.since_ms = 3000;

  Walk(*store, "b-1", {sub, poll, success});
  Walk(*store, "b-2", {sub, poll, UpdateTo("", Stage::kFinal, FinalState::kFailed)});
  Walk(*store, "b-3", {sub, rejected});
  Walk(*store, "b-4", {sub, polling_since_5000});
  Walk(*store, "b-5", {sub, unknown_since_3000});
  Walk(*store, "b-7", {sub, UpdateTo("", Stage::kFinal, FinalState::kError)});
  Walk(*store, "other-1", {sub, UpdateTo("", Stage::kUnknown)});

  auto p = store->Progress("b");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->batch.id, "b");
  EXPECT_EQ(p->stages,
            (std::map<Stage, int64_t>{
                {Stage::kNew, 1}, {Stage::kUnknown, 1}, {Stage::kPolling, 1}, {Stage::kFinal, 4}}));
  EXPECT_EQ(p->states, (std::map<FinalState, int64_t>{{FinalState::kSuccess, 1},
                                                      {FinalState::kFailed, 1},
                                                      {FinalState::kRejected, 1},
                                                      {FinalState::kError, 1}}));
  ASSERT_EQ(p->totals.size(), 3u);
  const CurrencyTotals& usd = p->totals.at("USD");
  EXPECT_EQ(usd.requested, 3700);
  EXPECT_EQ(usd.succeeded, 1000);
  EXPECT_EQ(usd.failed, 2300);
  EXPECT_EQ(usd.pending, 400);
  EXPECT_EQ(usd.fees, (std::map<std::string, int64_t>{{"EUR", 5}, {"USD", 10}}));
  const CurrencyTotals& eur = p->totals.at("EUR");
  EXPECT_EQ(eur.requested, 120);
  EXPECT_EQ(eur.succeeded, 0);
  EXPECT_EQ(eur.failed, 0);
  EXPECT_EQ(eur.pending, 120);
  EXPECT_TRUE(eur.fees.empty());
  const CurrencyTotals& jpy = p->totals.at("JPY");
  EXPECT_EQ(jpy.requested, 9);
  EXPECT_EQ(jpy.failed, 9);
  EXPECT_EQ(p->oldest_pending_since_ms, 3000);

  EXPECT_EQ(store->Progress("missing").code(), StatusCode::kNotFound);
}

// Progress as the definition says, from the rows themselves.
BatchProgress RecountFromRows(PayoutStore& store, const std::string& batch_id) {
  BatchProgress p;
  Status s = store.ForEachPayout(batch_id, [&](const PayoutRow& r) {
    const PayoutProgress& g = r.progress;
    p.stages[g.stage] += 1;
    CurrencyTotals& t = p.totals[r.payout.currency];
    t.requested += r.payout.amount_minor;
    if (g.stage != Stage::kFinal) {
      t.pending += r.payout.amount_minor;
      const int64_t oldest = p.oldest_pending_since_ms;
      if (g.since_ms > 0 && (oldest == 0 || g.since_ms < oldest))
        p.oldest_pending_since_ms = g.since_ms;
    } else {
      p.states[g.state] += 1;
      (g.state == FinalState::kSuccess ? t.succeeded : t.failed) += r.payout.amount_minor;
    }
    if (g.has_fee) t.fees[g.fee_currency] += g.fee_minor;
  });
  EXPECT_TRUE(s.ok()) << s.message();
  return p;
}

void ExpectSameProgress(const BatchProgress& got, const BatchProgress& want) {
  EXPECT_EQ(got.stages, want.stages);
  EXPECT_EQ(got.states, want.states);
  EXPECT_EQ(got.oldest_pending_since_ms, want.oldest_pending_since_ms);
  ASSERT_EQ(got.totals.size(), want.totals.size());
  for (const auto& [currency, w] : want.totals) {
    const CurrencyTotals& g = got.totals.at(currency);
    EXPECT_EQ(g.requested, w.requested) << currency;
    EXPECT_EQ(g.succeeded, w.succeeded) << currency;
    EXPECT_EQ(g.failed, w.failed) << currency;
    EXPECT_EQ(g.pending, w.pending) << currency;
    EXPECT_EQ(g.fees, w.fees) << currency;
  }
}

TEST_P(PayoutStoreTest, ProgressEqualsARecountOfTheRowsAfterRandomAllowedTransitions) {
  auto store = Open();
  const char* currencies[] = {"USD", "EUR", "JPY"};
  std::vector<Payout> payouts;
  for (int i = 0; i < 200; ++i)
    payouts.push_back(MakePayout("b", i, 1 + i * 37, currencies[i % 3]));
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 200), ToPayoutList(payouts)).ok());
  ASSERT_TRUE(store->CreateBatch(MakeBatch("other", 5), MakePayoutList("other", 5)).ok());

  std::mt19937 rng(20261125);
  std::map<std::string, Stage> stage;
  for (const Payout& p : payouts) stage[p.id] = Stage::kNew;
  for (int round = 0; round < 60; ++round) {
    std::vector<PayoutUpdate> group;
    for (int k = 0, n = 1 + static_cast<int>(rng() % 40); k < n; ++k) {
      const std::string& id = payouts[rng() % payouts.size()].id;
      std::vector<Stage> next;
      for (int to = 0; to <= 4; ++to)
        if (IsAllowedTransition(stage[id], static_cast<Stage>(to)))
          next.push_back(static_cast<Stage>(to));
      if (next.empty()) continue;  // final
      PayoutUpdate u = UpdateTo(id, next[rng() % next.size()]);
      PayoutProgress& g = u.progress;
      if (g.stage == Stage::kFinal) {
        // Only a cancel ends a never-sent payout; anything sent ends in one of the four outcomes.
        g.state = stage[id] == Stage::kNew ? FinalState::kCancelled
                                           : static_cast<FinalState>(1 + rng() % 4);
      }
      g.since_ms = 1000 + static_cast<int64_t>(rng() % 5000);
      g.next_at_ms = static_cast<int64_t>(rng() % 10000);
      g.has_fee = rng() % 2;
      g.fee_minor = g.has_fee ? static_cast<int64_t>(rng() % 500) : 0;
      g.fee_currency = g.has_fee ? currencies[rng() % 3] : "";
      stage[id] = g.stage;
      group.push_back(u);
    }
    Status s = store->Apply(group);
    ASSERT_TRUE(s.ok()) << s.message();
    if (round % 10 == 9) {
      auto got = store->Progress("b");
      ASSERT_TRUE(got.ok()) << got.error();
      ExpectSameProgress(*got, RecountFromRows(*store, "b"));
    }
  }
  auto other = store->Progress("other");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->stages, (std::map<Stage, int64_t>{{Stage::kNew, 5}}));
}

TEST_P(PayoutStoreTest, ApplyRefusesAFeeThatWouldOverflowTheTotalsAndKeepsThemExact) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 3), MakePayoutList("b", 3)).ok());
  auto absurd = [](const std::string& id) {
    PayoutUpdate u = UpdateTo(id, Stage::kFinal, FinalState::kSuccess);
    u.progress.has_fee = true;
    u.progress.fee_minor = INT64_MAX;
    u.progress.fee_currency = "USD";
    return u;
  };
  for (const char* id : {"b-0", "b-1", "b-2"}) Walk(*store, id, {UpdateTo("", Stage::kSubmitting)});
  Status in_group = store->Apply({absurd("b-1"), absurd("b-2")});
  EXPECT_FALSE(in_group.ok()) << "two huge fees in one group overflow before reaching SQLite";
  EXPECT_NE(in_group.message().find("overflow"), std::string::npos) << in_group.message();
  ASSERT_TRUE(store->Apply({absurd("b-0")}).ok());
  Status in_db = store->Apply({absurd("b-1")});
  EXPECT_FALSE(in_db.ok()) << "the stored total plus this fee overflows";
  EXPECT_NE(in_db.message().find("overflow"), std::string::npos) << in_db.message();
  EXPECT_EQ((*store->GetPayout("b-1"))->progress.stage, Stage::kSubmitting);
  EXPECT_EQ((*store->GetPayout("b-2"))->progress.stage, Stage::kSubmitting);
  auto p = store->Progress("b");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->totals.at("USD").fees, (std::map<std::string, int64_t>{{"USD", INT64_MAX}}));
}

TEST(PayoutStore, OpeningAVersion1FileMigratesItAndKeepsProgressExact) {
  TempDir dir;
  std::string path = dir.File("state.db");
  {
    auto store = OpenOrDie(path);
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 4), MakePayoutList("b", 4)).ok());
    PayoutUpdate poll = UpdateTo("", Stage::kPolling);
    poll.progress.since_ms = 777;
    Walk(*store, "b-0", {UpdateTo("", Stage::kSubmitting), poll});
    Walk(*store, "b-1",
         {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kFinal, FinalState::kFailed)});
  }
  // Turn it back into what version 1 wrote.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(
          raw,
          "DROP TABLE batch_totals; DROP INDEX payouts_pending_since; DROP TABLE gateway_outages; "
          "DROP TABLE approvals; DROP TABLE audit; DROP TABLE settings; "
          "ALTER TABLE batches DROP COLUMN approvals_required; ALTER TABLE batches DROP COLUMN "
          "held_at_ms; "
          "ALTER TABLE batches DROP COLUMN held_by; ALTER TABLE batches DROP COLUMN hold_reason; "
          "ALTER TABLE batches DROP COLUMN cancelled_at_ms; PRAGMA user_version = 1;",
          nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(raw);
  EXPECT_FALSE(PayoutStore::Open(path, /*read_only=*/true).ok())
      << "a reader cannot migrate; it must say so";

  auto store = OpenOrDie(path);
  ASSERT_TRUE(store);
  auto p = store->Progress("b");
  ASSERT_TRUE(p.ok()) << p.error();
  ExpectSameProgress(*p, RecountFromRows(*store, "b"));
  EXPECT_EQ(p->oldest_pending_since_ms, 777);
  EXPECT_EQ(p->states, (std::map<FinalState, int64_t>{{FinalState::kFailed, 1}}));
}

TEST_P(PayoutStoreTest, ForEachPayoutStreamsEveryPayoutInLineOrderWhateverItsStage) {
  auto store = Open();
  std::vector<Payout> payouts = MakePayouts("b1", 8);
  std::swap(payouts[1], payouts[6]);
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 8), ToPayoutList(payouts)).ok());
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b2", 2), MakePayoutList("b2", 2)).ok());
  Walk(*store, "b1-2", {UpdateTo("", Stage::kSubmitting)});
  Walk(*store, "b1-5",
       {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kFinal, FinalState::kRejected)});
  Walk(*store, "b1-6", {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kPolling)});

  std::vector<uint32_t> lines;
  std::vector<Stage> stages;
  Status s = store->ForEachPayout("b1", [&](const PayoutRow& r) {
    EXPECT_EQ(r.batch_id, "b1");
    lines.push_back(r.payout.line);
    stages.push_back(r.progress.stage);
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(lines, (std::vector<uint32_t>{2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(stages[2], Stage::kSubmitting);
  EXPECT_EQ(stages[5], Stage::kFinal);
  EXPECT_EQ(stages[6], Stage::kPolling);
  // The store stays usable afterwards (the scan's snapshot is released).
  EXPECT_TRUE(store->Apply({UpdateTo("b1-0", Stage::kSubmitting)}).ok());
}

TEST_P(PayoutStoreTest, ForEachPayoutCallbackMayReadTheStoreButItsWritesAreRefused) {
  auto store = Open();
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 3), MakePayoutList("b1", 3)).ok());
  int visited = 0;
  Status s = store->ForEachPayout("b1", [&](const PayoutRow& r) {
    ++visited;
    auto progress = store->Progress("b1");
    ASSERT_TRUE(progress.ok()) << progress.error();
    EXPECT_EQ(progress->stages.at(Stage::kNew), 3);
    EXPECT_EQ((*store->GetPayout(r.payout.id))->payout.line, r.payout.line);
    EXPECT_FALSE(store->Apply({UpdateTo(r.payout.id, Stage::kSubmitting)}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(visited, 3);
  EXPECT_EQ(store->Progress("b1")->stages.at(Stage::kNew), 3);
}

TEST_P(PayoutStoreTest, SetBatchStatusMovesForwardAndPersists) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 1), MakePayoutList("b1", 1)).ok());
    Walk(*store, "b1-0",
         {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kFinal, FinalState::kRejected)});
    ASSERT_TRUE(store->SetBatchStatus("b1", BatchRecord::Status::kFinished, 42).ok());
    ASSERT_TRUE(store->SetBatchStatus("b1", BatchRecord::Status::kReported, 42).ok());
    EXPECT_FALSE(store->SetBatchStatus("nope", BatchRecord::Status::kFinished, 1).ok());
  }
  auto batch = *Open(true)->GetBatch("b1");
  EXPECT_EQ(batch->status, BatchRecord::Status::kReported);
  EXPECT_EQ(batch->finished_at_ms, 42);
}

TEST_P(PayoutStoreDeathTest, SetBatchStatusAbortsWhenFinishingABatchWithPendingPayouts) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 2), MakePayoutList("b1", 2)).ok());
    Walk(*store, "b1-0",
         {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kFinal, FinalState::kRejected)});
  }
  EXPECT_DEATH((void)Open()->SetBatchStatus("b1", BatchRecord::Status::kFinished, 1),
               "invariant violated");
  EXPECT_EQ((*Open()->GetBatch("b1"))->status, BatchRecord::Status::kActive);
}

TEST(PayoutStore, ReadOnlyStoreReadsCommittedStateWhileAWriterHoldsAnOpenTransaction) {
  TempDir dir;
  std::string path = dir.File("state.db");
  auto writer = OpenOrDie(path);
  ASSERT_TRUE(writer->CreateBatch(MakeBatch("b1", 2), MakePayoutList("b1", 2)).ok());

  // Another connection (as `payoutd run` would) holds the write lock with uncommitted changes.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "BEGIN IMMEDIATE; UPDATE payouts SET stage = 1 WHERE id = 'b1-0';",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);

  auto reader = OpenOrDie(path, /*read_only=*/true);
  ASSERT_TRUE(reader);
  auto progress = reader->Progress("b1");
  ASSERT_TRUE(progress.ok()) << progress.error();
  EXPECT_EQ(progress->stages, (std::map<Stage, int64_t>{{Stage::kNew, 2}}));
  EXPECT_EQ(reader->ListBatches()->size(), 1u);
  Status refused = reader->CreateBatch(MakeBatch("b2", 1), MakePayoutList("b2", 1));
  EXPECT_FALSE(refused.ok());

  ASSERT_EQ(sqlite3_exec(raw, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  EXPECT_EQ((*reader->GetPayout("b1-0"))->progress.stage, Stage::kSubmitting);
}

TEST(PayoutStore, ReadOnlyOpenOfAMissingFileFailsAndCreatesNothing) {
  TempDir dir;
  std::string path = dir.File("absent.db");
  EXPECT_FALSE(PayoutStore::Open(path, /*read_only=*/true).ok());
  EXPECT_FALSE(fs::exists(path));
}

TEST(PayoutStore, OpenRefusesAStateFileFromANewerSchema) {
  TempDir dir;
  std::string path = dir.File("state.db");
  { ASSERT_TRUE(OpenOrDie(path)); }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  auto r = PayoutStore::Open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("99"), std::string::npos) << r.error();
  EXPECT_FALSE(PayoutStore::Open(path, true).ok());
}

// --- Crash safety -------------------------------------------------------------------------------
// A VFS that passes everything to the default one but kills the process (as a crash would) just
// before its Nth write to a WAL file. The child runs a store operation under it; the parent then
// recovers the file and must see all of the transaction or none of it.
namespace crash {
sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;
sqlite3_io_methods g_wal_methods;
const sqlite3_io_methods* g_real_wal_methods = nullptr;
long g_writes_left = 0;
constexpr int kCrashedExit = 77;

int WalWrite(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (g_writes_left-- == 0) _exit(kCrashedExit);
  return g_real_wal_methods->xWrite(f, buf, n, off);
}

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  int rc = g_real->xOpen(g_real, name, f, flags, out_flags);
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && f->pMethods) {
    g_real_wal_methods = f->pMethods;
    g_wal_methods = *f->pMethods;
    g_wal_methods.xWrite = WalWrite;
    f->pMethods = &g_wal_methods;
  }
  return rc;
}

void Install(long writes_before_crash) {
  g_writes_left = writes_before_crash;
  g_real = sqlite3_vfs_find(nullptr);
  g_vfs = *g_real;
  g_vfs.zName = "crash-at-nth-wal-write";
  g_vfs.xOpen = Open;
  sqlite3_vfs_register(&g_vfs, /*makeDflt=*/1);
}

// Runs `op` in a child that crashes before WAL write number `n`. Returns true if it crashed, false
// if `op` completed (and succeeded) first.
bool RunAndCrashAt(long n, const std::string& path, const std::function<Status(PayoutStore&)>& op) {
  pid_t pid = fork();
  if (pid == 0) {
    Install(n);
    auto store = PayoutStore::Open(path);
    if (!store.ok()) _exit(2);
    _exit(op(**store).ok() ? 0 : 3);  // no destructors: the file is left as a crash leaves it
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  int code = WEXITSTATUS(status);
  EXPECT_TRUE(code == 0 || code == kCrashedExit) << "child exit " << code;
  return code == kCrashedExit;
}
}  // namespace crash

constexpr int kCrashRows = 300;

// Crashes `op` at WAL write 0, 1, 2, ... until it completes; after each crash the recovered file
// must hold all of the transaction or none of it (`outcome` says which, or fails). Each experiment
// starts from a copy of `template_path` (closed, so fully checkpointed into the one file).
void SweepCrashPoints(const TempDir& dir, const std::string& template_path,
                      const std::function<Status(PayoutStore&)>& op,
                      const std::function<std::optional<bool>(PayoutStore&)>& outcome) {
  bool saw_none = false, saw_all = false;
  long n = 0;
  for (; n < 5000; ++n) {
    std::string path = dir.File("crash-" + std::to_string(n) + ".db");
    fs::copy_file(template_path, path);
    bool crashed = crash::RunAndCrashAt(n, path, op);
    auto store = OpenOrDie(path);  // recovers the WAL the crash left behind
    ASSERT_TRUE(store);
    std::optional<bool> all = outcome(*store);
    ASSERT_TRUE(all.has_value()) << "after a crash at WAL write " << n
                                 << " the transaction is partly there";
    (*all ? saw_all : saw_none) = true;
    if (!crashed) break;
  }
  ::testing::Test::RecordProperty("crash_points_tried", static_cast<int>(n));
  EXPECT_TRUE(saw_none) << "no crash point lost the transaction: the sweep tested nothing";
  EXPECT_TRUE(saw_all) << "the operation never completed";
}

TEST(PayoutStore, CreateBatchIsAllOrNothingWhenTheProcessDiesAtAnyWalWrite) {
  TempDir dir;
  std::string tmpl = dir.File("template.db");
  { ASSERT_TRUE(OpenOrDie(tmpl)); }  // the schema exists before the experiment
  SweepCrashPoints(
      dir, tmpl,
      [](PayoutStore& s) {
        return s.CreateBatch(MakeBatch("big", kCrashRows), MakePayoutList("big", kCrashRows));
      },
      [](PayoutStore& s) -> std::optional<bool> {
        bool has_batch = *s.HasBatchId("big");
        auto used = s.FindUsedPayoutIds(MakePayoutList("big", kCrashRows));
        size_t count = used.ok() ? used->size() : 1;
        if (has_batch && count == kCrashRows) return true;
        if (!has_batch && count == 0) return false;
        return std::nullopt;
      });
}

TEST(PayoutStore, ApplyGroupIsAllOrNothingWhenTheProcessDiesAtAnyWalWrite) {
  TempDir dir;
  std::string tmpl = dir.File("template.db");
  {
    auto store = OpenOrDie(tmpl);
    const PayoutList payouts = MakePayoutList("b", kCrashRows);
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b", kCrashRows), payouts).ok());
  }
  std::vector<PayoutUpdate> group;
  for (int i = 0; i < kCrashRows; ++i) {
    PayoutUpdate u = UpdateTo("b-" + std::to_string(i), Stage::kSubmitting);
    u.progress.attempts = 1;
    group.push_back(u);
  }
  SweepCrashPoints(
      dir, tmpl, [&](PayoutStore& s) { return s.Apply(group); },
      [](PayoutStore& s) -> std::optional<bool> {
        auto p = s.Progress("b");
        if (!p.ok()) return std::nullopt;
        if (p->stages == std::map<Stage, int64_t>{{Stage::kSubmitting, kCrashRows}}) return true;
        if (p->stages == std::map<Stage, int64_t>{{Stage::kNew, kCrashRows}}) return false;
        return std::nullopt;
      });
}

// --- Finance controls -------------------------------------------------------------------------

TEST_P(PayoutStoreTest, APrincipalCountsOnceAndApprovalsAndAuditComeBackInOrder) {
  auto store = Open();
  BatchRecord b = MakeBatch("b", 2);
  b.status = BatchRecord::Status::kAwaitingApproval;
  b.approvals_required = 2;
  ASSERT_TRUE(store->CreateBatch(b, MakePayoutList("b", 2)).ok());
  auto rec = store->GetBatch("b");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->status, BatchRecord::Status::kAwaitingApproval);
  EXPECT_EQ((*rec)->approvals_required, 2);

  EXPECT_TRUE(
      *store->AddApproval("b", Approval{"alice@example.com", "SHA256:aaa", "b.csv.alice.sig", 10}));
  EXPECT_FALSE(
      *store->AddApproval("b", Approval{"alice@example.com", "SHA256:bbb", "b.csv.alice2.sig", 11}))
      << "the same principal with another key still counts once";
  EXPECT_TRUE(*store->AddApproval("b", Approval{"bob@example.com", "SHA256:ccc", "b.csv.sig", 12}));
  auto approvals = store->ListApprovals("b");
  ASSERT_TRUE(approvals.ok());
  ASSERT_EQ(approvals->size(), 2u);
  EXPECT_EQ((*approvals)[0].principal, "alice@example.com");
  EXPECT_EQ((*approvals)[0].key_fingerprint, "SHA256:aaa") << "the first signature is the one kept";
  EXPECT_EQ((*approvals)[1].file, "b.csv.sig");

  ASSERT_TRUE(
      store->AddAudit("b", AuditEntry{30, "hold", "alice (uid 1001)", "wrong \"file\""}).ok());
  ASSERT_TRUE(store->AddAudit("b", AuditEntry{20, "approve", "bob@example.com", ""}).ok());
  EXPECT_EQ(store->AddAudit("nope", AuditEntry{1, "hold", "x", ""}).code(), StatusCode::kNotFound);
  auto audit = store->ListAudit("b");
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].action, "hold") << "in the order written, not by time";
  EXPECT_EQ((*audit)[0].reason, "wrong \"file\"");
  EXPECT_EQ((*audit)[1].by, "bob@example.com");
}

TEST_P(PayoutStoreTest, HoldsOfABatchAndOfAllAreKept) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 1), MakePayoutList("b", 1)).ok());
    ASSERT_TRUE(store->SetHold("b", Hold{100, "alice (uid 1001)", "check the IBANs"}).ok());
    EXPECT_EQ(store->SetHold("nope", Hold{1, "x", ""}).code(), StatusCode::kNotFound);
    ASSERT_TRUE(store->SetHoldAll(Hold{200, "ops (uid 1002)", "bank holiday"}).ok());
  }
  auto store = Open();  // survives a restart
  auto b = store->GetBatch("b");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->hold.at_ms, 100);
  EXPECT_EQ((*b)->hold.by, "alice (uid 1001)");
  EXPECT_EQ((*b)->hold.reason, "check the IBANs");
  auto all = store->GetHoldAll();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->held());
  EXPECT_EQ(all->reason, "bank holiday");
  ASSERT_TRUE(store->SetHoldAll(Hold{}).ok());
  ASSERT_TRUE(store->SetHold("b", Hold{}).ok());
  EXPECT_FALSE(store->GetHoldAll()->held());
  EXPECT_FALSE((*store->GetBatch("b"))->hold.held());
}

TEST_P(PayoutStoreTest, CancelEndsOnlyNeverSentPayoutsAndKeepsTheTotalsExact) {
  auto store = Open();
  std::vector<Payout> payouts;
  for (int i = 0; i < 6; ++i) payouts.push_back(MakePayout("b", i, 100 + i, i % 2 ? "EUR" : "USD"));
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 6), ToPayoutList(payouts)).ok());
  Walk(*store, "b-0", {UpdateTo("", Stage::kSubmitting)});
  Walk(*store, "b-1", {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kPolling)});
  Walk(*store, "b-2",
       {UpdateTo("", Stage::kSubmitting), UpdateTo("", Stage::kFinal, FinalState::kSuccess)});
  auto out = store->CancelUnsent("b", 500, "cancelled by alice (uid 1001): wrong file");
  ASSERT_TRUE(out.ok()) << out.error();
  EXPECT_EQ(out->cancelled, 3);
  EXPECT_EQ(out->still_running, 2) << "b-0 may have been sent, b-1 was: both go on";
  EXPECT_FALSE(out->all_final);
  for (const char* id : {"b-3", "b-4", "b-5"}) {
    PayoutRow row = **store->GetPayout(id);
    EXPECT_EQ(row.progress.stage, Stage::kFinal) << id;
    EXPECT_EQ(row.progress.state, FinalState::kCancelled) << id;
    EXPECT_EQ(row.progress.error, "cancelled by alice (uid 1001): wrong file");
  }
  EXPECT_EQ((*store->GetPayout("b-0"))->progress.stage, Stage::kSubmitting);
  EXPECT_EQ((*store->GetBatch("b"))->cancelled_at_ms, 500);
  auto p = store->Progress("b");
  ASSERT_TRUE(p.ok());
  ExpectSameProgress(*p, RecountFromRows(*store, "b"));
  EXPECT_EQ(p->states.at(FinalState::kCancelled), 3);
  auto again = store->CancelUnsent("b", 600, "again");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cancelled, 0);
  EXPECT_EQ((*store->GetBatch("b"))->cancelled_at_ms, 500) << "the first cancel's time stays";
}

TEST_P(PayoutStoreTest, ABatchAwaitingApprovalIsActivatedOrRejectedAndThenReported) {
  auto store = Open();
  for (const char* id : {"ok", "no"}) {
    BatchRecord b = MakeBatch(id, 2);
    b.status = BatchRecord::Status::kAwaitingApproval;
    b.approvals_required = 1;
    ASSERT_TRUE(store->CreateBatch(b, MakePayoutList(id, 2)).ok());
  }
  ASSERT_TRUE(store->SetBatchStatus("ok", BatchRecord::Status::kActive, 0).ok());
  EXPECT_EQ((*store->GetBatch("ok"))->status, BatchRecord::Status::kActive);
  ASSERT_TRUE(store->CancelUnsent("no", 5, "approval expired").ok());
  ASSERT_TRUE(store->SetBatchStatus("no", BatchRecord::Status::kRejected, 5).ok());
  ASSERT_TRUE(store->SetBatchStatus("no", BatchRecord::Status::kReported, 5).ok());
  EXPECT_EQ((*store->GetBatch("no"))->status, BatchRecord::Status::kReported);
  EXPECT_FALSE(BatchRecord::MayMove(BatchRecord::Status::kActive, BatchRecord::Status::kRejected));
  EXPECT_FALSE(BatchRecord::MayMove(BatchRecord::Status::kReported, BatchRecord::Status::kActive));
  EXPECT_FALSE(
      BatchRecord::MayMove(BatchRecord::Status::kAwaitingApproval, BatchRecord::Status::kFinished));
}

TEST(PayoutStore, AVersion3FileGainsTheFinanceControlsAndCanHoldCancelledPayouts) {
  TempDir dir;
  const std::string path = dir.File("state.db");
  {
    auto store = OpenOrDie(path);
    ASSERT_TRUE(store->CreateBatch(MakeBatch("b", 2), MakePayoutList("b", 2)).ok());
  }
  // Back to what version 3 wrote: no v4 tables or columns, and the narrow CHECKs.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  const char* to_v3 =
      "DROP TABLE approvals; DROP TABLE audit; DROP TABLE settings;"
      "ALTER TABLE batches DROP COLUMN approvals_required; ALTER TABLE batches DROP COLUMN "
      "held_at_ms;"
      "ALTER TABLE batches DROP COLUMN held_by; ALTER TABLE batches DROP COLUMN hold_reason;"
      "ALTER TABLE batches DROP COLUMN cancelled_at_ms;"
      "PRAGMA writable_schema = ON;"
      "UPDATE sqlite_schema SET sql = replace(sql, 'BETWEEN 0 AND 4)', 'BETWEEN 0 AND 2)') WHERE "
      "name = 'batches';"
      "UPDATE sqlite_schema SET sql = replace(sql, 'BETWEEN 0 AND 5)', 'BETWEEN 0 AND 4)') WHERE "
      "name = 'payouts';"
      "PRAGMA writable_schema = OFF; PRAGMA user_version = 3;";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(raw, to_v3, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(raw);
  auto store = OpenOrDie(path);
  auto out = store->CancelUnsent("b", 7, "cancelled");
  ASSERT_TRUE(out.ok()) << out.error() << ": the widened CHECK must take state CANCELLED";
  EXPECT_EQ(out->cancelled, 2);
  ASSERT_TRUE(store->SetHold("b", Hold{1, "x", ""}).ok());
  ASSERT_TRUE(store->SetBatchStatus("b", BatchRecord::Status::kFinished, 8).ok());
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* check = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &check, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(check), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(check, 0)), "ok");
  sqlite3_finalize(check);
  sqlite3_close(raw);
}

INSTANTIATE_TEST_SUITE_P(Backends, PayoutStoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgresql), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, PayoutStoreDeathTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgresql), BackendName);

}  // namespace
}  // namespace payoutd
