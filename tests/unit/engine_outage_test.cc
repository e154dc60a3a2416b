// Gateway outages, end to end inside one process and in fake time: the real PayoutEngine and
// GatewayClient against the sandbox gateway's logic behind a simulated network
// (tests/support/simulated_gateway.h), with the shipped retry settings (8 attempts, 500 ms to 60
// s). Ten minutes of outage run in well under a second, and every schedule is exact.
//
// What must hold after every outage kind: every payout reaches the state the gateway gives it,
// none is ERROR, each id is created once with one body, and a payout's attempts are what the
// healthy periods explain.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <boost/asio/io_context.hpp>

#include "core/engine/payout_engine.h"
#include "core/gateway/gateway_client.h"
#include "core/store/payout_store.h"
#include "core/store/store_thread.h"
#include "tests/support/payout_list.h"
#include "tests/support/simulated_gateway.h"

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::RunInFakeTime;
using testing::SimulatedGateway;
using Fault = SimulatedGateway::Fault;

class Observer final : public EngineObserver, public GatewayObserver {
 public:
  std::vector<std::string> finished;
  int circuit_opened = 0;
  int circuit_closed = 0;
  void OnBatchFinished(const std::string& batch_id) override { finished.push_back(batch_id); }
  void OnCircuit(const CircuitEvent& e) override {
    circuit_opened += e.kind == CircuitEvent::Kind::kOpened;
    circuit_closed += e.kind == CircuitEvent::Kind::kClosed;
  }
};

// The sandbox pays every account but those ending in 13, which it ends FAILED.
FinalState Truth(const Payout& p) {
  return p.account_number.size() >= 2 &&
                 p.account_number.substr(p.account_number.size() - 2) == "13"
             ? FinalState::kFailed
             : FinalState::kSuccess;
}

// Each engine test runs twice: commits on the io thread, and on a StoreThread (as the daemon does).
class EngineOutageTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = std::filesystem::temp_directory_path() /
           ("outage_test_" + std::to_string(::getpid()) + "_" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = OpenStore();
    if (GetParam()) writer_ = std::make_unique<StoreThread>(io_, OpenStore());

    client_options_.base_url = "http://gateway.test";
    client_options_.auth_mode = GatewayOptions::AuthMode::kStatic;
    client_options_.secret = "static-token";
    client_options_.limits.requests_per_second = 20;
    client_options_.limits.burst = 5;
    client_options_.limits.max_in_flight = 16;
    // retry: the shipped 8 attempts, 500 ms doubling to 60 s; request timeout 30 s.
    engine_options_.submit_window = 32;
    engine_options_.poll_window = 32;
  }

  void TearDown() override {
    Stop();
    writer_.reset();
    store_.reset();
    gateway_ptr_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<PayoutStore> OpenStore() {
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
    for (int i = 1; i <= rows; ++i) {
      Payout p;
      p.line = static_cast<uint32_t>(i + 1);
      p.id = id + "-" + std::to_string(i);
      p.amount_minor = 1000 + i;
      p.currency = "USD";
      p.account_number = "100" + std::to_string(i);
      p.account_name = "Payee " + std::to_string(i);
      p.operator_code = "BNK_000";
      p.method = "BANK_TRANSFER";
      payouts_.push_back(p);
    }
    std::vector<Payout> mine(payouts_.end() - rows, payouts_.end());
    ASSERT_TRUE(store_->CreateBatch(b, ToPayoutList(mine)).ok());
  }

  // A client and an engine on the store, as at a daemon's start.
  void Start() {
    auto client = GatewayClient::Create(io_, client_options_, clock_, random_, &observer_,
                                        gateway().Transport());
    ASSERT_TRUE(client.ok()) << client.error();
    client_ = std::move(*client);
    engine_ = std::make_unique<PayoutEngine>(io_, *store_, *client_, clock_, engine_options_,
                                             &observer_, writer_.get());
    ASSERT_TRUE(engine_->Start().ok());
  }

  // What a SIGTERM does: drain, then drop both. The state is what the store holds.
  void Stop() {
    if (!engine_) return;
    bool drained = false;
    engine_->Drain([&] { drained = true; });
    EXPECT_TRUE(Run([&] { return drained; }, minutes(2))) << "the engine did not drain";
    engine_.reset();
    client_.reset();
  }

  SimulatedGateway& gateway() {
    if (!gateway_ptr_) gateway_ptr_ = std::make_unique<SimulatedGateway>(io_, clock_, sandbox_);
    return *gateway_ptr_;
  }

  bool Run(const std::function<bool()>& done, Duration limit) {
    return RunInFakeTime(io_, clock_, done, limit,
                         [&] { return writer_ && writer_->backlog() > 0; });
  }
  bool RunToEnd(size_t batches, Duration limit = std::chrono::hours(3)) {
    return Run([&] { return observer_.finished.size() >= batches; }, limit);
  }

  PayoutRow Row(const std::string& id) {
    auto r = store_->GetPayout(id);
    EXPECT_TRUE(r.ok() && r->has_value()) << id;
    return r.ok() && r->has_value() ? **r : PayoutRow{};
  }

  // Every payout final with the gateway's outcome, none ERROR, each created once with one body;
  // returns the most attempts any payout needed.
  int ExpectEachPaidOnceAsTheGatewaySays() {
    auto ledger = gateway().Ledger();
    int most_attempts = 0;
    for (const Payout& p : payouts_) {
      PayoutRow row = Row(p.id);
      EXPECT_EQ(row.progress.stage, Stage::kFinal) << p.id;
      EXPECT_EQ(row.progress.state, Truth(p)) << p.id << ": " << row.progress.error;
      EXPECT_NE(row.progress.state, FinalState::kError) << p.id << ": " << row.progress.error;
      auto it = ledger.find(p.id);
      EXPECT_TRUE(it != ledger.end() && it->second.created) << p.id << " never reached the gateway";
      if (it != ledger.end()) {
        EXPECT_EQ(it->second.distinct_bodies, 1) << p.id;
      }
      most_attempts = std::max(most_attempts, row.progress.attempts);
    }
    EXPECT_EQ(ledger.size(), payouts_.size()) << "the gateway holds payouts outside the batch";
    return most_attempts;
  }

  // Fake seconds from `from` to the first request that got through to the gateway after it.
  double SecondsUntilMovingAgain(SteadyTime from) {
    for (const auto& s : gateway().sent())
      if (s.at >= from) return std::chrono::duration<double>(s.at - from).count();
    return -1;
  }

  std::filesystem::path dir_;
  FakeClock clock_;  // first: every timer below is made by it and must go before it
  boost::asio::io_context io_;
  SystemRandom random_{42};
  std::unique_ptr<PayoutStore> store_;
  sandbox::SandboxOptions sandbox_ = [] {
    sandbox::SandboxOptions o;
    o.auth = false;
    o.callbacks = false;
    o.final_after_ms = 2000;
    return o;
  }();
  std::unique_ptr<SimulatedGateway> gateway_ptr_;  // made at first use, from sandbox_
  Observer observer_;
  GatewayOptions client_options_;
  EngineOptions engine_options_;
  std::vector<Payout> payouts_;
  std::unique_ptr<StoreThread> writer_;
  std::unique_ptr<GatewayClient> client_;
  std::unique_ptr<PayoutEngine> engine_;
};

TEST_P(EngineOutageTest, RefusedConnectionsForTenMinutesFailNoPayoutAndCostNoAttempt) {
  AddBatch("B", 300);
  const SteadyTime from = clock_.Now() + seconds(5), to = from + minutes(10);
  gateway().Outage(Fault::kRefuse, from, to);
  Start();
  ASSERT_TRUE(RunToEnd(1));
  EXPECT_EQ(ExpectEachPaidOnceAsTheGatewaySays(), 1) << "a refused connection carries no POST";
  EXPECT_EQ(observer_.circuit_opened, 1);
  EXPECT_EQ(observer_.circuit_closed, 1);
  std::cout << "[outage] refused 10 min: moving again " << SecondsUntilMovingAgain(to)
            << " s after the gateway came back\n";
}

TEST_P(EngineOutageTest, Answering503ForTenMinutesFailsNoPayout) {
  AddBatch("B", 300);
  const SteadyTime from = clock_.Now() + seconds(5), to = from + minutes(10);
  gateway().Outage(Fault::k503, from, to);
  Start();
  ASSERT_TRUE(RunToEnd(1));
  // A POST answered 503 may have been created: GET says it was not, and it is sent again.
  EXPECT_LE(ExpectEachPaidOnceAsTheGatewaySays(), 3);
  EXPECT_EQ(observer_.circuit_opened, 1);
  std::cout << "[outage] 503 for 10 min: moving again " << SecondsUntilMovingAgain(to)
            << " s after the gateway came back\n";
}

TEST_P(EngineOutageTest, HangingForTenMinutesFailsNoPayout) {
  AddBatch("B", 300);
  const SteadyTime from = clock_.Now() + seconds(5), to = from + minutes(10);
  gateway().Outage(Fault::kHang, from, to);
  Start();
  ASSERT_TRUE(RunToEnd(1));
  // Requests that timed out reached the gateway when it woke: each is found with GET, not re-sent.
  EXPECT_LE(ExpectEachPaidOnceAsTheGatewaySays(), 2);
  EXPECT_EQ(observer_.circuit_opened, 1);
  std::cout << "[outage] hanging 10 min: moving again " << SecondsUntilMovingAgain(to)
            << " s after the gateway came back\n";
}

TEST_P(EngineOutageTest, FlappingThirtySecondsDownThirtyUpMakesProgressAndLosesNothing) {
  AddBatch("B", 300);
  client_options_.limits.requests_per_second = 2;  // 300 payouts need several up periods
  SteadyTime t = clock_.Now() + seconds(5);
  for (int i = 0; i < 12; ++i, t += minutes(1))
    gateway().Outage(Fault::kRefuse, t, t + seconds(30));
  Start();
  ASSERT_TRUE(RunToEnd(1));
  EXPECT_EQ(ExpectEachPaidOnceAsTheGatewaySays(), 1);
  EXPECT_GE(observer_.circuit_opened, 6) << "each down period was noticed";
  EXPECT_EQ(observer_.circuit_opened, observer_.circuit_closed);
}

// The per-payout budget still works: one payout's own failures, while the others are paid, end it.
TEST_P(EngineOutageTest, OnePayoutRefusedByTheGatewayWhileOthersSucceedEndsErrorAfterMaxAttempts) {
  AddBatch("B", 50);
  gateway().Fail("B-7", 404);  // a POST answered 404: the gateway answered, without effect
  Start();
  ASSERT_TRUE(RunToEnd(1));
  PayoutRow row = Row("B-7");
  EXPECT_EQ(row.progress.state, FinalState::kError);
  EXPECT_NE(row.progress.error.find("not created after 8 attempts"), std::string::npos)
      << row.progress.error;
  EXPECT_EQ(observer_.circuit_opened, 0) << "one payout's failures are not an outage";
  EXPECT_EQ(Row("B-8").progress.state, FinalState::kSuccess);
}

TEST_P(EngineOutageTest, OnePayoutsServerErrorsKeepTheCircuitClosedAndEndItAtGiveUp) {
  engine_options_.polling.give_up_after = std::chrono::hours(1);
  AddBatch("B", 50);
  gateway().Fail("B-7", 500);
  Start();
  ASSERT_TRUE(RunToEnd(1));
  PayoutRow row = Row("B-7");
  // POST 500 might have created it: it is checked, never given up early, and ends at give-up.
  EXPECT_EQ(row.progress.state, FinalState::kError);
  EXPECT_NE(row.progress.error.find("outcome unknown after"), std::string::npos)
      << row.progress.error;
  EXPECT_EQ(observer_.circuit_opened, 0);
  EXPECT_EQ(Row("B-8").progress.state, FinalState::kSuccess);
}

TEST_P(EngineOutageTest, GiveUpAfterDoesNotRunWhileTheCircuitIsOpen) {
  engine_options_.polling.give_up_after = minutes(5);
  sandbox_.final_after_ms = 14 * 60 * 1000;  // payouts are created early and final at 14 min
  AddBatch("B", 20);
  const SteadyTime from = clock_.Now() + minutes(1), to = from + minutes(10);
  gateway().Outage(Fault::kRefuse, from, to);
  Start();
  ASSERT_TRUE(RunToEnd(1));
  // 14 minutes from creation to final, 10 of them an outage: 4 minutes of polling, under 5.
  ExpectEachPaidOnceAsTheGatewaySays();
}

TEST_P(EngineOutageTest, RestartDuringAnOutageResumesPausedAndLosesNothing) {
  AddBatch("B", 300);
  const SteadyTime from = clock_.Now() + seconds(5), to = from + minutes(10);
  gateway().Outage(Fault::kRefuse, from, to);
  Start();
  ASSERT_TRUE(Run([&] { return client_->circuit().open; }, minutes(1)));
  Run([] { return false; }, minutes(2));  // two minutes into the outage
  Stop();
  auto outages = store_->LoadOutages(0);
  ASSERT_TRUE(outages.ok());
  ASSERT_EQ(outages->size(), 1u);
  EXPECT_EQ(outages->front().ended_at_ms, 0) << "the outage is durable while it lasts";
  EXPECT_NE(outages->front().cause.find("refused"), std::string::npos) << outages->front().cause;

  const size_t sent_before = gateway().sent().size();
  Start();
  EXPECT_TRUE(client_->circuit().open) << "a restart during an outage resumes paused";
  ASSERT_TRUE(Run([&] { return gateway().sent().size() > sent_before; }, minutes(5)));
  ASSERT_TRUE(Run([&] { return gateway().sent().size() > sent_before + 1; }, minutes(5)));
  const auto& sent = gateway().sent();
  EXPECT_GT(sent[sent_before + 1].at - sent[sent_before].at, milliseconds(400))
      << "after the restart only probes go out, one at a time";
  ASSERT_TRUE(RunToEnd(1));
  EXPECT_EQ(ExpectEachPaidOnceAsTheGatewaySays(), 1);
  outages = store_->LoadOutages(0);
  ASSERT_TRUE(outages.ok());
  ASSERT_EQ(outages->size(), 1u) << "the same outage, resumed";
  EXPECT_GE(outages->front().ended_at_ms - outages->front().started_at_ms, 10 * 60 * 1000 - 1000);
}

INSTANTIATE_TEST_SUITE_P(Commits, EngineOutageTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("OnStoreThread")
                                             : std::string("OnIoThread");
                         });

}  // namespace
}  // namespace payoutd
