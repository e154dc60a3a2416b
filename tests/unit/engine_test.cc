// PayoutEngine against a scripted fake gateway and a real store in a temp file: the decisions of
// the state machine (what happens after each gateway answer), without a network.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "core/engine/payout_engine.h"
#include "core/store/payout_store.h"
#include "core/store/store_thread.h"
#include "tests/support/payout_list.h"

namespace payoutd {
namespace {

// Answers each call from a script per payout id (front first); when a script runs out the payout
// is created and SUCCESS. Records every call.
class FakeGateway final : public GatewayClient {
 public:
  explicit FakeGateway(boost::asio::io_context& io) : io_(io) {}
  std::map<std::string, std::deque<SubmitResult>> submit_script;
  std::map<std::string, std::deque<PollResult>> poll_script;
  std::vector<std::string> calls;  // "POST id" / "GET id"
  std::map<std::string, Payout> bodies;

  void Submit(const Payout& p, std::function<void(SubmitResult)> done) override {
    calls.push_back("POST " + p.id);
    if (bodies.count(p.id)) {
      EXPECT_EQ(bodies[p.id].amount_minor, p.amount_minor) << "a re-POST changed the body";
    }
    bodies[p.id] = p;
    SubmitResult r;
    r.outcome = SubmitResult::Outcome::kCreated;
    r.post_attempts = 1;
    auto& q = submit_script[p.id];
    if (!q.empty()) {
      r = q.front();
      q.pop_front();
    }
    ++outstanding_;
    boost::asio::post(io_, [this, r, done] {
      --outstanding_;
      done(r);
    });
  }
  void Poll(const std::string& id, std::function<void(PollResult)> done) override {
    calls.push_back("GET " + id);
    PollResult r;
    r.outcome = PollResult::Outcome::kFound;
    r.payout.id = id;
    r.payout.status = "SUCCESS";
    if (bodies.count(id)) {
      r.payout.amount_minor = bodies[id].amount_minor;
      r.payout.currency = bodies[id].currency;
    }
    auto& q = poll_script[id];
    if (!q.empty()) {
      r = q.front();
      q.pop_front();
    }
    ++outstanding_;
    boost::asio::post(io_, [this, r, done] {
      --outstanding_;
      done(r);
    });
  }
  void Reconfigure(const LimitOptions&, const RetryOptions&) override {}
  void SetSendGate(std::function<bool(SteadyTime)>) override {}
  void Shutdown() override {}
  void Cancel() override {}
  size_t outstanding() const override { return outstanding_; }
  int in_flight() const override { return static_cast<int>(outstanding_); }
  bool paused() const override { return false; }
  CircuitState circuit() const override { return CircuitState{}; }
  void SetCircuitListener(std::function<void(const CircuitEvent&)>) override {}
  void OpenCircuit(WallTime, const std::string&) override {}
  size_t WithdrawSubmissions(const std::function<bool(const std::string&)>&) override { return 0; }

 private:
  boost::asio::io_context& io_;
  size_t outstanding_ = 0;
};

class Observer final : public EngineObserver {
 public:
  std::vector<std::string> finished;
  std::map<std::string, FinalState> finals;
  void OnFinal(const PayoutRow& row) override { finals[row.payout.id] = row.progress.state; }
  void OnBatchFinished(const std::string& batch_id) override { finished.push_back(batch_id); }
  void OnUnknownStatus(const std::string& status) override { unknown_statuses.push_back(status); }
  std::vector<std::string> unknown_statuses;
};

Payout MakePayout(const std::string& id, uint32_t line, int64_t amount) {
  Payout p;
  p.line = line;
  p.id = id;
  p.amount_minor = amount;
  p.currency = "USD";
  p.account_number = "11223344";
  p.account_name = "Test";
  p.operator_code = "BNK_000";
  p.method = "BANK_TRANSFER";
  return p;
}

// A poll answer: the gateway holds the payout with this status, amount and currency USD.
PollResult Found(const std::string& status, int64_t amount_minor) {
  PollResult r;
  r.outcome = PollResult::Outcome::kFound;
  r.payout.status = status;
  r.payout.amount_minor = amount_minor;
  r.payout.currency = "USD";
  return r;
}

// The writer's store, whose next `fail_applies` Apply calls fail as a lost database connection
// does (kUnavailable), writing nothing; everything else goes through to `inner`.
class UnreachableStore final : public PayoutStore {
 public:
  explicit UnreachableStore(std::unique_ptr<PayoutStore> inner) : inner_(std::move(inner)) {}
  std::atomic<int> fail_applies{0};
  std::atomic<int> applies_refused{0};

  Status Apply(const std::vector<PayoutUpdate>& updates) override {
    if (fail_applies.load() > 0) {
      --fail_applies;
      ++applies_refused;
      return Status::Unavailable("state: connection to the database lost");
    }
    return inner_->Apply(updates);
  }
  Result<bool> HasBatchId(std::string_view b) override { return inner_->HasBatchId(b); }
  Result<bool> HasContent(std::string_view s) override { return inner_->HasContent(s); }
  Result<std::vector<std::string>> FindUsedPayoutIds(const PayoutList& p) override {
    return inner_->FindUsedPayoutIds(p);
  }
  Status CreateBatch(const BatchRecord& b, const PayoutList& p) override {
    return inner_->CreateBatch(b, p);
  }
  Result<std::vector<BatchRecord>> ListBatches() override { return inner_->ListBatches(); }
  Result<std::optional<BatchRecord>> GetBatch(std::string_view b) override {
    return inner_->GetBatch(b);
  }
  Status SetBatchStatus(std::string_view b, BatchRecord::Status s, int64_t at) override {
    return inner_->SetBatchStatus(b, s, at);
  }
  Result<std::vector<PayoutRow>> LoadByStage(std::string_view b, Stage s, uint32_t after,
                                             size_t limit) override {
    return inner_->LoadByStage(b, s, after, limit);
  }
  Result<std::vector<PayoutRow>> LoadDue(int64_t now, size_t limit) override {
    return inner_->LoadDue(now, limit);
  }
  Result<std::vector<DueRow>> LoadDueAfter(int64_t now, DuePosition after, size_t limit) override {
    return inner_->LoadDueAfter(now, after, limit);
  }
  Result<std::optional<int64_t>> NextDueAt() override { return inner_->NextDueAt(); }
  Result<std::optional<PayoutRow>> GetPayout(std::string_view id) override {
    return inner_->GetPayout(id);
  }
  Status ForEachPayout(std::string_view b,
                       const std::function<void(const PayoutRow&)>& fn) override {
    return inner_->ForEachPayout(b, fn);
  }
  Result<BatchProgress> Progress(std::string_view b) override { return inner_->Progress(b); }
  Status RecordOutage(const GatewayOutage& o) override { return inner_->RecordOutage(o); }
  Result<std::vector<GatewayOutage>> LoadOutages(int64_t after) override {
    return inner_->LoadOutages(after);
  }
  Result<bool> AddApproval(std::string_view b, const Approval& a) override {
    return inner_->AddApproval(b, a);
  }
  Result<std::vector<Approval>> ListApprovals(std::string_view b) override {
    return inner_->ListApprovals(b);
  }
  Status AddAudit(std::string_view b, const AuditEntry& e) override {
    return inner_->AddAudit(b, e);
  }
  Result<std::vector<AuditEntry>> ListAudit(std::string_view b) override {
    return inner_->ListAudit(b);
  }
  Status SetHold(std::string_view b, const Hold& h) override { return inner_->SetHold(b, h); }
  Status SetHoldAll(const Hold& h) override { return inner_->SetHoldAll(h); }
  Result<Hold> GetHoldAll() override { return inner_->GetHoldAll(); }
  // The next `lose_cancel_answers` cancels commit, and then fail as unavailable: a COMMIT whose
  // answer the connection lost.
  std::atomic<int> lose_cancel_answers{0};
  Result<CancelOutcome> CancelUnsent(std::string_view b, int64_t at, std::string_view e) override {
    Result<CancelOutcome> out = inner_->CancelUnsent(b, at, e);
    if (out.ok() && lose_cancel_answers.load() > 0) {
      --lose_cancel_answers;
      return Status::Unavailable("state: connection to the database lost at COMMIT");
    }
    return out;
  }

 private:
  std::unique_ptr<PayoutStore> inner_;
};

// Every engine test runs twice: commits on the io thread, and on a StoreThread (as the daemon
// does).
class EngineTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');  // "Engine_X/OnStoreThread"
    dir_ = std::filesystem::temp_directory_path() /
           ("engine_test_" + std::to_string(::getpid()) + "_" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = PayoutStore::Open((dir_ / "state.db").string());
    ASSERT_TRUE(s.ok()) << s.error();
    store_ = std::move(*s);
    options_.polling.initial_delay = std::chrono::milliseconds(1);
    options_.polling.max_interval = std::chrono::milliseconds(5);
    options_.commit_interval = std::chrono::milliseconds(1);
    if (GetParam()) {
      auto w = PayoutStore::Open((dir_ / "state.db").string());
      ASSERT_TRUE(w.ok()) << w.error();
      writer_ = std::make_unique<StoreThread>(io_, std::move(*w));
    }
  }
  void TearDown() override {
    writer_.reset();
    std::filesystem::remove_all(dir_);
  }

  void AddBatch(const std::string& id, const std::vector<Payout>& payouts) {
    BatchRecord b;
    b.id = id;
    b.sha256 = "sha-" + id;
    b.file_name = id + ".csv";
    b.rows = static_cast<int64_t>(payouts.size());
    b.started_at_ms = 1;
    ASSERT_TRUE(store_->CreateBatch(b, ToPayoutList(payouts)).ok());
  }

  // Runs the engine until every batch is finished, or fails after a deadline.
  void RunToEnd(size_t expect_batches) {
    PayoutEngine engine(io_, *store_, gateway_, clock_, options_, &observer_, writer_.get());
    ASSERT_TRUE(engine.Start().ok());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (observer_.finished.size() < expect_batches &&
           std::chrono::steady_clock::now() < deadline) {
      io_.run_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(observer_.finished.size(), expect_batches) << "batches did not finish in time";
  }

  PayoutRow Row(const std::string& id) {
    auto r = store_->GetPayout(id);
    EXPECT_TRUE(r.ok() && r->has_value());
    return **r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<PayoutStore> store_;
  boost::asio::io_context io_;
  FakeGateway gateway_{io_};
  SystemClock clock_;
  Observer observer_;
  EngineOptions options_;
  std::unique_ptr<StoreThread> writer_;  // after io_: destroyed first
};

TEST_P(EngineTest, Engine_PaysEveryPayoutOnceAndFinishesTheBatch) {
  std::vector<Payout> ps;
  for (int i = 1; i <= 500; ++i) ps.push_back(MakePayout("P-" + std::to_string(i), i + 1, 100 * i));
  AddBatch("B1", ps);
  RunToEnd(1);
  std::map<std::string, int> posts;
  for (const auto& c : gateway_.calls)
    if (c.rfind("POST ", 0) == 0) ++posts[c.substr(5)];
  EXPECT_EQ(posts.size(), 500u);
  for (const auto& [id, n] : posts) EXPECT_EQ(n, 1) << id;
  auto progress = store_->Progress("B1");
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->states[FinalState::kSuccess], 500);
  EXPECT_EQ(progress->batch.status, BatchRecord::Status::kFinished);
}

TEST_P(EngineTest, Engine_UnknownOutcomeIsResolvedWithGetBeforeAnyResend) {
  AddBatch("B1", {MakePayout("U-1", 2, 500)});
  SubmitResult unknown;
  unknown.outcome = SubmitResult::Outcome::kUnknown;
  unknown.post_attempts = 8;
  unknown.message = "timeout";
  gateway_.submit_script["U-1"].push_back(unknown);
  PollResult not_found;
  not_found.outcome = PollResult::Outcome::kNotFound;
  gateway_.poll_script["U-1"].push_back(not_found);
  RunToEnd(1);
  ASSERT_GE(gateway_.calls.size(), 4u);
  EXPECT_EQ(gateway_.calls[0], "POST U-1");
  EXPECT_EQ(gateway_.calls[1], "GET U-1") << "an unknown outcome must be checked before a re-send";
  EXPECT_EQ(gateway_.calls[2], "POST U-1") << "404 after an unknown outcome: send again, same id";
  EXPECT_EQ(Row("U-1").progress.state, FinalState::kSuccess);
  EXPECT_EQ(Row("U-1").progress.attempts, 9);
}

TEST_P(EngineTest, Engine_RejectedAndConflictAndNotCreatedAreFinal) {
  AddBatch("B1", {MakePayout("R-1", 2, 1), MakePayout("C-1", 3, 2), MakePayout("N-1", 4, 3)});
  SubmitResult r;
  r.outcome = SubmitResult::Outcome::kRejected;
  r.message = "INVALID_ACCOUNT: no such account";
  r.post_attempts = 1;
  gateway_.submit_script["R-1"].push_back(r);
  r.outcome = SubmitResult::Outcome::kConflict;
  r.message = "amount differs";
  gateway_.submit_script["C-1"].push_back(r);
  r.outcome = SubmitResult::Outcome::kNotCreated;
  r.message = "connection refused";
  r.post_attempts = 8;
  gateway_.submit_script["N-1"].push_back(r);
  RunToEnd(1);
  EXPECT_EQ(Row("R-1").progress.state, FinalState::kRejected);
  EXPECT_NE(Row("R-1").progress.error.find("INVALID_ACCOUNT"), std::string::npos);
  EXPECT_EQ(Row("C-1").progress.state, FinalState::kError);
  EXPECT_NE(Row("C-1").progress.error.find("conflict"), std::string::npos);
  EXPECT_EQ(Row("N-1").progress.state, FinalState::kError);
  EXPECT_EQ(gateway_.calls.size(), 3u) << "final answers need no poll";
}

TEST_P(EngineTest, Engine_GatewayHoldingADifferentAmountIsAnIdConflict) {
  AddBatch("B1", {MakePayout("X-1", 2, 1000)});
  gateway_.poll_script["X-1"].push_back(Found("PENDING", 999));
  RunToEnd(1);
  EXPECT_EQ(Row("X-1").progress.state, FinalState::kError);
  EXPECT_NE(Row("X-1").progress.error.find("id conflict"), std::string::npos)
      << Row("X-1").progress.error;
}

TEST_P(EngineTest, Engine_GatewayHoldingADifferentCurrencyIsAnIdConflict) {
  AddBatch("B1", {MakePayout("X-1", 2, 1000)});
  PollResult eur = Found("SUCCESS", 1000);
  eur.payout.currency = "EUR";
  gateway_.poll_script["X-1"].push_back(eur);
  RunToEnd(1);
  EXPECT_EQ(Row("X-1").progress.state, FinalState::kError)
      << "a SUCCESS in another currency is not our payout";
  EXPECT_NE(Row("X-1").progress.error.find("id conflict"), std::string::npos)
      << Row("X-1").progress.error;
}

TEST_P(EngineTest, Engine_GatewayHoldingADifferentAccountIsAnIdConflict) {
  AddBatch("B1", {MakePayout("X-1", 2, 1000)});
  PollResult elsewhere = Found("SUCCESS", 1000);
  elsewhere.payout.account_number = "99999999";
  gateway_.poll_script["X-1"].push_back(elsewhere);
  RunToEnd(1);
  EXPECT_EQ(Row("X-1").progress.state, FinalState::kError)
      << "paid to another beneficiary must never read SUCCESS";
  EXPECT_NE(Row("X-1").progress.error.find("id conflict"), std::string::npos)
      << Row("X-1").progress.error;
}

TEST_P(EngineTest, Engine_PollsUntilFinalAndKeepsFeeAndStatus) {
  AddBatch("B1", {MakePayout("F-1", 2, 1000)});
  const PollResult pending = Found("PENDING", 1000);
  gateway_.poll_script["F-1"] = {pending, pending};
  PollResult failed = Found("EXPIRED", 1000);
  failed.payout.has_fee = true;
  failed.payout.fee_minor = 7;
  failed.payout.fee_currency = "USD";
  failed.payout.processed_at = "2026-11-24T01:00:00Z";
  gateway_.poll_script["F-1"].push_back(failed);
  RunToEnd(1);
  PayoutRow row = Row("F-1");
  EXPECT_EQ(row.progress.state, FinalState::kFailed);
  EXPECT_EQ(row.progress.gateway_status, "EXPIRED");
  EXPECT_TRUE(row.progress.has_fee);
  EXPECT_EQ(row.progress.fee_minor, 7);
  EXPECT_EQ(row.progress.processed_at, "2026-11-24T01:00:00Z");
  EXPECT_EQ(std::count(gateway_.calls.begin(), gateway_.calls.end(), "GET F-1"), 3);
}

TEST_P(EngineTest, Engine_SuccessWithAnUnusableFeeStaysSuccessAndSaysSo) {
  AddBatch("B1", {MakePayout("F-1", 2, 1000)});
  PollResult done = Found("SUCCESS", 1000);
  done.payout.fee_problem = "fee 0.125 USD: amount has more decimals than the currency allows";
  gateway_.poll_script["F-1"] = {done};
  RunToEnd(1);
  PayoutRow row = Row("F-1");
  EXPECT_EQ(row.progress.state, FinalState::kSuccess);
  EXPECT_FALSE(row.progress.has_fee);
  EXPECT_EQ(row.progress.error,
            "fee not recorded: fee 0.125 USD: amount has more decimals than the currency allows");
}

// Polling outcomes: none of these may end a payout early or send it again.
TEST_P(EngineTest, Engine_APollThatFailsAfterAllRetriesIsTriedAgainLater) {
  AddBatch("B1", {MakePayout("P-1", 2, 1000)});
  PollResult failed;
  failed.outcome = PollResult::Outcome::kFailed;
  failed.message = "HTTP 503";
  gateway_.poll_script["P-1"] = {failed, failed, Found("SUCCESS", 1000)};
  RunToEnd(1);
  EXPECT_EQ(Row("P-1").progress.state, FinalState::kSuccess);
  EXPECT_EQ(std::count(gateway_.calls.begin(), gateway_.calls.end(), "GET P-1"), 3);
  EXPECT_EQ(std::count(gateway_.calls.begin(), gateway_.calls.end(), "POST P-1"), 1);
}

TEST_P(EngineTest, Engine_A404WhilePollingAnAcceptedPayoutKeepsPollingAndNeverResends) {
  AddBatch("B1", {MakePayout("P-1", 2, 1000)});
  PollResult missing;
  missing.outcome = PollResult::Outcome::kNotFound;
  gateway_.poll_script["P-1"] = {missing, missing, Found("SUCCESS", 1000)};
  RunToEnd(1);
  EXPECT_EQ(Row("P-1").progress.state, FinalState::kSuccess);
  EXPECT_EQ(std::count(gateway_.calls.begin(), gateway_.calls.end(), "POST P-1"), 1)
      << "the gateway accepted it once: a 404 later is not a reason to send it again";
}

TEST_P(EngineTest, Engine_AnUnknownStatusIsCountedAndPolledUntilAFinalOne) {
  AddBatch("B1", {MakePayout("P-1", 2, 1000)});
  gateway_.poll_script["P-1"] = {Found("ON_HOLD_AT_BANK", 1000), Found("FAILED", 1000)};
  RunToEnd(1);
  EXPECT_EQ(observer_.unknown_statuses, std::vector<std::string>{"ON_HOLD_AT_BANK"});
  EXPECT_EQ(Row("P-1").progress.state, FinalState::kFailed);
  EXPECT_EQ(Row("P-1").progress.gateway_status, "FAILED");
}

TEST_P(EngineTest, Engine_GivingUpWhileThePostsOutcomeIsUnknownSaysSo) {
  options_.polling.give_up_after = std::chrono::milliseconds(30);
  AddBatch("B1", {MakePayout("U-1", 2, 1000)});
  SubmitResult unknown;
  unknown.outcome = SubmitResult::Outcome::kUnknown;
  unknown.post_attempts = 8;
  unknown.message = "timeout";
  gateway_.submit_script["U-1"].push_back(unknown);
  PollResult failed;
  failed.outcome = PollResult::Outcome::kFailed;
  failed.message = "Operation timed out";
  for (int i = 0; i < 1000; ++i) gateway_.poll_script["U-1"].push_back(failed);
  RunToEnd(1);
  PayoutRow row = Row("U-1");
  EXPECT_EQ(row.progress.state, FinalState::kError);
  EXPECT_NE(row.progress.error.find("outcome unknown after"), std::string::npos)
      << row.progress.error;
  EXPECT_NE(row.progress.error.find("timed out"), std::string::npos)
      << "the last reason is kept: " << row.progress.error;
  EXPECT_EQ(std::count(gateway_.calls.begin(), gateway_.calls.end(), "POST U-1"), 1)
      << "never re-sent while its outcome is unknown";
}

TEST_P(EngineTest, Engine_GivesUpWithErrorAfterGiveUpAfter) {
  options_.polling.give_up_after = std::chrono::milliseconds(30);
  AddBatch("B1", {MakePayout("G-1", 2, 1000)});
  for (int i = 0; i < 1000; ++i) gateway_.poll_script["G-1"].push_back(Found("PROCESSING", 1000));
  RunToEnd(1);
  PayoutRow row = Row("G-1");
  EXPECT_EQ(row.progress.state, FinalState::kError);
  EXPECT_NE(row.progress.error.find("no final status"), std::string::npos) << row.progress.error;
}

TEST_P(EngineTest, Engine_SubmittingAtStartIsResolvedWithGetFirst) {
  AddBatch("B1", {MakePayout("S-1", 2, 1000)});
  PayoutUpdate u;
  u.id = "S-1";
  u.progress.stage = Stage::kSubmitting;
  u.progress.since_ms = 1;
  ASSERT_TRUE(store_->Apply({u}).ok());
  gateway_.bodies["S-1"] = MakePayout("S-1", 2, 1000);  // the gateway got it before the "crash"
  RunToEnd(1);
  ASSERT_FALSE(gateway_.calls.empty());
  EXPECT_EQ(gateway_.calls[0], "GET S-1");
  EXPECT_EQ(std::count(gateway_.calls.begin(), gateway_.calls.end(), "POST S-1"), 0);
  EXPECT_EQ(Row("S-1").progress.state, FinalState::kSuccess);
}

TEST_P(EngineTest, Engine_SmallBatchIsNotStuckBehindALargeOne) {
  options_.submit_window = 4;
  std::vector<Payout> big;
  for (int i = 1; i <= 400; ++i) big.push_back(MakePayout("BIG-" + std::to_string(i), i + 1, 1));
  AddBatch("A-big", big);
  AddBatch("B-small", {MakePayout("SMALL-1", 2, 1), MakePayout("SMALL-2", 3, 1)});
  RunToEnd(2);
  ASSERT_EQ(observer_.finished.size(), 2u);
  EXPECT_EQ(observer_.finished[0], "B-small");
  size_t first_small = 0;
  for (size_t i = 0; i < gateway_.calls.size(); ++i)
    if (gateway_.calls[i] == "POST SMALL-1") first_small = i;
  EXPECT_LT(first_small, 10u) << "the small batch shares the submission window from the start";
}

TEST_P(EngineTest, Engine_CallbackDuringSubmissionMakesItPollAtOnce) {
  options_.polling.initial_delay = std::chrono::seconds(30);  // without the hint: no poll for 30 s
  options_.polling.max_interval = std::chrono::seconds(60);
  AddBatch("B1", {MakePayout("N-1", 2, 1000)});
  PayoutEngine engine(io_, *store_, gateway_, clock_, options_, &observer_, writer_.get());
  ASSERT_TRUE(engine.Start().ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (gateway_.calls.empty() && std::chrono::steady_clock::now() < deadline)
    io_.run_one_for(std::chrono::milliseconds(10));
  ASSERT_EQ(gateway_.calls, std::vector<std::string>{"POST N-1"});
  EXPECT_TRUE(engine.Nudge("N-1")) << "a payout of ours is known even while its POST is answered";
  EXPECT_FALSE(engine.Nudge("NOT-OURS"));
  while (observer_.finished.empty() && std::chrono::steady_clock::now() < deadline)
    io_.run_for(std::chrono::milliseconds(10));
  ASSERT_EQ(observer_.finished.size(), 1u) << "the hint was lost: no poll before initial_delay";
  EXPECT_EQ(Row("N-1").progress.state, FinalState::kSuccess);
}

TEST_P(EngineTest, Engine_StopsTakingWorkWhileTheStoreIsTooFarBehind) {
  if (!GetParam()) GTEST_SKIP() << "commits on the io thread never fall behind";
  options_.submit_window = 4;
  options_.poll_window = 4;
  options_.max_uncommitted = 20;
  std::vector<Payout> ps;
  for (int i = 1; i <= 100; ++i) ps.push_back(MakePayout("S-" + std::to_string(i), i + 1, 100 * i));
  AddBatch("B1", ps);
  // The disk is stuck: the store thread is busy with a job that waits for us.
  std::promise<void> unstick;
  std::shared_future<void> unstuck = unstick.get_future().share();
  writer_->Post(
      [unstuck](PayoutStore&) {
        return unstuck.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
      },
      [](bool) {});
  PayoutEngine engine(io_, *store_, gateway_, clock_, options_, &observer_, writer_.get());
  ASSERT_TRUE(engine.Start().ok());
  // Run until the engine has stopped taking work: the submission window is full of payouts
  // recorded as submitting, and none of them may leave before that record is durable.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto stalled = [&] {
    return engine.snapshot().submitting >= options_.submit_window && gateway_.outstanding() == 0;
  };
  while (!stalled() && std::chrono::steady_clock::now() < deadline)
    io_.run_one_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(stalled()) << "the cap was never reached";
  io_.poll();  // the pump those answers scheduled, if it is due: it must not send either
  size_t posts = 0;
  for (const auto& c : gateway_.calls) posts += c.rfind("POST ", 0) == 0;
  EXPECT_EQ(posts, 0u) << "a POST left before its payout was recorded as submitting";
  EXPECT_LE(engine.snapshot().uncommitted,
            20u + 2 * (options_.submit_window + options_.poll_window));
  unstick.set_value();
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (observer_.finished.empty() && std::chrono::steady_clock::now() < deadline)
    io_.run_for(std::chrono::milliseconds(10));
  ASSERT_EQ(observer_.finished.size(), 1u);
  auto progress = store_->Progress("B1");
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->states[FinalState::kSuccess], 100);
}

// The store-loss tests: a state on disk, the engine's own connection to it, and the store
// thread's connection behind an UnreachableStore; a batch B1 of `rows` payouts PREFIX-1...
class EngineStoreLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = std::filesystem::temp_directory_path() /
           ("engine_store_loss_" + std::to_string(::getpid()) + "_" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = PayoutStore::Open((dir_ / "state.db").string());
    ASSERT_TRUE(s.ok()) << s.error();
    store_ = std::move(*s);
    auto w = PayoutStore::Open((dir_ / "state.db").string());
    ASSERT_TRUE(w.ok()) << w.error();
    flaky_owned_ = std::make_unique<UnreachableStore>(std::move(*w));
    flaky_ = flaky_owned_.get();
    options_.polling.initial_delay = std::chrono::milliseconds(1);
    options_.polling.max_interval = std::chrono::milliseconds(5);
    options_.commit_interval = std::chrono::milliseconds(1);
    options_.submit_window = 4;
    options_.poll_window = 4;
    options_.store_retry_max = std::chrono::milliseconds(50);
    options_.retry_unavailable_commits = true;
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void CreateBatch(const std::string& prefix, int rows) {
    std::vector<Payout> ps;
    for (int i = 1; i <= rows; ++i)
      ps.push_back(MakePayout(prefix + "-" + std::to_string(i), i + 1, 100 * i));
    BatchRecord b;
    b.id = "B1";
    b.sha256 = "sha-B1";
    b.file_name = "B1.csv";
    b.rows = rows;
    b.started_at_ms = 1;
    ASSERT_TRUE(store_->CreateBatch(b, ToPayoutList(ps)).ok());
  }

  std::filesystem::path dir_;
  std::unique_ptr<PayoutStore> store_;
  std::unique_ptr<UnreachableStore> flaky_owned_;  // moved into the StoreThread
  UnreachableStore* flaky_ = nullptr;
  boost::asio::io_context io_;
  FakeGateway gateway_{io_};
  SystemClock clock_;
  Observer observer_;
  EngineOptions options_;
};

// The database goes away under the store thread: the group commit fails as unavailable three
// times. Nothing new is sent while it fails, nothing is lost, and the batch finishes once the
// commits go through again.
TEST_F(EngineStoreLoss, Engine_UnavailableCommitsAreRetriedAndNothingNewStartsMeanwhile) {
  {
    auto writer = std::make_unique<StoreThread>(io_, std::move(flaky_owned_));
    CreateBatch("L", 40);
    flaky_->fail_applies = 3;
    PayoutEngine engine(io_, *store_, gateway_, clock_, options_, &observer_, writer.get());
    ASSERT_TRUE(engine.Start().ok());
    // Run until the store is down, then on until every refused commit has been tried.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!engine.store_down() && std::chrono::steady_clock::now() < deadline)
      io_.run_one_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(engine.store_down());
    while (gateway_.outstanding() != 0 && std::chrono::steady_clock::now() < deadline)
      io_.run_one_for(std::chrono::milliseconds(10));
    const size_t calls_when_down = gateway_.calls.size();
    while (flaky_->applies_refused.load() < 3 && std::chrono::steady_clock::now() < deadline)
      io_.run_one_for(std::chrono::milliseconds(10));
    ASSERT_EQ(flaky_->applies_refused.load(), 3);
    EXPECT_EQ(gateway_.calls.size(), calls_when_down)
        << "requests started while the store was down";
    while (observer_.finished.empty() && std::chrono::steady_clock::now() < deadline)
      io_.run_for(std::chrono::milliseconds(10));
    ASSERT_EQ(observer_.finished.size(), 1u);
    EXPECT_FALSE(engine.store_down());
  }
  auto progress = store_->Progress("B1");
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->states[FinalState::kSuccess], 40);
  std::map<std::string, int> posts;
  for (const auto& c : gateway_.calls)
    if (c.rfind("POST ", 0) == 0) ++posts[c.substr(5)];
  EXPECT_EQ(posts.size(), 40u);
  for (const auto& [id, n] : posts) EXPECT_EQ(n, 1) << id;
}

// A cancel whose COMMIT landed but whose answer was lost is written again and finds nothing left
// to cancel: the batch still finishes (every payout final, the count of what runs from the
// store), and the caller hears how many were cancelled.
TEST_F(EngineStoreLoss, Engine_CancelWhoseAnswerWasLostStillFinishesTheBatch) {
  std::optional<Result<CancelOutcome>> cancelled;
  {
    auto writer = std::make_unique<StoreThread>(io_, std::move(flaky_owned_));
    CreateBatch("C", 500);
    PayoutEngine engine(io_, *store_, gateway_, clock_, options_, &observer_, writer.get());
    ASSERT_TRUE(engine.Start().ok());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (gateway_.calls.size() < 20 && std::chrono::steady_clock::now() < deadline)
      io_.run_one_for(std::chrono::milliseconds(10));
    ASSERT_GE(gateway_.calls.size(), 20u);
    flaky_->lose_cancel_answers = 1;
    engine.CancelBatch("B1", "cancelled: test", AuditEntry{1, "cancel", "test", ""},
                       [&](Result<CancelOutcome> out) { cancelled = std::move(out); });
    while (observer_.finished.empty() && std::chrono::steady_clock::now() < deadline)
      io_.run_for(std::chrono::milliseconds(10));
    ASSERT_EQ(observer_.finished.size(), 1u) << "the batch never finished";
    EXPECT_EQ(flaky_->lose_cancel_answers.load(), 0);
  }
  auto progress = store_->Progress("B1");
  ASSERT_TRUE(progress.ok());
  const int64_t n_cancelled = progress->states[FinalState::kCancelled];
  EXPECT_GT(n_cancelled, 0);
  EXPECT_EQ(progress->states[FinalState::kSuccess] + n_cancelled, 500);
  ASSERT_TRUE(cancelled.has_value());
  ASSERT_TRUE(cancelled->ok()) << cancelled->error();
  EXPECT_EQ((*cancelled)->cancelled, n_cancelled);
}

INSTANTIATE_TEST_SUITE_P(Commits, EngineTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("OnStoreThread")
                                             : std::string("OnIoThread");
                         });

}  // namespace
}  // namespace payoutd
