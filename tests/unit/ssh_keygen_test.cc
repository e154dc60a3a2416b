// Approval signatures checked by the real ssh-keygen with keys made in the test: what verifies,
// and each way a signature must count for nothing (docs/approvals.md).
#include "daemon/ssh_keygen.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/process.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SshKeygenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sshkeygen_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A fresh ed25519 key pair named `name`; returns the private key's path.
  std::string MakeKey(const std::string& name) {
    const std::string key = (dir_ / name).string();
    auto r = RunProcess({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key}, "");
    EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? r->err : r.error());
    return key;
  }
  // allowed_signers with one line per (principal, key, options).
  std::string AllowedSigners(
      const std::vector<std::tuple<std::string, std::string, std::string>>& lines) {
    const fs::path path = dir_ / "allowed_signers";
    std::ofstream out(path);
    for (const auto& [principal, key, options] : lines)
      out << principal << " " << options << (options.empty() ? "" : " ") << Read(key + ".pub");
    return path.string();
  }
  std::string Sign(const std::string& key, std::string_view data,
                   std::string_view ns = kApprovalNamespace) {
    auto sig = MakeSshSignature(key, ns, data);
    EXPECT_TRUE(sig.ok()) << sig.error();
    return sig.ok() ? *sig : "";
  }

  fs::path dir_;
  const std::string batch_ =
      "id,amount,currency,account_number,account_name,operator_code\nP-1,10.00,USD,1234,Ann,BNK\n";
};

TEST_F(SshKeygenTest, ASignatureOverTheExactBytesByAnAllowedKeyNamesItsPrincipalAndKey) {
  const std::string alice = MakeKey("alice");
  const std::string signers =
      AllowedSigners({{"alice@example.com", alice, "namespaces=\"payoutd-batch\""}});
  auto v = VerifySshSignature(signers, kApprovalNamespace, Sign(alice, batch_), batch_);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_TRUE(v->valid) << v->reason;
  EXPECT_EQ(v->signer.principal, "alice@example.com");
  EXPECT_EQ(v->signer.key_fingerprint.rfind("SHA256:", 0), 0u) << v->signer.key_fingerprint;
}

TEST_F(SshKeygenTest, ASignatureOverOtherBytesCountsForNothing) {
  const std::string alice = MakeKey("alice");
  const std::string signers = AllowedSigners({{"alice@example.com", alice, ""}});
  std::string other = batch_;
  other[other.find("10.00")] = '9';  // one digit of an amount
  auto v = VerifySshSignature(signers, kApprovalNamespace, Sign(alice, batch_), other);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_FALSE(v->valid);
  EXPECT_FALSE(v->reason.empty());
}

TEST_F(SshKeygenTest, AStrangersKeyCountsForNothing) {
  const std::string alice = MakeKey("alice");
  const std::string mallory = MakeKey("mallory");
  const std::string signers = AllowedSigners({{"alice@example.com", alice, ""}});
  auto v = VerifySshSignature(signers, kApprovalNamespace, Sign(mallory, batch_), batch_);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_FALSE(v->valid);
  EXPECT_NE(v->reason.find("no allowed signer"), std::string::npos) << v->reason;
}

TEST_F(SshKeygenTest, AnotherNamespaceCountsForNothing) {
  const std::string alice = MakeKey("alice");
  const std::string signers =
      AllowedSigners({{"alice@example.com", alice, "namespaces=\"payoutd-batch\""}});
  auto v = VerifySshSignature(signers, kApprovalNamespace, Sign(alice, batch_, "file"), batch_);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_FALSE(v->valid);
}

TEST_F(SshKeygenTest, AKeyPastItsValidBeforeCountsForNothing) {
  const std::string alice = MakeKey("alice");
  const std::string signers =
      AllowedSigners({{"alice@example.com", alice, "valid-before=\"20200101\""}});
  auto v = VerifySshSignature(signers, kApprovalNamespace, Sign(alice, batch_), batch_);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_FALSE(v->valid);
}

TEST_F(SshKeygenTest, GarbageAndEmptySignaturesCountForNothing) {
  const std::string alice = MakeKey("alice");
  const std::string signers = AllowedSigners({{"alice@example.com", alice, ""}});
  for (const std::string& sig :
       {std::string("not a signature"), std::string(), std::string(100000, 'A'),
        std::string("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")}) {
    auto v = VerifySshSignature(signers, kApprovalNamespace, sig, batch_);
    ASSERT_TRUE(v.ok()) << v.error();
    EXPECT_FALSE(v->valid) << sig.substr(0, 40);
  }
}

TEST_F(SshKeygenTest, APrincipalListedWithOthersOnOneLineIsNamedAlone) {
  const std::string alice = MakeKey("alice");
  const std::string signers = AllowedSigners({{"alice@example.com,ops@example.com", alice, ""}});
  auto v = VerifySshSignature(signers, kApprovalNamespace, Sign(alice, batch_), batch_);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_TRUE(v->valid) << v->reason;
  EXPECT_TRUE(v->signer.principal == "alice@example.com" ||
              v->signer.principal == "ops@example.com")
      << v->signer.principal;
}

TEST_F(SshKeygenTest, NoSshKeygenIsAnErrorNotAnInvalidSignature) {
  SshKeygenOptions o;
  o.program = "/nonexistent/ssh-keygen";
  auto v = VerifySshSignature("/dev/null", kApprovalNamespace, "x", batch_, o);
  EXPECT_FALSE(v.ok());
}

TEST(RunProcess, FeedsStdinCapturesOutputAndBoundsIt) {
  const std::string big(1 << 20, 'x');
  auto r = RunProcess({"cat"}, big);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out.size(), 64u * 1024) << "stdout is capped at max_output";
  auto w = RunProcess({"wc", "-c"}, big);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(std::stoul(w->out), big.size()) << "all of stdin reached the child";
}

TEST(RunProcess, KillsAChildPastItsDeadline) {
  ProcessOptions o;
  o.timeout = std::chrono::milliseconds(200);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = RunProcess({"sleep", "30"}, "", o);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, 128 + SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(RunProcess, PassesAnArgumentAsOneWordWhateverItHolds) {
  auto r = RunProcess({"printf", "%s", "a b; echo $HOME `id`"}, "");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->out, "a b; echo $HOME `id`") << "no shell ever sees it";
}

}  // namespace
}  // namespace payoutd
