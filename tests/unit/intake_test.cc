// Taking a batch in (daemon/intake.h): validate the whole file, refuse what was seen before, record
// the new durably, against a real store in a temporary folder.
#include "daemon/intake.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace payoutd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kNowMs = 1'764'000'000'000;

class IntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "intake_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto store = PayoutStore::Open(StatePath());
    ASSERT_TRUE(store.ok()) << store.error();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string StatePath() const { return (dir_ / "state.db").string(); }

  // Writes `rows` under the usual header into <dir>/<name> and returns its path.
  std::string Put(const std::string& name, const std::string& rows) const {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary)
        << "id,amount,currency,account_number,account_name,operator_code\n"
        << rows;
    return path;
  }

  Intake Take(const std::string& batch_id, const std::string& path, bool record = true) {
    return TakeBatch(store_.get(), validator_, batch_id, path, batch_id + ".csv", kNowMs, record);
  }

  bool Known(const std::string& batch_id) {
    auto b = store_->GetBatch(batch_id);
    EXPECT_TRUE(b.ok()) << b.error();
    return b.ok() && b->has_value();
  }

  fs::path dir_;
  std::unique_ptr<PayoutStore> store_;
  BatchValidator validator_{BatchRules{}};
};

constexpr char kTwoRows[] =
    "P-1,10.00,USD,11223344,Jane Roe,BNK_000\n"
    "P-2,2.50,EUR,55667788,John Doe,BNK_000\n";

TEST_F(IntakeTest, Intake_RecordsANewValidBatchWithItsFileAndTime) {
  Intake in = Take("payroll-1", Put("payroll-1.csv", kTwoRows));
  ASSERT_EQ(in.kind, Intake::Kind::kAccepted) << in.status.message();
  EXPECT_EQ(in.batch.payouts.size(), 2u);
  auto rec = store_->GetBatch("payroll-1");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->file_name, "payroll-1.csv");
  EXPECT_EQ((*rec)->rows, 2);
  EXPECT_EQ((*rec)->started_at_ms, kNowMs);
  EXPECT_EQ((*rec)->sha256, in.batch.sha256);
  auto p2 = store_->GetPayout("P-2");
  ASSERT_TRUE(p2.ok() && p2->has_value());
  EXPECT_EQ((*p2)->payout.amount_minor, 250);
  EXPECT_EQ((*p2)->progress.stage, Stage::kNew);
}

TEST_F(IntakeTest, Intake_RejectsAnInvalidBatchAndRecordsNothing) {
  Intake in = Take("bad", Put("bad.csv", "P-1,-5.00,USD,11223344,Jane Roe,BNK_000\n"));
  EXPECT_EQ(in.kind, Intake::Kind::kRejected);
  ASSERT_FALSE(in.batch.errors.empty());
  EXPECT_EQ(in.batch.errors[0].line, 2u);
  EXPECT_EQ(in.batch.errors[0].column, "amount");
  EXPECT_FALSE(Known("bad"));
}

TEST_F(IntakeTest, Intake_ValidatesWithoutRecordingWhenNotAskedToRecord) {
  Intake in = Take("dry", Put("dry.csv", kTwoRows), /*record=*/false);
  EXPECT_EQ(in.kind, Intake::Kind::kAccepted);
  EXPECT_FALSE(Known("dry"));
  // With no store at all (`payoutd validate` without state) it validates only.
  Intake bare =
      TakeBatch(nullptr, validator_, "dry", (dir_ / "dry.csv").string(), "dry.csv", kNowMs, true);
  EXPECT_EQ(bare.kind, Intake::Kind::kAccepted);
  EXPECT_FALSE(Known("dry"));
}

TEST_F(IntakeTest, Intake_ResumesTheSameBatchTakenAgain) {
  const std::string path = Put("payroll-1.csv", kTwoRows);
  ASSERT_EQ(Take("payroll-1", path).kind, Intake::Kind::kAccepted);
  Intake again = Take("payroll-1", path);
  EXPECT_EQ(again.kind, Intake::Kind::kResumed);
  EXPECT_TRUE(again.batch.errors.empty());
}

TEST_F(IntakeTest, Intake_RefusesABatchIdUsedBeforeForOtherContent) {
  ASSERT_EQ(Take("payroll-1", Put("a.csv", kTwoRows)).kind, Intake::Kind::kAccepted);
  Intake in = Take("payroll-1", Put("b.csv", "P-9,1.00,USD,11223344,Jane Roe,BNK_000\n"));
  ASSERT_EQ(in.kind, Intake::Kind::kRejected);
  ASSERT_EQ(in.batch.errors.size(), 1u);
  EXPECT_EQ(in.batch.errors[0].line, 0u);
  EXPECT_THAT(in.batch.errors[0].message, HasSubstr("batch id 'payroll-1' was already used"));
  auto p9 = store_->GetPayout("P-9");
  ASSERT_TRUE(p9.ok());
  EXPECT_FALSE(p9->has_value()) << "nothing of the refused batch is recorded";
}

TEST_F(IntakeTest, Intake_RefusesTheSameContentUnderAnotherName) {
  ASSERT_EQ(Take("payroll-1", Put("a.csv", kTwoRows)).kind, Intake::Kind::kAccepted);
  Intake in = Take("payroll-1-copy", Put("b.csv", kTwoRows));
  ASSERT_EQ(in.kind, Intake::Kind::kRejected);
  bool said = false;
  for (const BatchError& e : in.batch.errors)
    said |= e.message.find("same file content was already accepted") != std::string::npos;
  EXPECT_TRUE(said);
  EXPECT_FALSE(Known("payroll-1-copy"));
}

TEST_F(IntakeTest, Intake_RefusesPayoutIdsOfAnEarlierBatchAtTheirLinesInLineOrder) {
  ASSERT_EQ(Take("payroll-1", Put("a.csv", kTwoRows)).kind, Intake::Kind::kAccepted);
  Intake in = Take("payroll-2", Put("b.csv",
                                    "P-7,1.00,USD,11223344,Jane Roe,BNK_000\n"
                                    "P-2,1.00,USD,11223344,Jane Roe,BNK_000\n"
                                    "P-1,1.00,USD,11223344,Jane Roe,BNK_000\n"));
  ASSERT_EQ(in.kind, Intake::Kind::kRejected);
  ASSERT_EQ(in.batch.errors.size(), 2u);
  EXPECT_EQ(in.batch.errors[0].line, 3u);
  EXPECT_EQ(in.batch.errors[0].column, "id");
  EXPECT_THAT(in.batch.errors[0].message, HasSubstr("'P-2' was already used"));
  EXPECT_EQ(in.batch.errors[1].line, 4u);
  EXPECT_THAT(in.batch.errors[1].message, HasSubstr("'P-1' was already used"));
  EXPECT_FALSE(Known("payroll-2"));
}

TEST_F(IntakeTest, Intake_FailsWithTheReasonWhenTheStoreCannotRecord) {
  const std::string path = Put("payroll-1.csv", kTwoRows);
  auto read_only = PayoutStore::Open(StatePath(), /*read_only=*/true);
  ASSERT_TRUE(read_only.ok()) << read_only.error();
  Intake in =
      TakeBatch(read_only->get(), validator_, "payroll-1", path, "payroll-1.csv", kNowMs, true);
  EXPECT_EQ(in.kind, Intake::Kind::kFailed);
  EXPECT_FALSE(in.status.ok());
  EXPECT_FALSE(in.status.message().empty());
  EXPECT_FALSE(Known("payroll-1"));
}

TEST(Intake, BatchIdFromFileName_DropsOnlyTheCsvExtension) {
  EXPECT_EQ(BatchIdFromFileName("payroll-2026-11.csv"), "payroll-2026-11");
  EXPECT_EQ(BatchIdFromFileName("a.b.csv"), "a.b");
  EXPECT_EQ(BatchIdFromFileName("notes.txt"), "notes.txt");
  EXPECT_EQ(BatchIdFromFileName(".csv"), ".csv");
}

}  // namespace
}  // namespace payoutd
