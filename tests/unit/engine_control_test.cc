// Hold, resume and cancel in the engine, with the real gateway client in front of the sandbox
// gateway's logic, in fake time (tests/support/simulated_gateway.h). What must hold: from the
// moment a hold or cancel is called no new POST of that batch reaches the gateway (submissions
// queued in the client are taken back), polls go on, and a cancelled payout is never sent.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <boost/asio/io_context.hpp>

#include "core/engine/payout_engine.h"
#include "core/gateway/gateway_client.h"
#include "core/store/payout_store.h"
#include "core/store/store_thread.h"
#include "tests/support/simulated_gateway.h"

namespace payoutd {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using testing::RunInFakeTime;
using testing::SimulatedGateway;

class Observer final : public EngineObserver {
 public:
  std::vector<std::string> finished;
  void OnBatchFinished(const std::string& batch_id) override { finished.push_back(batch_id); }
};

class EngineControlTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = std::filesystem::temp_directory_path() /
           ("control_engine_" + std::to_string(::getpid()) + "_" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = Open();
    if (GetParam()) writer_ = std::make_unique<StoreThread>(io_, Open());
    sandbox::SandboxOptions so;
    so.auth = false;
    so.callbacks = false;
    so.final_after_ms = 1000;
    gateway_ = std::make_unique<SimulatedGateway>(io_, clock_, so);
    options_.base_url = "http://gateway.test";
    options_.auth_mode = GatewayOptions::AuthMode::kStatic;
    options_.secret = "token";
    options_.limits.requests_per_second = 10;  // slow: most of a batch waits in the client's queue
    options_.limits.burst = 2;
    options_.limits.max_in_flight = 4;
    engine_options_.submit_window = 64;
    engine_options_.poll_window = 64;
  }
  void TearDown() override {
    Stop();
    writer_.reset();
    store_.reset();
    gateway_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<PayoutStore> Open() {
    auto s = PayoutStore::Open((dir_ / "state.db").string());
    EXPECT_TRUE(s.ok()) << s.error();
    return s.ok() ? std::move(*s) : nullptr;
  }
  void AddBatch(const std::string& id, int rows) {
    BatchRecord b;
    b.id = id;
    b.sha256 = "sha-" + id;
    b.file_name = id + ".csv";
    b.rows = rows;
    b.started_at_ms = 1;
    std::vector<Payout> ps;
    for (int i = 1; i <= rows; ++i) {
      Payout p;
      p.line = static_cast<uint32_t>(i + 1);
      p.id = id + "-" + std::to_string(i);
      p.amount_minor = 100 + i;
      p.currency = "USD";
      p.account_number = "ACC" + std::to_string(i) + "44";
      p.account_name = "Payee";
      p.operator_code = "BNK";
      p.method = "BANK_TRANSFER";
      ps.push_back(p);
    }
    PayoutList list;
    for (const Payout& p : ps) list.push_back(p);
    ASSERT_TRUE(store_->CreateBatch(b, list).ok());
  }
  void Start() {
    auto client =
        GatewayClient::Create(io_, options_, clock_, random_, nullptr, gateway_->Transport());
    ASSERT_TRUE(client.ok()) << client.error();
    client_ = std::move(*client);
    engine_ = std::make_unique<PayoutEngine>(io_, *store_, *client_, clock_, engine_options_,
                                             &observer_, writer_.get());
    ASSERT_TRUE(engine_->Start().ok());
  }
  void Stop() {
    if (!engine_) return;
    bool drained = false;
    engine_->Drain([&] { drained = true; });
    EXPECT_TRUE(Run([&] { return drained; }, minutes(2)));
    engine_.reset();
    client_.reset();
  }
  bool Run(const std::function<bool()>& done, Duration limit) {
    return RunInFakeTime(io_, clock_, done, limit,
                         [&] { return writer_ && writer_->backlog() > 0; });
  }
  // POSTs the gateway received for payouts of `batch`, from the index `from` of sent() on.
  size_t PostsOf(const std::string& batch, size_t from = 0) {
    size_t n = 0;
    const auto& sent = gateway_->sent();
    for (size_t i = from; i < sent.size(); ++i)
      n += sent[i].what.rfind("POST " + batch + "-", 0) == 0;
    return n;
  }
  size_t GetsOf(const std::string& batch, size_t from = 0) {
    size_t n = 0;
    const auto& sent = gateway_->sent();
    for (size_t i = from; i < sent.size(); ++i)
      n += sent[i].what.rfind("GET " + batch + "-", 0) == 0;
    return n;
  }
  PayoutRow Row(const std::string& id) { return **store_->GetPayout(id); }

  std::filesystem::path dir_;
  FakeClock clock_;  // first: outlives every timer
  boost::asio::io_context io_;
  SystemRandom random_{5};
  std::unique_ptr<PayoutStore> store_;
  std::unique_ptr<SimulatedGateway> gateway_;
  Observer observer_;
  GatewayOptions options_;
  EngineOptions engine_options_;
  std::unique_ptr<StoreThread> writer_;
  std::unique_ptr<GatewayClient> client_;
  std::unique_ptr<PayoutEngine> engine_;
};

TEST_P(EngineControlTest, AHoldStopsNewPostsAtOnceWhilePollsGoOnAndAResumeFinishesTheBatch) {
  AddBatch("B", 200);
  Start();
  ASSERT_TRUE(Run([&] { return PostsOf("B") >= 30; }, minutes(1)));
  bool durable = false;
  const size_t at_hold = gateway_->sent().size();
  engine_->HoldBatch("B", Hold{1, "alice (uid 1001)", "check the file"},
                     AuditEntry{1, "hold", "alice (uid 1001)", ""},
                     [&](Status st) { durable = st.ok(); });
  ASSERT_TRUE(Run([&] { return durable; }, seconds(10)));
  EXPECT_TRUE((*store_->GetBatch("B"))->hold.held());
  Run([] { return false; }, minutes(2));
  // A request already on the wire may still land; nothing queued does.
  EXPECT_LE(PostsOf("B", at_hold), static_cast<size_t>(options_.limits.max_in_flight))
      << "POSTs went on while held";
  EXPECT_GT(GetsOf("B", at_hold), 10u) << "polls go on while held";
  const size_t sent_while_held = PostsOf("B");
  EXPECT_LT(sent_while_held, 200u);

  durable = false;
  engine_->HoldBatch("B", Hold{}, AuditEntry{2, "resume", "alice (uid 1001)", ""},
                     [&](Status st) { durable = st.ok(); });
  ASSERT_TRUE(Run([&] { return observer_.finished.size() == 1; }, minutes(30)));
  EXPECT_TRUE(durable);
  auto ledger = gateway_->Ledger();
  EXPECT_EQ(ledger.size(), 200u);
  for (const auto& [id, e] : ledger) EXPECT_EQ(e.distinct_bodies, 1) << id;
  auto audit = store_->ListAudit("B");
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].action, "hold");
  EXPECT_EQ((*audit)[1].action, "resume");
}

TEST_P(EngineControlTest, HoldAllAlsoHoldsABatchThatArrivesLaterAndSurvivesARestart) {
  AddBatch("A", 20);
  Start();
  bool durable = false;
  engine_->HoldAll(Hold{1, "ops (uid 1002)", "bank holiday"},
                   {{"A", AuditEntry{1, "hold", "ops (uid 1002)", ""}}},
                   [&](Status st) { durable = st.ok(); });
  ASSERT_TRUE(Run([&] { return durable; }, seconds(10)));
  const size_t at_hold = gateway_->sent().size();
  AddBatch("L", 20);
  engine_->AddBatch("L");
  Run([] { return false; }, minutes(1));
  EXPECT_EQ(PostsOf("L"), 0u) << "a batch that arrived while all are held";
  EXPECT_LE(PostsOf("A", at_hold), static_cast<size_t>(options_.limits.max_in_flight));

  Stop();
  Start();  // a restart keeps the hold
  const size_t after_restart = gateway_->sent().size();
  Run([] { return false; }, minutes(1));
  EXPECT_EQ(PostsOf("L", after_restart) + PostsOf("A", after_restart), 0u)
      << "the hold did not survive the restart";

  durable = false;
  engine_->HoldAll(Hold{}, {}, [&](Status st) { durable = st.ok(); });
  ASSERT_TRUE(Run([&] { return observer_.finished.size() == 2; }, minutes(30)));
  EXPECT_EQ(gateway_->Ledger().size(), 40u);
}

TEST_P(EngineControlTest, ACancelEndsEveryNeverSentPayoutAndNoneOfThemIsEverSent) {
  AddBatch("C", 300);
  Start();
  ASSERT_TRUE(Run([&] { return PostsOf("C") >= 50; }, minutes(1)));
  std::optional<Result<CancelOutcome>> outcome;
  engine_->CancelBatch("C", "cancelled by alice (uid 1001): wrong file",
                       AuditEntry{1, "cancel", "alice (uid 1001)", "wrong file"},
                       [&](Result<CancelOutcome> r) { outcome = std::move(r); });
  const size_t at_cancel = gateway_->sent().size();
  ASSERT_TRUE(Run([&] { return outcome.has_value(); }, seconds(10)));
  ASSERT_TRUE(outcome->ok()) << outcome->error();
  EXPECT_GT((*outcome)->cancelled, 150);
  ASSERT_TRUE(Run([&] { return observer_.finished.size() == 1; }, minutes(30)));
  EXPECT_LE(PostsOf("C", at_cancel), static_cast<size_t>(options_.limits.max_in_flight))
      << "only requests already on the wire when cancel was called may land";

  auto ledger = gateway_->Ledger();
  int64_t cancelled = 0, paid = 0;
  for (int i = 1; i <= 300; ++i) {
    const std::string id = "C-" + std::to_string(i);
    const PayoutRow row = Row(id);
    ASSERT_EQ(row.progress.stage, Stage::kFinal) << id;
    if (row.progress.state == FinalState::kCancelled) {
      ++cancelled;
      EXPECT_EQ(ledger.count(id), 0u) << id << " is CANCELLED but reached the gateway";
      EXPECT_EQ(row.progress.attempts, 0) << id;
    } else {
      ++paid;
      EXPECT_EQ(row.progress.state, FinalState::kSuccess) << id << ": " << row.progress.error;
      EXPECT_EQ(ledger.count(id), 1u) << id;
    }
  }
  EXPECT_EQ(cancelled, (*outcome)->cancelled);
  EXPECT_EQ(paid, 300 - cancelled);
  EXPECT_EQ((*store_->GetBatch("C"))->status, BatchRecord::Status::kFinished);
  auto p = store_->Progress("C");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->states[FinalState::kCancelled], cancelled);
}

// A crash cut off a POST (stage kSubmitting at the start, attempts 1) that never reached the
// gateway. The batch is cancelled before it is resolved: it is never sent again and ends ERROR once
// the gateway has said "no such payout" for cancelled_unknown_settle; the payouts never sent are
// CANCELLED.
TEST_P(EngineControlTest, ACutOffPostOfACancelledBatchIsNeverSentAgain) {
  AddBatch("K", 3);
  for (const char* id : {"K-2"}) {
    PayoutUpdate u;
    u.id = id;
    u.progress.stage = Stage::kSubmitting;
    u.progress.attempts = 1;
    u.progress.since_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_.WallNow().time_since_epoch())
            .count();
    ASSERT_TRUE(store_->Apply({u}).ok());
  }
  engine_options_.cancelled_unknown_settle = seconds(20);
  options_.limits.requests_per_second = 1000;
  Start();
  std::optional<Result<CancelOutcome>> outcome;
  engine_->CancelBatch("K", "cancelled", AuditEntry{1, "cancel", "alice (uid 1001)", ""},
                       [&](Result<CancelOutcome> r) { outcome = std::move(r); });
  ASSERT_TRUE(Run([&] { return outcome.has_value(); }, seconds(10)));
  ASSERT_TRUE(outcome->ok()) << outcome->error();
  EXPECT_EQ((*outcome)->cancelled, 2);      // K-1 and K-3, never sent
  EXPECT_EQ((*outcome)->still_running, 1);  // K-2 may have been sent
  const SteadyTime cancelled_at = clock_.Now();
  ASSERT_TRUE(Run([&] { return observer_.finished.size() == 1; }, minutes(5)));
  EXPECT_EQ(Row("K-1").progress.state, FinalState::kCancelled);
  EXPECT_EQ(Row("K-3").progress.state, FinalState::kCancelled);
  const PayoutRow k2 = Row("K-2");
  EXPECT_EQ(k2.progress.state, FinalState::kError);
  EXPECT_NE(k2.progress.error.find("never received"), std::string::npos) << k2.progress.error;
  EXPECT_GE(clock_.Now() - cancelled_at, seconds(20)) << "it waited for any late POST to land";
  EXPECT_EQ(PostsOf("K"), 0u) << "nothing was sent after the cancel";
  EXPECT_GE(GetsOf("K"), 2u) << "K-2 was asked about, more than once";
  EXPECT_EQ(gateway_->Ledger().count("K-2"), 0u);
}

INSTANTIATE_TEST_SUITE_P(Commits, EngineControlTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("OnStoreThread")
                                             : std::string("OnIoThread");
                         });

}  // namespace
}  // namespace payoutd
