// Approval rounds and operator commands on the state, with real ssh-keygen keys, a real store and
// a spool folder (docs/approvals.md, docs/operator-control.md).
#include "daemon/approval_round.h"
#include "daemon/control_actions.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/batch/batch.h"
#include "daemon/process.h"
#include "daemon/ssh_keygen.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ApprovalRoundTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("approval_round_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    for (const char* d : {"approval", "work", "rejected", "done", "inbox"})
      fs::create_directories(spool() / d);
    auto s = PayoutStore::Open((dir_ / "state.db").string());
    ASSERT_TRUE(s.ok()) << s.error();
    store_ = std::move(*s);
    for (const char* who : {"alice", "bob", "mallory"}) {
      auto r = RunProcess(
          {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir_ / who).string()}, "");
      ASSERT_TRUE(r.ok() && r->exit_code == 0);
    }
    std::ofstream(dir_ / "allowed_signers") << "alice@example.com " << Read(dir_ / "alice.pub")
                                            << "bob@example.com " << Read(dir_ / "bob.pub");
    policy_.allowed_signers = (dir_ / "allowed_signers").string();
    policy_.required = 2;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path spool() const { return dir_ / "spool"; }

  // A valid batch, accepted and waiting in approval/ as the daemon leaves it.
  std::string Await(const std::string& id, int64_t accepted_at_ms, int required = 2) {
    const std::string csv = "id,amount,currency,account_number,account_name,operator_code\n" + id +
                            "-1,10.00,USD,DE0011223344,Ann,BNK\n" + id +
                            "-2,20.00,USD,DE0011225566,Bob,BNK\n";
    std::ofstream(spool() / "approval" / (id + ".csv"), std::ios::binary) << csv;
    std::istringstream in(csv);
    ValidatedBatch v = BatchValidator(BatchRules{}).Validate(id, in);
    EXPECT_TRUE(v.ok());
    BatchRecord b;
    b.id = id;
    b.sha256 = v.sha256;
    b.file_name = id + ".csv";
    b.rows = 2;
    b.status = BatchRecord::Status::kAwaitingApproval;
    b.approvals_required = required;
    b.started_at_ms = accepted_at_ms;
    EXPECT_TRUE(store_->CreateBatch(b, v.payouts).ok());
    return csv;
  }
  void Sign(const std::string& who, const std::string& batch, const std::string& csv,
            const std::string& label) {
    auto sig = MakeSshSignature((dir_ / who).string(), kApprovalNamespace, csv);
    ASSERT_TRUE(sig.ok()) << sig.error();
    std::ofstream(spool() / "approval" / (batch + ".csv." + label + ".sig")) << *sig;
  }
  ApprovalRound Round(int64_t now_ms = 1000) {
    return RunApprovalRound(*store_, policy_, spool().string(), now_ms, seen_);
  }
  BatchRecord Batch(const std::string& id) { return **store_->GetBatch(id); }

  fs::path dir_;
  std::unique_ptr<PayoutStore> store_;
  ApprovalPolicy policy_;
  std::set<std::string> seen_;
};

TEST_F(ApprovalRoundTest, TwoDistinctAllowedSignersAreNeededAndAStrangerOrARepeatCountsForNothing) {
  const std::string csv = Await("pay", 500);
  Sign("alice", "pay", csv, "alice");
  ApprovalRound r = Round();
  ASSERT_EQ(r.checked.size(), 1u) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_TRUE(r.checked[0].counted);
  EXPECT_TRUE(r.approved.empty()) << "one signature of two pays nothing";
  EXPECT_EQ(Batch("pay").status, BatchRecord::Status::kAwaitingApproval);

  Sign("alice", "pay", csv, "alice-again");  // the same principal under another name
  Sign("mallory", "pay", csv, "mallory");    // a key allowed_signers does not know
  r = Round();
  ASSERT_EQ(r.checked.size(), 2u);
  EXPECT_TRUE(r.approved.empty()) << "alice twice is still one principal";
  EXPECT_TRUE(fs::exists(spool() / "approval" / "pay.csv.mallory.sig.invalid"));
  EXPECT_FALSE(fs::exists(spool() / "approval" / "pay.csv.mallory.sig"));
  EXPECT_TRUE(Round().checked.empty()) << "files already checked are not checked every second";

  Sign("bob", "pay", csv, "bob");
  r = Round();
  ASSERT_EQ(r.approved, std::vector<std::string>{"pay"});
  EXPECT_EQ(Batch("pay").status, BatchRecord::Status::kActive);
  EXPECT_TRUE(fs::exists(spool() / "work" / "pay.csv"));
  EXPECT_TRUE(fs::exists(spool() / "work" / "pay.csv.bob.sig"))
      << "the signatures go with the batch";
  EXPECT_FALSE(fs::exists(spool() / "approval" / "pay.csv"));
  auto approvals = store_->ListApprovals("pay");
  ASSERT_TRUE(approvals.ok());
  ASSERT_EQ(approvals->size(), 2u);
  std::set<std::string> principals;
  for (const auto& a : *approvals) principals.insert(a.principal);
  EXPECT_EQ(principals, (std::set<std::string>{"alice@example.com", "bob@example.com"}));
  auto audit = store_->ListAudit("pay");
  ASSERT_TRUE(audit.ok());
  int invalid = 0, approve = 0;
  for (const auto& e : *audit) {
    invalid += e.action == "approval.invalid";
    approve += e.action == "approve";
  }
  EXPECT_EQ(invalid, 1);
  EXPECT_EQ(approve, 3);
}

TEST_F(ApprovalRoundTest, SignaturesOverAChangedBatchFileNeverCount) {
  const std::string csv = Await("pay", 500, 1);
  std::ofstream(spool() / "approval" / "pay.csv", std::ios::binary)
      << csv << "pay-3,99999.00,USD,DE99,Eve,BNK\n";
  Sign("alice", "pay", csv + "pay-3,99999.00,USD,DE99,Eve,BNK\n",
       "alice");  // over the changed bytes
  ApprovalRound r = Round();
  EXPECT_TRUE(r.approved.empty());
  ASSERT_FALSE(r.problems.empty());
  EXPECT_NE(r.problems[0].find("not the file that was accepted"), std::string::npos)
      << r.problems[0];
  EXPECT_EQ(Batch("pay").status, BatchRecord::Status::kAwaitingApproval);
}

TEST_F(ApprovalRoundTest, ABatchNotApprovedInTimeIsRejectedAndNothingOfItIsPaid) {
  policy_.expire_after = std::chrono::hours(1);
  const std::string csv = Await("late", 1000);
  Sign("alice", "late", csv, "alice");
  ApprovalRound r = Round(1000 + 3600 * 1000);
  EXPECT_EQ(r.expired, std::vector<std::string>{"late"});
  EXPECT_TRUE(fs::exists(spool() / "rejected" / "late.csv"));
  EXPECT_TRUE(fs::exists(spool() / "rejected" / "late.csv.alice.sig"));
  EXPECT_NE(Read(spool() / "rejected" / "late.errors.csv").find("0,,approval expired"),
            std::string::npos)
      << Read(spool() / "rejected" / "late.errors.csv");
  EXPECT_EQ(Batch("late").status, BatchRecord::Status::kReported);
  auto p = store_->Progress("late");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->states[FinalState::kCancelled], 2);
}

TEST_F(ApprovalRoundTest, CommandsOnTheStateHoldResumeAndCancel) {
  const ControlPeer peer{1001, 1, "alice", ""};
  Await("wait", 500);
  ControlReply r =
      RunControlOnState(*store_, {"hold", "wait", false, "check"}, peer, spool().string(), 10);
  EXPECT_EQ(r.exit_code, 0) << r.message;
  EXPECT_TRUE(Batch("wait").hold.held());
  EXPECT_EQ(Batch("wait").hold.by, "alice (uid 1001)");
  r = RunControlOnState(*store_, {"cancel", "wait", false, "wrong file"}, peer, spool().string(),
                        20);
  EXPECT_EQ(r.exit_code, 0) << r.message;
  EXPECT_NE(Read(spool() / "rejected" / "wait.errors.csv").find("0,,cancelled: wrong file"),
            std::string::npos);
  EXPECT_EQ(RunControlOnState(*store_, {"cancel", "wait", false, ""}, peer, spool().string(), 30)
                .exit_code,
            2)
      << "a batch already reported";
  EXPECT_EQ(
      RunControlOnState(*store_, {"hold", "nope", false, ""}, peer, spool().string(), 30).exit_code,
      2);
  EXPECT_EQ(
      RunControlOnState(*store_, {"cancel", "", true, ""}, peer, spool().string(), 30).exit_code,
      2);
  EXPECT_EQ(RunControlOnState(*store_, {"explode", "wait", false, ""}, peer, spool().string(), 30)
                .exit_code,
            2);

  Await("paying", 500, 0);
  ASSERT_TRUE(store_->SetBatchStatus("paying", BatchRecord::Status::kActive, 0).ok());
  r = RunControlOnState(*store_, {"cancel", "paying", false, "stop"}, peer, spool().string(), 40);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.message.find("cancelled 2 unsent payouts"), std::string::npos) << r.message;
  EXPECT_EQ(Batch("paying").status, BatchRecord::Status::kFinished)
      << "all final: the next start reports it";
  EXPECT_EQ((**store_->GetPayout("paying-1")).progress.error,
            "cancelled by alice (uid 1001): stop");
  r = RunControlOnState(*store_, {"hold", "", true, "holiday"}, peer, spool().string(), 50);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(store_->GetHoldAll()->held());
}

TEST(ControlActions, CountsAreWrittenWithThousandsSeparators) {
  EXPECT_EQ(WithThousands(8230), "8,230");
  EXPECT_EQ(WithThousands(999), "999");
  EXPECT_EQ(WithThousands(1234567), "1,234,567");
  EXPECT_EQ(CancelMessage("b", CancelOutcome{8230, 1770, false}),
            "cancelled 8,230 unsent payouts of batch b; 1,770 already sent will finish");
}

}  // namespace
}  // namespace payoutd
