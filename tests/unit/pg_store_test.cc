// What the PostgreSQL store adds to the PayoutStore contract (the contract itself runs on both
// backends in payout_store_test.cc): fenced writes once another instance holds the lease, and a
// database that goes away in the middle of a batch without anything being lost or done twice.
#include "core/store/pg_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/base/failpoint.h"
#include "core/store/pg_lease.h"
#include "tests/support/postgres_server.h"

namespace payoutd {
namespace {

using std::chrono::milliseconds;

PgConnectOptions Options(const std::string& url) {
  PgConnectOptions o;
  o.url = url;
  return o;
}

std::unique_ptr<PayoutStore> OpenOrDie(const std::string& url, int64_t fencing = 0) {
  auto r = OpenPgPayoutStore(Options(url), fencing, false);
  if (!r.ok()) {
    ADD_FAILURE() << r.error();
    return nullptr;
  }
  return std::move(r).value();
}

PayoutList MakePayouts(const std::string& batch, int n) {
  PayoutList out;
  for (int i = 0; i < n; ++i) {
    Payout p;
    p.line = static_cast<uint32_t>(i + 2);
    p.id = batch + "-" + std::to_string(i);
    p.amount_minor = 100 + i;
    p.currency = i % 3 ? "USD" : "EUR";
    p.account_number = "DE89370400440532013000";
    p.account_name = "Jane Roe " + std::to_string(i);
    p.operator_code = "OP1";
    p.method = "BANK_TRANSFER";
    out.push_back(p);
  }
  return out;
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

PayoutUpdate UpdateTo(const std::string& id, Stage stage, FinalState state = FinalState::kNone) {
  PayoutUpdate u;
  u.id = id;
  u.progress.stage = stage;
  u.progress.state = state;
  return u;
}

// Retries `op` while it fails as unavailable (as the daemon will), up to `limit`.
Status RetryWhileUnavailable(const std::function<Status()>& op, Duration limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    Status s = op();
    if (s.code() != StatusCode::kUnavailable || std::chrono::steady_clock::now() > deadline) {
      return s;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

TEST(PgStore, WritesOfADeposedLeaderFailAbortedAndCommitNothing) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  LeaderLease a(Options(uri), "pay-a", milliseconds(10000));
  LeaderLease b(Options(uri), "pay-b", milliseconds(10000));
  a.Step();
  ASSERT_TRUE(a.IsLeader()) << a.last_error();
  auto store = OpenOrDie(uri, a.fencing());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b1", 3), MakePayouts("b1", 3)).ok());
  ASSERT_TRUE(store->Apply({UpdateTo("b1-0", Stage::kSubmitting)}).ok());

  ASSERT_TRUE(a.Release().ok());  // b takes over (as it would after a's lease expired)
  b.Step();
  ASSERT_TRUE(b.IsLeader()) << b.last_error();

  Status create = store->CreateBatch(MakeBatch("b2", 2), MakePayouts("b2", 2));
  EXPECT_EQ(create.code(), StatusCode::kAborted) << create.message();
  EXPECT_NE(create.message().find("lost the lease"), std::string::npos) << create.message();
  Status apply =
      store->Apply({UpdateTo("b1-0", Stage::kPolling), UpdateTo("b1-1", Stage::kSubmitting)});
  EXPECT_EQ(apply.code(), StatusCode::kAborted) << apply.message();
  EXPECT_EQ(store->RecordOutage(GatewayOutage{1, 0, 2, "down"}).code(), StatusCode::kAborted);
  EXPECT_EQ(store->SetBatchStatus("b1", BatchRecord::Status::kActive, 0).code(),
            StatusCode::kAborted);
  // Reads still work, and show that nothing of the old term's late writes landed.
  EXPECT_FALSE(*store->HasBatchId("b2"));
  EXPECT_EQ((*store->GetPayout("b1-0"))->progress.stage, Stage::kSubmitting);
  EXPECT_EQ((*store->GetPayout("b1-1"))->progress.stage, Stage::kNew);
  EXPECT_TRUE(store->LoadOutages(0)->empty());

  auto b_store = OpenOrDie(uri, b.fencing());
  ASSERT_TRUE(b_store);
  EXPECT_TRUE(b_store->Apply({UpdateTo("b1-0", Stage::kPolling)}).ok());
  auto unfenced = OpenOrDie(uri);  // an operator command: not a leader's store
  EXPECT_TRUE(unfenced->RecordOutage(GatewayOutage{1, 0, 2, "down"}).ok());
}

TEST(PgStore, DatabaseRestartsInTheMiddleOfABatchLoseNothing) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  auto store = OpenOrDie(uri);
  ASSERT_TRUE(store);
  const int n = 600;
  ASSERT_TRUE(store->CreateBatch(MakeBatch("b", n), MakePayouts("b", n)).ok());
  // Six groups of a hundred, each moved along kNew -> kSubmitting -> kPolling -> kFinal, with the
  // server restarted (fast, then killed) between groups, as the engine would commit them. A
  // failure says unavailable, and the same group applied again is accepted.
  int unavailable = 0;
  for (int g = 0; g < 6; ++g) {
    for (Stage stage : {Stage::kSubmitting, Stage::kPolling, Stage::kFinal}) {
      std::vector<PayoutUpdate> group;
      for (int i = g * 100; i < (g + 1) * 100; ++i) {
        FinalState state = stage == Stage::kFinal ? FinalState::kSuccess : FinalState::kNone;
        PayoutUpdate u = UpdateTo("b-" + std::to_string(i), stage, state);
        u.progress.attempts = 1;
        u.progress.since_ms = 1000 + i;
        group.push_back(u);
      }
      Status s = store->Apply(group);
      if (!s.ok()) {
        EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.message();
        ++unavailable;
        s = RetryWhileUnavailable([&] { return store->Apply(group); }, std::chrono::seconds(30));
      }
      ASSERT_TRUE(s.ok()) << s.message();
    }
    if (g % 2 == 0) {
      ASSERT_TRUE(server->Restart());
    } else {
      ASSERT_TRUE(server->Kill());
      ASSERT_TRUE(server->Start());
    }
  }
  EXPECT_GE(unavailable, 1) << "no call met the lost connection: the test tested nothing";
  ASSERT_TRUE(
      RetryWhileUnavailable([&] { return store->Progress("b").status(); }, std::chrono::seconds(30))
          .ok());
  auto progress = store->Progress("b");
  ASSERT_TRUE(progress.ok()) << progress.error();
  EXPECT_EQ(progress->stages, (std::map<Stage, int64_t>{{Stage::kFinal, n}}));
  EXPECT_EQ(progress->states, (std::map<FinalState, int64_t>{{FinalState::kSuccess, n}}));
  int64_t rows = 0;
  ASSERT_TRUE(store
                  ->ForEachPayout("b",
                                  [&](const PayoutRow& r) {
                                    ++rows;
                                    EXPECT_EQ(r.progress.stage, Stage::kFinal);
                                    EXPECT_EQ(r.progress.attempts, 1);
                                  })
                  .ok());
  EXPECT_EQ(rows, n);
  ASSERT_TRUE(store->SetBatchStatus("b", BatchRecord::Status::kFinished, 5).ok());
}

TEST(PgStore, CreateBatchInterruptedByARestartIsRecordedWholeOrNotAtAll) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  auto store = OpenOrDie(uri);
  ASSERT_TRUE(store);
  const int n = 50000;
  PayoutList payouts = MakePayouts("big", n);
  std::atomic<bool> started{false};
  std::thread restarter([&] {
    while (!started) std::this_thread::yield();
    std::this_thread::sleep_for(milliseconds(100));
    server->Kill();
    server->Start();
  });
  started = true;
  Status s = store->CreateBatch(MakeBatch("big", n), payouts);
  restarter.join();
  if (!s.ok()) {
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.message();
    s = RetryWhileUnavailable([&] { return store->CreateBatch(MakeBatch("big", n), payouts); },
                              std::chrono::seconds(30));
  }
  ASSERT_TRUE(s.ok()) << s.message();
  auto used = store->FindUsedPayoutIds(payouts);
  ASSERT_TRUE(used.ok()) << used.error();
  EXPECT_EQ(used->size(), static_cast<size_t>(n));
  auto progress = store->Progress("big");
  ASSERT_TRUE(progress.ok()) << progress.error();
  EXPECT_EQ(progress->stages, (std::map<Stage, int64_t>{{Stage::kNew, n}}));
}

TEST(PgStore, CreateBatchRetriedAfterItsCommitsAnswerWasLostSucceedsOnce) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  auto store = OpenOrDie(uri);
  ASSERT_TRUE(store);
  failpoint::Arm("pg_store.create_batch.commit_answer_lost", failpoint::Action::kError);
  Status s = store->CreateBatch(MakeBatch("b1", 3), MakePayouts("b1", 3));
  failpoint::DisarmAll();
  ASSERT_EQ(s.code(), StatusCode::kUnavailable) << s.message();
  // The retry finds its own batch: success, not "seen before".
  s = store->CreateBatch(MakeBatch("b1", 3), MakePayouts("b1", 3));
  EXPECT_TRUE(s.ok()) << s.message();
  // Any other attempt at it is a duplicate, as ever.
  s = store->CreateBatch(MakeBatch("b1", 3), MakePayouts("b1", 3));
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.message();
  auto other = OpenOrDie(uri);
  EXPECT_EQ(other->CreateBatch(MakeBatch("b1", 3), MakePayouts("b1", 3)).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(other->Progress("b1")->stages, (std::map<Stage, int64_t>{{Stage::kNew, 3}}));
}

TEST(PgStore, ReadOnlyStoreRefusesWritesAndNeedsTheSchema) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  auto none = OpenPgPayoutStore(Options(uri), 0, /*read_only=*/true);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.code(), StatusCode::kFailedPrecondition) << none.error();
  ASSERT_TRUE(OpenOrDie(uri));
  auto reader = OpenPgPayoutStore(Options(uri), 0, /*read_only=*/true);
  ASSERT_TRUE(reader.ok()) << reader.error();
  EXPECT_EQ((*reader)->CreateBatch(MakeBatch("b1", 1), MakePayouts("b1", 1)).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*reader)->ListBatches()->empty());
}

TEST(PgStore, UnreachableDatabaseIsUnavailableAtOpen) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = "postgresql:///x?host=" + server->dir() + "/nowhere&port=1&user=postgres";
  auto r = OpenPgPayoutStore(Options(uri), 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), StatusCode::kUnavailable) << r.error();
}

}  // namespace
}  // namespace payoutd
