// `payoutd status` (daemon/status_command.h): what it reads from a real SQLite state (approvals,
// holds, cancellation, outages), how it writes it as text, as JSON and as --watch frames, and the
// pace --watch measures.
#include "daemon/status_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <stdlib.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "tests/support/payout_list.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kNowMs = 1'764'000'000'000;  // 2025-11-24T16:00:00Z

class StatusCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "status_command_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto store = PayoutStore::Open((dir_ / "state.db").string());
    ASSERT_TRUE(store.ok()) << store.error();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A batch of `rows` USD payouts of 1.01, 1.02, ...; `approvals` > 0: awaiting that many.
  void AddBatch(const std::string& id, int rows, int approvals = 0) {
    BatchRecord b;
    b.id = id;
    b.sha256 = "sha-" + id;
    b.file_name = id + ".csv";
    b.rows = rows;
    b.started_at_ms = kNowMs - 60'000;
    if (approvals > 0) {
      b.status = BatchRecord::Status::kAwaitingApproval;
      b.approvals_required = approvals;
    }
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
    ASSERT_TRUE(store_->CreateBatch(b, ToPayoutList(ps)).ok());
  }

  // Payout `id` becomes final in `state`, through the stages the engine takes.
  void Finish(const std::string& id, FinalState state) {
    PayoutProgress p;
    p.stage = Stage::kSubmitting;
    p.attempts = 1;
    ASSERT_TRUE(store_->Apply({{id, p}}).ok());
    p.stage = Stage::kFinal;
    p.state = state;
    p.since_ms = kNowMs - 30'000;
    ASSERT_TRUE(store_->Apply({{id, p}}).ok());
  }

  void Poll(const std::string& id) {
    PayoutProgress p;
    p.stage = Stage::kSubmitting;
    p.attempts = 1;
    ASSERT_TRUE(store_->Apply({{id, p}}).ok());
    p.stage = Stage::kPolling;
    p.since_ms = kNowMs - 45'000;
    ASSERT_TRUE(store_->Apply({{id, p}}).ok());
  }

  StatusSnapshot Read(const std::string& only = "") {
    Result<StatusSnapshot> s = ReadStatus(*store_, only, kNowMs);
    EXPECT_TRUE(s.ok()) << s.error();
    return s.ok() ? *s : StatusSnapshot{};
  }

  fs::path dir_;
  std::unique_ptr<PayoutStore> store_;
  CurrencyTable currencies_;
};

TEST_F(StatusCommandTest, Status_TextShowsCountsStagesTotalsAndTheOldestPending) {
  AddBatch("pay", 4);
  Finish("pay-1", FinalState::kSuccess);
  Finish("pay-2", FinalState::kRejected);
  Poll("pay-3");
  const std::string text = FormatStatusText(Read(), currencies_);
  EXPECT_THAT(text, HasSubstr("batch pay (active), 4 payouts, started 2025-11-24T15:59:00Z\n"));
  EXPECT_THAT(
      text,
      HasSubstr("  states: SUCCESS=1 FAILED=0 REJECTED=1 ERROR=0 pending=2 (new=1 polling=1)\n"));
  EXPECT_THAT(text,
              HasSubstr("  USD: requested 4.10, succeeded 1.01, failed 1.02, pending 2.07\n"));
  EXPECT_THAT(text,
              HasSubstr("  oldest pending payout: submitted 2025-11-24T15:59:15Z (45s ago)\n"));
  EXPECT_THAT(text, Not(HasSubstr("CANCELLED")));
}

TEST_F(StatusCommandTest, Status_ShowsAwaitingApprovalWithSignaturesSoFar) {
  AddBatch("signed", 2, /*approvals=*/2);
  Approval a;
  a.principal = "alice";
  a.key_fingerprint = "SHA256:abc";
  a.file = "signed.csv.alice.sig";
  a.at_ms = kNowMs - 1000;
  ASSERT_TRUE(store_->AddApproval("signed", a).ok());
  StatusSnapshot s = Read();
  ASSERT_EQ(s.batches.size(), 1u);
  EXPECT_EQ(s.batches[0].approvals, 1);
  EXPECT_THAT(FormatStatusText(s, currencies_),
              HasSubstr("batch signed (awaiting approval (1 of 2)), 2 payouts"));
}

TEST_F(StatusCommandTest, Status_ShowsHoldsOfABatchAndOfEveryBatchWithWhoAndWhy) {
  AddBatch("held", 1);
  ASSERT_TRUE(store_->SetHold("held", {kNowMs - 5000, "alice (uid 1001)", "wrong IBANs"}).ok());
  ASSERT_TRUE(store_->SetHoldAll({kNowMs - 2000, "bob (uid 1002)", "bank holiday"}).ok());
  const std::string text = FormatStatusText(Read(), currencies_);
  EXPECT_THAT(text, HasSubstr("all batches held since 2025-11-24T15:59:58Z by bob (uid 1002): "
                              "bank holiday\n"));
  EXPECT_THAT(text, HasSubstr("batch held (active, held), 1 payouts"));
  EXPECT_THAT(text,
              HasSubstr("  held since 2025-11-24T15:59:55Z by alice (uid 1001): wrong IBANs\n"));
}

TEST_F(StatusCommandTest, Status_ShowsACancelledBatchAndItsCancelledPayouts) {
  AddBatch("gone", 3);
  Finish("gone-1", FinalState::kSuccess);
  auto out = store_->CancelUnsent("gone", kNowMs - 10'000, "cancelled by alice");
  ASSERT_TRUE(out.ok()) << out.error();
  const std::string text = FormatStatusText(Read(), currencies_);
  // The engine marks the batch finished once it has seen the cancellation; the store alone not.
  EXPECT_THAT(text, HasSubstr("batch gone (active, cancelled)"));
  EXPECT_THAT(text, HasSubstr("  cancelled 2025-11-24T15:59:50Z\n"));
  EXPECT_THAT(text, HasSubstr("SUCCESS=1 FAILED=0 REJECTED=0 ERROR=0 CANCELLED=2 pending=0\n"));
}

TEST_F(StatusCommandTest, Status_ShowsAGatewayOutageGoingOn) {
  AddBatch("pay", 1);
  ASSERT_TRUE(
      store_->RecordOutage({kNowMs - 90'000, 0, kNowMs + 4'500, "connection refused"}).ok());
  EXPECT_THAT(FormatStatusText(Read(), currencies_),
              HasSubstr("gateway unreachable since 2025-11-24T15:58:30Z (90s), cause: connection "
                        "refused; next probe in 5s\n"));
}

TEST_F(StatusCommandTest, Status_OneBatchOnlyAndAnUnknownOneIsNotFound) {
  AddBatch("a", 1);
  AddBatch("b", 1);
  StatusSnapshot s = Read("b");
  ASSERT_EQ(s.batches.size(), 1u);
  EXPECT_EQ(s.batches[0].progress.batch.id, "b");
  Result<StatusSnapshot> none = ReadStatus(*store_, "nope", kNowMs);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
}

TEST(StatusText, InstancesShowTheLeaderAndEachStandbyWithItsAge) {
  StatusSnapshot s;
  s.now_ms = kNowMs;
  ServiceInstances in;
  in.leader = "db-a";
  in.fencing = 7;
  in.lease_left = std::chrono::milliseconds(12'400);
  in.instances = {{"db-a", true, std::chrono::milliseconds(300)},
                  {"db-b", false, std::chrono::milliseconds(1'200)},
                  {"db-c", false, std::chrono::seconds(40)}};
  s.instances = in;
  EXPECT_THAT(FormatStatusText(s, CurrencyTable()),
              HasSubstr("leader: db-a (term 7, lease 12s left); standby: db-b (seen 1s ago), "
                        "db-c (seen 40s ago)\n"));
  s.instances->leader.clear();
  s.instances->instances[0].leader = false;
  EXPECT_THAT(FormatStatusText(s, CurrencyTable()),
              HasSubstr("leader: none (no instance holds the lease); standby: db-a"));
}

// --- JSON: the shape docs/cli.md documents -----------------------------------------------------

TEST_F(StatusCommandTest, StatusJson_HasTheDocumentedShape) {
  AddBatch("pay", 3, /*approvals=*/0);
  AddBatch("signed", 1, /*approvals=*/2);
  Finish("pay-1", FinalState::kSuccess);
  Poll("pay-2");
  ASSERT_TRUE(store_->SetHold("pay", {kNowMs - 5000, "alice (uid 1001)", "check"}).ok());
  StatusSnapshot s = Read();
  ServiceInstances in;
  in.leader = "db-a";
  in.fencing = 3;
  in.instances = {{"db-a", true, std::chrono::milliseconds(100)}};
  s.instances = in;
  const std::string json = FormatStatusJson(s, currencies_);
  ASSERT_EQ(json.find('\n'), json.size() - 1) << "one line";

  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(std::string_view(doc["now"]), "2025-11-24T16:00:00Z");
  EXPECT_TRUE(doc["hold_all"].is_null());
  EXPECT_TRUE(doc["gateway_outage"].is_null());
  EXPECT_EQ(std::string_view(doc["instances"]["leader"]), "db-a");
  EXPECT_EQ(int64_t(doc["instances"]["term"]), 3);
  EXPECT_EQ(std::string_view(doc["instances"]["instances"].at(0)["role"]), "leader");
  EXPECT_TRUE(doc["instances"]["instances"].at(0)["seen_s_ago"].is_double());

  simdjson::dom::array batches = doc["batches"];
  ASSERT_EQ(batches.size(), 2u);
  simdjson::dom::element pay = batches.at(0);
  EXPECT_EQ(std::string_view(pay["id"]), "pay");
  EXPECT_EQ(std::string_view(pay["status"]), "active");
  EXPECT_EQ(int64_t(pay["rows"]), 3);
  EXPECT_EQ(std::string_view(pay["started_at"]), "2025-11-24T15:59:00Z");
  EXPECT_TRUE(pay["finished_at"].is_null());
  EXPECT_TRUE(pay["approvals"].is_null());
  EXPECT_EQ(std::string_view(pay["hold"]["by"]), "alice (uid 1001)");
  EXPECT_EQ(std::string_view(pay["hold"]["since"]), "2025-11-24T15:59:55Z");
  EXPECT_EQ(std::string_view(pay["hold"]["reason"]), "check");
  EXPECT_TRUE(pay["cancelled_at"].is_null());
  for (const char* state : {"SUCCESS", "FAILED", "REJECTED", "ERROR", "CANCELLED"})
    EXPECT_TRUE(pay["states"][state].is_int64()) << state;
  EXPECT_EQ(int64_t(pay["states"]["SUCCESS"]), 1);
  EXPECT_EQ(int64_t(pay["pending"]), 2);
  for (const char* stage : {"new", "submitting", "unknown", "polling"})
    EXPECT_TRUE(pay["stages"][stage].is_int64()) << stage;
  EXPECT_EQ(int64_t(pay["stages"]["polling"]), 1);
  EXPECT_EQ(std::string_view(pay["totals"]["USD"]["requested"]), "3.06");
  EXPECT_EQ(std::string_view(pay["totals"]["USD"]["succeeded"]), "1.01");
  EXPECT_EQ(std::string_view(pay["totals"]["USD"]["failed"]), "0.00");
  EXPECT_EQ(std::string_view(pay["totals"]["USD"]["pending"]), "2.05");
  EXPECT_EQ(std::string_view(pay["oldest_pending_since"]), "2025-11-24T15:59:15Z");
  EXPECT_TRUE(pay["payouts_per_second"].is_null()) << "measured by --watch only";
  EXPECT_TRUE(pay["seconds_left"].is_null());

  simdjson::dom::element signed_batch = batches.at(1);
  EXPECT_EQ(std::string_view(signed_batch["status"]), "awaiting_approval");
  EXPECT_EQ(int64_t(signed_batch["approvals"]["required"]), 2);
  EXPECT_EQ(int64_t(signed_batch["approvals"]["received"]), 0);
  EXPECT_TRUE(signed_batch["hold"].is_null());
}

TEST(StatusJson, EscapesTextAndWritesNullsForWhatIsNotThere) {
  StatusSnapshot s;
  s.now_ms = kNowMs;
  s.hold_all = {kNowMs, "eve \"quoted\"", "line\nbreak"};
  s.outage = GatewayOutage{kNowMs - 1000, kNowMs, 0, "HTTP 503"};
  const std::string json = FormatStatusJson(s, CurrencyTable());
  EXPECT_EQ(json,
            "{\"now\":\"2025-11-24T16:00:00Z\",\"instances\":null,"
            "\"hold_all\":{\"since\":\"2025-11-24T16:00:00Z\",\"by\":\"eve \\\"quoted\\\"\","
            "\"reason\":\"line\\nbreak\"},"
            "\"gateway_outage\":{\"started_at\":\"2025-11-24T15:59:59Z\","
            "\"ended_at\":\"2025-11-24T16:00:00Z\",\"next_probe_at\":null,\"cause\":\"HTTP 503\"},"
            "\"batches\":[]}\n");
}

// --- watch ------------------------------------------------------------------------------------

StatusSnapshot Reading(int64_t at_ms, int64_t rows, int64_t final_count) {
  StatusSnapshot s;
  s.now_ms = at_ms;
  BatchStatus b;
  b.progress.batch.id = "big";
  b.progress.batch.rows = rows;
  b.progress.stages = {{Stage::kFinal, final_count}, {Stage::kNew, rows - final_count}};
  b.progress.states = {{FinalState::kSuccess, final_count}};
  s.batches.push_back(b);
  return s;
}

TEST(PaceMeter, MeasuresFinalPayoutsPerSecondAndTheTimeLeft) {
  PaceMeter pace(std::chrono::seconds(10));
  StatusSnapshot first = Reading(kNowMs, 1000, 100);
  pace.Measure(first);
  EXPECT_FALSE(first.batches[0].per_second) << "one reading is no pace";
  StatusSnapshot second = Reading(kNowMs + 2000, 1000, 300);
  pace.Measure(second);
  ASSERT_TRUE(second.batches[0].per_second);
  EXPECT_DOUBLE_EQ(*second.batches[0].per_second, 100.0);
  EXPECT_DOUBLE_EQ(*second.batches[0].seconds_left, 7.0);
}

TEST(PaceMeter, ForgetsReadingsOlderThanItsWindow) {
  PaceMeter pace(std::chrono::seconds(10));
  for (int i = 0; i <= 20; ++i) {
    // 10 per second for the first 10 s, then 50 per second.
    int64_t done = i <= 10 ? 10 * i : 100 + 50 * (i - 10);
    StatusSnapshot s = Reading(kNowMs + 1000 * i, 100'000, done);
    pace.Measure(s);
    if (i == 20) {
      ASSERT_TRUE(s.batches[0].per_second);
      EXPECT_DOUBLE_EQ(*s.batches[0].per_second, 50.0) << "the old, slower pace no longer counts";
    }
  }
}

TEST(PaceMeter, NoProgressMeansNoTimeLeftAndAllFinalMeansNone) {
  PaceMeter pace;
  StatusSnapshot a = Reading(kNowMs, 10, 5);
  pace.Measure(a);
  StatusSnapshot b = Reading(kNowMs + 1000, 10, 5);
  pace.Measure(b);
  EXPECT_EQ(b.batches[0].per_second, 0.0);
  EXPECT_FALSE(b.batches[0].seconds_left);
  StatusSnapshot c = Reading(kNowMs + 2000, 10, 10);
  pace.Measure(c);
  EXPECT_EQ(c.batches[0].seconds_left, 0.0);
}

TEST(WatchFrame, TerminalFrameHasABarCountsPaceAndTimeLeft) {
  StatusSnapshot s = Reading(kNowMs, 1000, 250);
  s.batches[0].per_second = 50.0;
  s.batches[0].seconds_left = 15.0;
  const std::string frame = FormatWatchFrame(s, true, std::chrono::seconds(1));
  EXPECT_THAT(frame, HasSubstr("payoutd status  2025-11-24T16:00:00Z  (every 1s; Ctrl-C stops)"));
  EXPECT_THAT(frame,
              HasSubstr("[##########------------------------------] 25.0%  250 of 1000 final"));
  EXPECT_THAT(frame, HasSubstr("SUCCESS=250 FAILED=0 REJECTED=0 ERROR=0 pending=750 (new=750)"));
  EXPECT_THAT(frame, HasSubstr("50.0 payouts/s, about 15s left"));
}

TEST(WatchFrame, PlainFrameIsOneTimeStampedLinePerBatch) {
  StatusSnapshot s = Reading(kNowMs, 1000, 250);
  s.batches[0].per_second = 50.0;
  s.batches[0].seconds_left = 15.0;
  EXPECT_EQ(FormatWatchFrame(s, false, std::chrono::seconds(1)),
            "2025-11-24T16:00:00Z big active 250/1000 25.0% SUCCESS=250 FAILED=0 REJECTED=0 "
            "ERROR=0 pending=750 (new=750) 50.0/s left 15s\n");
  EXPECT_THAT(FormatWatchFrame(s, false, std::chrono::seconds(1)), Not(HasSubstr("\x1b")));
  StatusSnapshot idle;
  idle.now_ms = kNowMs;
  EXPECT_EQ(FormatWatchFrame(idle, false, std::chrono::seconds(1)),
            "2025-11-24T16:00:00Z no batch in progress\n");
}

}  // namespace
}  // namespace payoutd
