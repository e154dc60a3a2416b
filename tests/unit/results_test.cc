// The reports of a finished batch (core/engine/results.h): results.csv from a real store, and
// summary.json's exact decimals and key order. Finance ops' scripts read both, byte for byte.
#include "core/engine/results.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "core/store/payout_store.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "results_test.XXXXXX").string();
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

  static Payout MakePayout(uint32_t line, std::string id, int64_t amount, std::string currency) {
    Payout p;
    p.line = line;
    p.id = std::move(id);
    p.amount_minor = amount;
    p.currency = std::move(currency);
    p.account_number = "4000123412341234";
    p.account_name = "Jane Roe";
    p.operator_code = "OP1";
    return p;
  }

  void CreateBatch(const std::string& batch_id, const std::vector<Payout>& rows) {
    PayoutList payouts;
    for (const Payout& p : rows) payouts.push_back(p);
    BatchRecord rec;
    rec.id = batch_id;
    rec.sha256 = std::string(64, 'a');
    rec.file_name = batch_id + ".csv";
    rec.rows = static_cast<int64_t>(payouts.size());
    rec.started_at_ms = 1'764'000'000'000;
    ASSERT_TRUE(store_->CreateBatch(rec, payouts).ok());
  }

  // Takes payout `id` through submitting and polling to `final` (its state and the rest).
  void Finish(const std::string& id, PayoutProgress final) {
    PayoutUpdate step;
    step.id = id;
    for (Stage s : {Stage::kSubmitting, Stage::kPolling}) {
      step.progress.stage = s;
      ASSERT_TRUE(store_->Apply({step}).ok());
    }
    final.stage = Stage::kFinal;
    ASSERT_TRUE(store_->Apply({PayoutUpdate{id, final}}).ok());
  }

  static PayoutProgress Final(FinalState state, std::string gateway_status, int attempts) {
    PayoutProgress p;
    p.state = state;
    p.gateway_status = std::move(gateway_status);
    p.attempts = attempts;
    return p;
  }

  fs::path dir_;
  std::unique_ptr<PayoutStore> store_;
};

TEST_F(ResultsTest, ResultsCsv_OneRowPerPayoutInInputOrderWithTheCurrencysDigits) {
  CreateBatch("b1", {MakePayout(2, "P-1", 250000, "USD"), MakePayout(3, "P-2", 310000, "JPY"),
                     MakePayout(5, "P-3", 420250, "BHD"), MakePayout(6, "P-4", 5, "USD")});
  PayoutProgress ok = Final(FinalState::kSuccess, "SUCCESS", 1);
  ok.has_fee = true;
  ok.fee_minor = 2500;
  ok.fee_currency = "USD";
  ok.processed_at = "2026-12-02T06:56:12.215Z";
  Finish("P-1", ok);
  PayoutProgress jpy = Final(FinalState::kFailed, "EXPIRED", 2);
  jpy.has_fee = true;
  jpy.fee_minor = 7;  // a fee in a 3-digit currency on a 0-digit payout
  jpy.fee_currency = "BHD";
  Finish("P-2", jpy);
  Finish("P-3", Final(FinalState::kRejected, "", 1));
  Finish("P-4", Final(FinalState::kError, "PENDING", 3));

  std::ostringstream out;
  ASSERT_TRUE(WriteResultsCsv(*store_, "b1", CurrencyTable::Iso4217(), out).ok());
  EXPECT_EQ(out.str(),
            "line,id,amount,currency,state,gateway_status,fee,fee_currency,processed_at,attempts,"
            "error\n"
            "2,P-1,2500.00,USD,SUCCESS,SUCCESS,25.00,USD,2026-12-02T06:56:12.215Z,1,\n"
            "3,P-2,310000,JPY,FAILED,EXPIRED,0.007,BHD,,2,\n"
            "5,P-3,420.250,BHD,REJECTED,,,,,1,\n"
            "6,P-4,0.05,USD,ERROR,PENDING,,,,3,\n");
}

TEST_F(ResultsTest, ResultsCsv_QuotesAnErrorWithCommaQuoteOrLineBreak) {
  CreateBatch("b2", {MakePayout(2, "P-1", 100, "EUR")});
  PayoutProgress rejected = Final(FinalState::kRejected, "", 1);
  rejected.error = "OPERATOR_REJECTED: \"no\", said\nthe operator";
  Finish("P-1", rejected);
  std::ostringstream out;
  ASSERT_TRUE(WriteResultsCsv(*store_, "b2", CurrencyTable::Iso4217(), out).ok());
  EXPECT_EQ(out.str().substr(out.str().find('\n') + 1),
            "2,P-1,1.00,EUR,REJECTED,,,,,1,"
            "\"OPERATOR_REJECTED: \"\"no\"\", said\nthe operator\"\n");
}

TEST_F(ResultsTest, ResultsCsv_KeepsTheGatewaysTextUnquotedWhenRfc4180AllowsIt) {
  // docs/results.md: quoted only for a comma, a quote or a line break; edge spaces stay as sent.
  CreateBatch("b4", {MakePayout(2, "P-1", 100, "EUR")});
  PayoutProgress rejected = Final(FinalState::kRejected, "", 1);
  rejected.error = "CODE: trailing space; semicolon ";
  Finish("P-1", rejected);
  std::ostringstream out;
  ASSERT_TRUE(WriteResultsCsv(*store_, "b4", CurrencyTable::Iso4217(), out).ok());
  EXPECT_EQ(out.str().substr(out.str().find('\n') + 1),
            "2,P-1,1.00,EUR,REJECTED,,,,,1,CODE: trailing space; semicolon \n");
}

TEST_F(ResultsTest, ResultsCsv_FailsWhenTheOutputCannotBeWritten) {
  CreateBatch("b3", {MakePayout(2, "P-1", 100, "EUR")});
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  Status st = WriteResultsCsv(*store_, "b3", CurrencyTable::Iso4217(), out);
  EXPECT_FALSE(st.ok());
}

TEST(Results, FormatIsoTime_IsUtcToTheWholeSecond) {
  EXPECT_EQ(FormatIsoTime(1'764'000'000'123), "2025-11-24T16:00:00Z");
  EXPECT_EQ(FormatIsoTime(0), "1970-01-01T00:00:00Z");
}

BatchProgress Progress() {
  BatchProgress p;
  p.batch.id = "payroll-2026-11";
  p.batch.sha256 = "ab12";
  p.batch.rows = 5;
  p.batch.started_at_ms = 1'764'000'000'123;
  p.batch.finished_at_ms = 1'764'000'060'999;
  return p;
}

TEST(Results, SummaryJson_ExactDecimalsAndKeyOrder) {
  BatchProgress p = Progress();
  p.states[FinalState::kError] = 1;
  p.states[FinalState::kSuccess] = 3;
  p.states[FinalState::kFailed] = 1;
  // Beyond a double's 53 bits: the totals must stay exact integers formatted as decimals.
  CurrencyTotals usd;
  usd.requested = 9'007'199'254'740'993;
  usd.succeeded = 9'007'199'254'740'001;
  usd.failed = 992;
  usd.fees["USD"] = 5;
  CurrencyTotals jpy;
  jpy.requested = 310000;
  jpy.succeeded = 310000;
  p.totals["USD"] = usd;
  p.totals["JPY"] = jpy;
  EXPECT_EQ(SummaryJson(p, CurrencyTable::Iso4217()),
            "{\"batch\": \"payroll-2026-11\", \"sha256\": \"ab12\", \"rows\": 5,\n"
            " \"states\": {\"SUCCESS\": 3, \"FAILED\": 1, \"ERROR\": 1},\n"
            " \"totals\": {"
            "\"JPY\": {\"requested\": \"310000\", \"succeeded\": \"310000\", \"failed\": \"0\", "
            "\"fees\": \"0\"}, "
            "\"USD\": {\"requested\": \"90071992547409.93\", \"succeeded\": \"90071992547400.01\", "
            "\"failed\": \"9.92\", \"fees\": \"0.05\"}},\n"
            " \"started_at\": \"2025-11-24T16:00:00Z\", "
            "\"finished_at\": \"2025-11-24T16:01:00Z\",\n"
            " \"approvals\": [],\n \"audit\": []}\n");
}

TEST(Results, SummaryJson_ReportsFeesUnderTheFeesOwnCurrency) {
  BatchProgress p = Progress();
  p.states[FinalState::kSuccess] = 1;
  CurrencyTotals usd;
  usd.requested = 1000;
  usd.succeeded = 1000;
  usd.fees["BHD"] = 1250;  // a USD payout charged in BHD (3 digits)
  p.totals["USD"] = usd;
  const std::string json = SummaryJson(p, CurrencyTable::Iso4217());
  EXPECT_NE(json.find("\"BHD\": {\"requested\": \"0.000\", \"succeeded\": \"0.000\", "
                      "\"failed\": \"0.000\", \"fees\": \"1.250\"}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"USD\": {\"requested\": \"10.00\", \"succeeded\": \"10.00\", "
                      "\"failed\": \"0.00\", \"fees\": \"0.00\"}"),
            std::string::npos)
      << json;
}

TEST(Results, SummaryJson_LeavesOutStatesWithNoPayoutAndAnUnfinishedTime) {
  BatchProgress p = Progress();
  p.batch.finished_at_ms = 0;
  p.states[FinalState::kSuccess] = 0;
  p.states[FinalState::kRejected] = 2;
  const std::string json = SummaryJson(p, CurrencyTable::Iso4217());
  EXPECT_NE(json.find("\"states\": {\"REJECTED\": 2}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"totals\": {}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"finished_at\": \"\","), std::string::npos) << json;
}

TEST(Results, SummaryJson_EscapesTheBatchName) {
  BatchProgress p = Progress();
  p.batch.id = "a\"b\\c";
  const std::string json = SummaryJson(p, CurrencyTable::Iso4217());
  EXPECT_EQ(json.rfind("{\"batch\": \"a\\\"b\\\\c\", ", 0), 0u) << json;
}

TEST(Results, SummaryJson_ListsApprovalsAndTheAuditTrail) {
  BatchProgress p;
  p.batch.id = "b";
  p.batch.rows = 1;
  p.states[FinalState::kCancelled] = 1;
  std::vector<Approval> approvals = {
      {"alice@example.com", "SHA256:abc", "b.csv.alice.sig", 1'764'000'000'000}};
  std::vector<AuditEntry> audit = {
      {1'764'000'060'000, "cancel", "bob (uid 1001)", "wrong \"file\""}};
  std::string json = SummaryJson(p, CurrencyTable::Iso4217(), approvals, audit);
  EXPECT_NE(json.find("\"states\": {\"CANCELLED\": 1}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"approvals\": [{\"principal\": \"alice@example.com\", \"key\": "
                      "\"SHA256:abc\", \"at\": \"2025-11-24T16:00:00Z\"}]"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"audit\": [{\"at\": \"2025-11-24T16:01:00Z\", \"action\": \"cancel\", "
                      "\"by\": \"bob (uid 1001)\", \"reason\": \"wrong \\\"file\\\"\"}]"),
            std::string::npos)
      << json;
}

}  // namespace
}  // namespace payoutd
