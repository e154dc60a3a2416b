// Which batches wait for signatures, how signature files are named and read, and `payoutd
// approve` end to end with a real key (docs/approvals.md).
#include "daemon/approvals.h"
#include "daemon/approve.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/process.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

TEST(ApprovalsRequired, RequiredForAllAndMoreAboveALargeTotalPerCurrency) {
  ApprovalPolicy p;
  EXPECT_EQ(ApprovalsRequired(p, {{"USD", 1'000'000'00}}), 0)
      << "no approvals configured: paid at once";
  p.large_above = {{"USD", 10'000'00}};
  p.large_required = 2;
  EXPECT_EQ(ApprovalsRequired(p, {{"USD", 10'000'00}}), 0) << "at the threshold is not above it";
  EXPECT_EQ(ApprovalsRequired(p, {{"USD", 10'000'01}}), 2);
  EXPECT_EQ(ApprovalsRequired(p, {{"EUR", 99'999'999'00}}), 0) << "large_above is per currency";
  p.required = 1;
  EXPECT_EQ(ApprovalsRequired(p, {{"EUR", 5}}), 1);
  EXPECT_EQ(ApprovalsRequired(p, {{"EUR", 5}, {"USD", 20'000'00}}), 2);
  p.required = 3;
  EXPECT_EQ(ApprovalsRequired(p, {{"USD", 20'000'00}}), 3) << "whichever is more";
}

TEST(SignatureName, TakesBothFormsAndNothingElse) {
  auto plain = ParseSignatureName("payroll-2026-11.csv.sig");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->batch_id, "payroll-2026-11");
  EXPECT_EQ(plain->label, "");
  auto labelled = ParseSignatureName("pay.roll.csv.alice_2-x.sig");
  ASSERT_TRUE(labelled);
  EXPECT_EQ(labelled->batch_id, "pay.roll");
  EXPECT_EQ(labelled->label, "alice_2-x");
  for (const char* bad :
       {"payroll.csv", "payroll.csv.sig.invalid", "payroll.csv.al ice.sig", "payroll.sig", ".sig",
        "payroll.csv.alice.sig.tmp", "-bad.csv.sig", "payroll.csv..sig", "payroll.csv.a/b.sig"})
    EXPECT_FALSE(ParseSignatureName(bad)) << bad;
  EXPECT_EQ(SignatureLabel("alice.smith@corp"), "alicesmithcorp");
  EXPECT_EQ(SignatureLabel("..."), "user");
}

class ApprovalFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("approvals_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "spool" / "approval");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
  }
  fs::path approval() const { return dir_ / "spool" / "approval"; }
  fs::path dir_;
};

TEST_F(ApprovalFiles, ASymlinkAHugeFileAndAFolderAreNotReadAsSignatures) {
  Write(dir_ / "outside.sig", "secret outside the folder");
  fs::create_symlink(dir_ / "outside.sig", approval() / "b.csv.link.sig");
  Write(approval() / "b.csv.big.sig", std::string(10 * 1024 * 1024, 'A'));
  fs::create_directory(approval() / "b.csv.dir.sig");
  Write(approval() / "b.csv.ok.sig", "-----BEGIN SSH SIGNATURE-----\n");
  auto link = ReadSignatureFile(approval(), "b.csv.link.sig");
  ASSERT_TRUE(link.ok());
  EXPECT_NE(link->unusable.find("symbolic link"), std::string::npos) << link->unusable;
  EXPECT_TRUE(link->bytes.empty());
  auto big = ReadSignatureFile(approval(), "b.csv.big.sig");
  ASSERT_TRUE(big.ok());
  EXPECT_NE(big->unusable.find("larger than"), std::string::npos);
  auto folder = ReadSignatureFile(approval(), "b.csv.dir.sig");
  ASSERT_TRUE(folder.ok());
  EXPECT_FALSE(folder->unusable.empty());
  auto ok = ReadSignatureFile(approval(), "b.csv.ok.sig");
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->unusable.empty());
  EXPECT_EQ(ok->bytes, "-----BEGIN SSH SIGNATURE-----\n");
}

TEST_F(ApprovalFiles, TheBatchFileMustBeTheBytesThatWereAccepted) {
  Write(approval() / "b.csv", "abc");
  // sha256("abc")
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  auto same = ReadApprovedBytes((approval() / "b.csv").string(), abc);
  ASSERT_TRUE(same.ok()) << same.error();
  EXPECT_EQ(*same, "abc");
  Write(approval() / "b.csv", "abd");
  EXPECT_FALSE(ReadApprovedBytes((approval() / "b.csv").string(), abc).ok());
}

TEST_F(ApprovalFiles, ApproveShowsTheBatchSignsItsBytesAndTheSignatureVerifies) {
  const std::string csv =
      "id,amount,currency,account_number,account_name,operator_code\n"
      "P-1,10.00,USD,DE0001111122223344,Ann,BNK\nP-2,5000,JPY,DE0001111122225555,Bob,BNK\n"
      "P-3,99.5,USD,DE0001111122226666,Cy,BNK\n";
  Write(approval() / "pay.csv", csv);
  const std::string key = (dir_ / "alice").string();
  auto made = RunProcess({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key}, "");
  ASSERT_TRUE(made.ok() && made->exit_code == 0);
  ApproveOptions o;
  o.spool_dir = (dir_ / "spool").string();
  o.batch_id = "pay";
  o.key = key;
  o.user = "alice";
  o.approvals_required = 2;
  o.approvals_given = 0;
  std::istringstream no("n\n");
  std::ostringstream out, err;
  EXPECT_EQ(RunApprove(o, no, out, err), 1) << "declined: nothing signed";
  EXPECT_FALSE(fs::exists(approval() / "pay.csv.alice.sig"));
  const std::string shown = out.str();
  EXPECT_NE(shown.find("rows       3"), std::string::npos) << shown;
  EXPECT_NE(shown.find("109.50 USD"), std::string::npos) << shown;
  EXPECT_NE(shown.find("5000 JPY"), std::string::npos) << shown;
  EXPECT_NE(shown.find("0 of 2"), std::string::npos) << shown;
  EXPECT_NE(shown.find("****3344"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("DE0001111122223344"), std::string::npos)
      << "a full account number was shown";
  // Ordered by the amount as written, each in its own currency: 5000 JPY, 99.50 USD, 10.00 USD.
  EXPECT_LT(shown.find("P-2"), shown.find("P-3")) << shown;
  EXPECT_LT(shown.find("P-3"), shown.find("P-1")) << shown;

  std::istringstream yes("y\n");
  EXPECT_EQ(RunApprove(o, yes, out, err), 0) << err.str();
  ASSERT_TRUE(fs::exists(approval() / "pay.csv.alice.sig"));
  std::ofstream(dir_ / "allowed_signers") << "alice@example.com " << [&] {
    std::ifstream pub(key + ".pub");
    std::stringstream ss;
    ss << pub.rdbuf();
    return ss.str();
  }();
  ApprovalPolicy policy;
  policy.allowed_signers = (dir_ / "allowed_signers").string();
  auto checks = CheckSignatures(policy, approval().string(), {"pay.csv.alice.sig"}, csv);
  ASSERT_TRUE(checks.ok()) << checks.error();
  ASSERT_EQ(checks->size(), 1u);
  EXPECT_TRUE((*checks)[0].valid) << (*checks)[0].reason;
  EXPECT_EQ((*checks)[0].signer.principal, "alice@example.com");
}

TEST_F(ApprovalFiles, ApproveRefusesABatchThatIsNotAwaitingApproval) {
  fs::create_directories(dir_ / "spool" / "work");
  Write(dir_ / "spool" / "work" / "busy.csv", "x");
  ApproveOptions o;
  o.spool_dir = (dir_ / "spool").string();
  o.batch_id = "busy";
  o.yes = true;
  std::istringstream in;
  std::ostringstream out, err;
  EXPECT_EQ(RunApprove(o, in, out, err), 2);
  EXPECT_NE(err.str().find("is in work/"), std::string::npos) << err.str();
  o.batch_id = "nowhere";
  EXPECT_EQ(RunApprove(o, in, out, err), 2);
  EXPECT_NE(err.str().find("no batch nowhere awaiting approval"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace payoutd
