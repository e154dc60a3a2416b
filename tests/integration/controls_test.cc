// Finance controls end to end (docs/approvals.md, docs/operator-control.md): the real daemon, the
// sandbox gateway, real `ssh-keygen` keys made here, and the `payoutd approve|hold|resume|cancel`
// commands as an operator types them. What the gateway saw (its ledger and arrival log) is the
// proof: a batch that needs approvals sends nothing before enough distinct signers signed its
// exact bytes, and nothing of a held or cancelled batch starts after the command returned.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "daemon/process.h"
#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// n payouts "<prefix>-<i>" of `amount` each in `currency`.
std::string Csv(const std::string& prefix, int n, const std::string& currency = "USD",
                const std::string& amount = "10.00") {
  std::string s = "id,amount,currency,account_number,account_name,operator_code\n";
  for (int i = 1; i <= n; ++i) {
    s += prefix + "-" + std::to_string(i) + "," + amount + "," + currency + ",DE" +
         std::to_string(100000 + i) + "44,Payee " + std::to_string(i) + ",BNK_000\n";
  }
  return s;
}

// Runs a program (no shell, daemon/process.h) and returns its exit code; -1 when it cannot start.
int RunProgram(const std::vector<std::string>& args) {
  Result<ProcessResult> r = RunProcess(args, "");
  return r.ok() ? r->exit_code : -1;
}

// Counts the lines of `text` that hold `needle`.
int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class ControlsTest : public ::testing::Test {
 protected:
  void StartSandbox(std::vector<std::string> args = {"--final-after-ms", "0"}) {
    sandbox_ = std::make_unique<SandboxProcess>(args);
  }

  // Keys for alice and bob (allowed), and mallory (not). allowed_signers lists alice and bob.
  void MakeKeys() {
    keys_ = dir_.path() + "/keys";
    ::mkdir(keys_.c_str(), 0700);
    std::string signers;
    for (const std::string name : {"alice", "bob", "mallory"}) {
      ASSERT_EQ(RunProgram({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                            keys_ + "/" + name}),
                0);
      if (name != "mallory")
        signers += name + "@example.com namespaces=\"payoutd-batch\" " +
                   ReadFile(keys_ + "/" + name + ".pub");
    }
    WriteFile(keys_ + "/allowed_signers", signers);
  }

  std::string Configure(const std::string& approvals_yaml, int rps = 2000) {
    cfg_ = DaemonConfig::For(*sandbox_);
    cfg_.requests_per_second = rps;
    cfg_.burst = std::max(1, rps / 10);
    cfg_.extra_yaml = approvals_yaml;
    cfg_.control_socket = dir_.path() + "/control.sock";
    config_ = cfg_.Write(dir_.path());
    daemon_ = std::make_unique<DaemonProcess>(config_);
    return config_;
  }

  void StartDaemon() {
    daemon_->Start();
    ASSERT_TRUE(daemon_->WaitReady(seconds(20))) << daemon_->log();
  }

  std::string spool() const { return cfg_.spool_dir(dir_.path()); }
  std::string approval(const std::string& name) const { return spool() + "/approval/" + name; }

  CommandResult Payoutd(std::vector<std::string> args) {
    args.insert(args.begin() + 1, {"--config", config_});
    return RunPayoutd(args);
  }

  // `payoutd approve BATCH --key keys/<who> --yes`, as <who>.
  CommandResult Approve(const std::string& batch, const std::string& who) {
    return Payoutd({"approve", batch, "--key", keys_ + "/" + who, "--yes"});
  }

  // Signs `file` with ssh-keygen directly, writing `sig_name` into approval/.
  void SignAs(const std::string& who, const std::string& file, const std::string& sig_name,
              const std::string& ns = "payoutd-batch") {
    std::string copy = dir_.path() + "/to-sign-" + sig_name;
    WriteFile(copy, ReadFile(file));
    ASSERT_EQ(
        RunProgram({"ssh-keygen", "-q", "-Y", "sign", "-n", ns, "-f", keys_ + "/" + who, copy}), 0);
    std::string tmp = approval(sig_name + ".tmp");
    WriteFile(tmp, ReadFile(copy + ".sig"));
    ASSERT_EQ(::rename(tmp.c_str(), approval(sig_name).c_str()), 0);
  }

  // Waits until the daemon's logs hold `needle` at least n times.
  bool WaitLog(const std::string& needle, int n = 1, milliseconds timeout = seconds(20)) {
    return WaitFor([&] { return Count(daemon_->all_logs(), needle) >= n; }, timeout);
  }

  size_t Posts(const std::string& prefix) {
    size_t n = 0;
    for (const auto& a : sandbox_->Arrivals())
      if (a.method == "POST" && a.id.rfind(prefix, 0) == 0) ++n;
    return n;
  }

  TempDir dir_;
  std::string keys_;
  std::unique_ptr<SandboxProcess> sandbox_;
  DaemonConfig cfg_;
  std::string config_;
  std::unique_ptr<DaemonProcess> daemon_;
};

std::string ApprovalsYaml(const std::string& keys, int required, const std::string& more = "") {
  return "approvals:\n  allowed_signers: " + keys +
         "/allowed_signers\n  required: " + std::to_string(required) + "\n" + more;
}

// Two required: one valid signature pays nothing, the same principal again counts once, a
// second principal pays; summary.json names both and the signatures travel to done/.
TEST_F(ControlsTest, TwoDistinctSignersArePaidAndOneIsNot) {
  StartSandbox();
  MakeKeys();
  Configure(ApprovalsYaml(dir_.path() + "/keys", 2));
  StartDaemon();
  DropBatch(spool(), "pay", Csv("PAY", 20));
  ASSERT_TRUE(WaitForFile(approval("pay.csv"), seconds(20))) << daemon_->log();

  CommandResult a = Approve("pay", "alice");
  ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
  EXPECT_THAT(a.out, HasSubstr("20"));
  EXPECT_THAT(a.out, HasSubstr("200.00")) << "the total being approved is shown";
  ASSERT_TRUE(WaitLog("approval.counted")) << daemon_->log();
  // alice again, under another label: the same principal counts once.
  SignAs("alice", approval("pay.csv"), "pay.csv.alice-again.sig");
  ASSERT_TRUE(WaitLog("approval.repeated")) << daemon_->log();
  CommandResult st = Payoutd({"status", "pay"});
  EXPECT_THAT(st.out, HasSubstr("awaiting approval (1 of 2)")) << st.out << st.err;
  EXPECT_EQ(Posts("PAY-"), 0u) << "one signer of two must pay nothing";

  ASSERT_EQ(Approve("pay", "bob").exit_code, 0);
  ASSERT_TRUE(WaitForFile(spool() + "/done/pay.summary.json", seconds(30))) << daemon_->log();
  std::string summary = ReadFile(spool() + "/done/pay.summary.json");
  EXPECT_THAT(summary, HasSubstr("\"principal\": \"alice@example.com\""));
  EXPECT_THAT(summary, HasSubstr("\"principal\": \"bob@example.com\""));
  EXPECT_EQ(Count(summary, "\"principal\""), 2) << summary;
  EXPECT_EQ(ReadSummary(spool() + "/done/pay.summary.json").StateCount("SUCCESS"), 20);
  auto done = ListDir(spool() + "/done");
  EXPECT_EQ(std::count_if(done.begin(), done.end(),
                          [](const std::string& n) { return n.rfind("pay.csv.", 0) == 0; }),
            3)
      << "the three signature files go to done/ with the batch";
  EXPECT_TRUE(ListDir(spool() + "/approval").empty());
}

// A stranger's key, a signature over other bytes, the wrong namespace, an expired key and garbage
// count for nothing and are renamed .sig.invalid; a batch that never gets enough expires into
// rejected/ having sent nothing.
TEST_F(ControlsTest, BadSignaturesCountForNothingAndTheBatchExpires) {
  StartSandbox();
  MakeKeys();
  // bob's key expired yesterday.
  std::string signers = ReadFile(keys_ + "/allowed_signers");
  size_t bob = signers.find("bob@example.com ");
  signers.insert(bob + std::string("bob@example.com ").size(), "valid-before=\"20200101\",");
  WriteFile(keys_ + "/allowed_signers", signers);
  Configure(ApprovalsYaml(keys_, 1, "  expire_after: 8s\n"));
  StartDaemon();
  DropBatch(spool(), "bad", Csv("BAD", 5));
  ASSERT_TRUE(WaitForFile(approval("bad.csv"), seconds(20))) << daemon_->log();

  SignAs("mallory", approval("bad.csv"), "bad.csv.mallory.sig");
  WriteFile(dir_.path() + "/other.csv", Csv("OTHER", 5));
  SignAs("alice", dir_.path() + "/other.csv", "bad.csv.other-bytes.sig");
  SignAs("alice", approval("bad.csv"), "bad.csv.namespace.sig", "file");
  SignAs("bob", approval("bad.csv"), "bad.csv.bob-expired.sig");
  WriteFile(approval("bad.csv.garbage.sig"), "not a signature\n");
  ASSERT_TRUE(WaitLog("approval.invalid", 5)) << daemon_->log();
  for (const std::string label :
       {"mallory", "other-bytes", "namespace", "bob-expired", "garbage"}) {
    EXPECT_TRUE(FileExists(approval("bad.csv." + label + ".sig.invalid"))) << label;
  }
  EXPECT_EQ(Posts("BAD-"), 0u);
  HttpReply scrape = HttpRequest(daemon_->metrics_port(), "GET", "/metrics");
  EXPECT_THAT(scrape.body, HasSubstr("\npayoutd_approvals_invalid_total 5\n"));
  EXPECT_THAT(scrape.body, HasSubstr("\npayoutd_batches_awaiting_approval 1\n"));

  ASSERT_TRUE(WaitForFile(spool() + "/rejected/bad.errors.csv", seconds(20))) << daemon_->log();
  EXPECT_THAT(ReadFile(spool() + "/rejected/bad.errors.csv"), HasSubstr("0,,approval expired"));
  EXPECT_TRUE(FileExists(spool() + "/rejected/bad.csv"));
  EXPECT_EQ(Posts("BAD-"), 0u) << "an expired batch sends nothing";
  EXPECT_TRUE(sandbox_->Ledger().empty());
}

// large_above applies per currency: a batch above the USD line waits; one with a large EUR total
// but no EUR line is paid at once.
TEST_F(ControlsTest, LargeAboveIsPerCurrency) {
  StartSandbox();
  MakeKeys();
  Configure(ApprovalsYaml(keys_, 0, "  large_above:\n    USD: \"100.00\"\n  large_required: 1\n"));
  StartDaemon();
  DropBatch(spool(), "small", Csv("SMALL", 10, "USD", "10.00"));  // 100.00: not above
  DropBatch(spool(), "euro", Csv("EURO", 10, "EUR", "900.00"));   // no EUR line
  DropBatch(spool(), "large", Csv("LARGE", 10, "USD", "10.01"));  // 100.10: above
  ASSERT_TRUE(WaitForFile(spool() + "/done/small.summary.json", seconds(30))) << daemon_->log();
  ASSERT_TRUE(WaitForFile(spool() + "/done/euro.summary.json", seconds(30))) << daemon_->log();
  ASSERT_TRUE(WaitForFile(approval("large.csv"), seconds(20))) << daemon_->log();
  EXPECT_EQ(Posts("LARGE-"), 0u);
  ASSERT_EQ(Approve("large", "alice").exit_code, 0);
  ASSERT_TRUE(WaitForFile(spool() + "/done/large.summary.json", seconds(30))) << daemon_->log();
}

// Cancel in the middle of a 5,000-payout batch at a low rate: no payout reported CANCELLED ever
// reached the gateway, nothing of the batch started after the command returned, and every sent
// payout reached its final state.
TEST_F(ControlsTest, CancelMidBatchSendsNothingMore) {
  StartSandbox({"--final-after-ms", "300"});
  Configure("", 400);
  StartDaemon();
  DropBatch(spool(), "big", Csv("BIG", 5000));
  ASSERT_TRUE(WaitFor([&] { return Posts("BIG-") >= 300; }, seconds(60))) << daemon_->log();
  CommandResult c = Payoutd({"cancel", "big", "--reason", "wrong file"});
  auto returned = std::chrono::steady_clock::now();
  ASSERT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_THAT(c.out, HasSubstr("cancelled"));
  EXPECT_THAT(c.out, HasSubstr("unsent payouts"));
  ASSERT_TRUE(WaitForFile(spool() + "/done/big.summary.json", seconds(60))) << daemon_->log();

  int64_t returned_us = sandbox_->ArrivalTimeUs(returned);
  const std::set<std::string> posted_after = sandbox_->PostedAfter(returned_us);
  auto ledger = sandbox_->Ledger();
  auto rows = ReadResultsCsv(spool() + "/done/big.results.csv");
  ASSERT_EQ(rows.size(), 5000u);
  int64_t cancelled = 0, sent = 0;
  for (const auto& r : rows) {
    if (r.state == "CANCELLED") {
      ++cancelled;
      EXPECT_EQ(ledger.count(r.id), 0u)
          << r.id << " was reported CANCELLED but reached the gateway";
      EXPECT_THAT(r.error, HasSubstr("wrong file"));
    } else {
      ++sent;
      EXPECT_EQ(r.state, "SUCCESS") << r.id;
      EXPECT_EQ(ledger.count(r.id), 1u) << r.id;
      EXPECT_EQ(posted_after.count(r.id), 0u) << r.id << ": a first POST after cancel returned";
    }
  }
  EXPECT_GT(cancelled, 1000) << "the cancel came early in the batch";
  EXPECT_GE(sent, 300);
  EXPECT_EQ(static_cast<int64_t>(ledger.size()), sent);
  Summary s = ReadSummary(spool() + "/done/big.summary.json");
  EXPECT_EQ(s.StateCount("CANCELLED"), cancelled);
  std::string summary = ReadFile(spool() + "/done/big.summary.json");
  EXPECT_THAT(summary, HasSubstr("\"action\": \"cancel\""));
  EXPECT_THAT(summary, HasSubstr("\"reason\": \"wrong file\""));

  HttpReply scrape = HttpRequest(daemon_->metrics_port(), "GET", "/metrics");
  EXPECT_THAT(scrape.body, HasSubstr("\npayoutd_payouts_total{state=\"CANCELLED\"} " +
                                     std::to_string(cancelled) + "\n"));
  CommandResult again = Payoutd({"cancel", "big"});
  EXPECT_EQ(again.exit_code, 2) << again.out << again.err << ": the batch is reported";
}

// Hold stops POSTs within the command's return (polls go on), survives SIGKILL and a restart;
// resume starts them again and the batch completes.
TEST_F(ControlsTest, HoldStopsPostsAcrossARestartAndResumeRestartsThem) {
  StartSandbox({"--final-after-ms", "200"});
  Configure("", 200);
  StartDaemon();
  DropBatch(spool(), "hb", Csv("HB", 1500));
  ASSERT_TRUE(WaitFor([&] { return Posts("HB-") >= 100; }, seconds(60))) << daemon_->log();
  CommandResult h = Payoutd({"hold", "hb", "--reason", "check the amounts"});
  auto returned = std::chrono::steady_clock::now();
  ASSERT_EQ(h.exit_code, 0) << h.out << h.err;
  int64_t returned_us = sandbox_->ArrivalTimeUs(returned);
  // Polls of the payouts already sent go on: once 50 of them arrived, time has passed.
  ASSERT_TRUE(
      WaitFor([&] { return sandbox_->RequestsAfter(returned_us).gets >= 50; }, seconds(30)));
  EXPECT_EQ(sandbox_->RequestsAfter(returned_us).posts, 0) << "a POST started after hold returned";
  CommandResult st = Payoutd({"status", "hb"});
  EXPECT_THAT(st.out, HasSubstr("held since")) << st.out;

  daemon_->Kill();
  StartDaemon();
  // After the restart the payouts already sent are polled to their final state (how many are
  // left to poll depends on the moment of the kill: none, at times); nothing new is POSTed.
  auto all_sent_final = [&] {
    std::string json = Payoutd({"status", "hb", "--json"}).out;
    json.erase(std::remove(json.begin(), json.end(), ' '), json.end());
    return json.find("\"submitting\":0") != std::string::npos &&
           json.find("\"unknown\":0") != std::string::npos &&
           json.find("\"polling\":0") != std::string::npos;
  };
  ASSERT_TRUE(WaitFor(all_sent_final, seconds(30))) << daemon_->log();
  EXPECT_EQ(sandbox_->RequestsAfter(returned_us).posts, 0)
      << "the hold did not survive the restart";

  CommandResult r = Payoutd({"resume", "hb"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(WaitForFile(spool() + "/done/hb.summary.json", seconds(90))) << daemon_->log();
  EXPECT_EQ(ReadSummary(spool() + "/done/hb.summary.json").StateCount("SUCCESS"), 1500);
  std::string summary = ReadFile(spool() + "/done/hb.summary.json");
  EXPECT_THAT(summary, HasSubstr("\"action\": \"hold\""));
  EXPECT_THAT(summary, HasSubstr("\"action\": \"resume\""));
}

// hold --all also holds a batch that arrives later; a batch awaiting approval that is cancelled
// goes to rejected/ with the reason; bad requests get a clear message and the daemon is unharmed.
TEST_F(ControlsTest, HoldAllCancelAwaitingAndBadRequests) {
  StartSandbox();
  MakeKeys();
  Configure(ApprovalsYaml(keys_, 0, "  large_above:\n    USD: \"1000.00\"\n"));
  StartDaemon();
  ASSERT_EQ(Payoutd({"hold", "--all", "--reason", "month end"}).exit_code, 0);
  DropBatch(spool(), "later", Csv("LATER", 10));
  ASSERT_TRUE(WaitLog("engine.batch_started")) << daemon_->log();
  DropBatch(spool(), "waits", Csv("WAITS", 10, "USD", "200.00"));
  ASSERT_TRUE(WaitForFile(approval("waits.csv"), seconds(20))) << daemon_->log();

  CommandResult unknown = Payoutd({"cancel", "nosuch"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("nosuch"));
  EXPECT_EQ(Payoutd({"cancel", "--all"}).exit_code, 2);
  EXPECT_EQ(Payoutd({"hold"}).exit_code, 2);
  // A client that sends garbage, then one that sends a megabyte.
  for (const std::string& payload : {std::string("{not json\n"), std::string(1 << 20, 'x')}) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = dir_.path() + "/control.sock";
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    (void)::send(fd, payload.data(), payload.size(), MSG_NOSIGNAL);
    ::close(fd);
  }

  CommandResult c = Payoutd({"cancel", "waits", "--reason", "duplicate of march"});
  ASSERT_EQ(c.exit_code, 0) << c.out << c.err;
  ASSERT_TRUE(WaitForFile(spool() + "/rejected/waits.errors.csv", seconds(10)));
  EXPECT_THAT(ReadFile(spool() + "/rejected/waits.errors.csv"),
              HasSubstr("0,,cancelled: duplicate of march"));
  EXPECT_EQ(Posts("LATER-"), 0u) << "hold --all holds a batch that arrived later";
  EXPECT_EQ(Posts("WAITS-"), 0u);

  ASSERT_EQ(Payoutd({"resume", "--all"}).exit_code, 0);
  ASSERT_TRUE(WaitForFile(spool() + "/done/later.summary.json", seconds(30))) << daemon_->log();
  EXPECT_TRUE(daemon_->running());
  EXPECT_EQ(Posts("WAITS-"), 0u);
}

// With no daemon running the command acts on the state (under its lock): a held batch stays held
// when the daemon comes back.
TEST_F(ControlsTest, CommandsWorkWithoutADaemon) {
  StartSandbox({"--final-after-ms", "200"});
  Configure("", 100);
  StartDaemon();
  DropBatch(spool(), "off", Csv("OFF", 2000));
  ASSERT_TRUE(WaitFor([&] { return Posts("OFF-") >= 50; }, seconds(30))) << daemon_->log();
  ASSERT_EQ(daemon_->Terminate(seconds(20)), 0);
  CommandResult h = Payoutd({"cancel", "off", "--reason", "stop it"});
  ASSERT_EQ(h.exit_code, 0) << h.out << h.err;
  size_t before = Posts("OFF-");
  StartDaemon();
  ASSERT_TRUE(WaitForFile(spool() + "/done/off.summary.json", seconds(60))) << daemon_->log();
  EXPECT_EQ(Posts("OFF-"), before) << "a cancelled batch sent more after the restart";
  Summary s = ReadSummary(spool() + "/done/off.summary.json");
  EXPECT_GT(s.StateCount("CANCELLED"), 1000);
}

// SIGKILL at random moments around a cancel: whatever the moment, once the command has returned
// success no cancelled payout is ever sent, and every payout ends final once.
TEST_F(ControlsTest, RandomKillsAroundACancelNeverSendACancelledPayout) {
  StartSandbox({"--final-after-ms", "100"});
  Configure("", 300);
  StartDaemon();
  DropBatch(spool(), "rk", Csv("RK", 3000));
  ASSERT_TRUE(WaitFor([&] { return Posts("RK-") >= 100; }, seconds(30))) << daemon_->log();
  std::mt19937 rng(std::random_device{}());
  bool cancelled = false;
  for (int round = 0; round < 3 && !cancelled; ++round) {
    CommandResult c;
    std::thread cli([&] { c = Payoutd({"cancel", "rk"}); });
    std::this_thread::sleep_for(milliseconds(rng() % 40));  // the random moment of the kill
    daemon_->Kill();
    cli.join();
    cancelled = c.exit_code == 0;
    StartDaemon();
  }
  if (!cancelled) {
    ASSERT_EQ(Payoutd({"cancel", "rk"}).exit_code, 0);
  }
  ASSERT_TRUE(WaitForFile(spool() + "/done/rk.summary.json", seconds(90))) << daemon_->log();
  auto ledger = sandbox_->Ledger();
  for (const auto& r : ReadResultsCsv(spool() + "/done/rk.results.csv")) {
    if (r.state == "CANCELLED") {
      EXPECT_EQ(ledger.count(r.id), 0u) << r.id << " was cancelled and sent";
    } else if (r.state == "ERROR") {
      // Its POST was cut off by a kill and never reached the gateway: not sent again.
      EXPECT_THAT(r.error, HasSubstr("never received")) << r.id;
      EXPECT_FALSE(ledger.count(r.id) && ledger.at(r.id).created) << r.id;
    } else {
      EXPECT_EQ(r.state, "SUCCESS") << r.id;
      ASSERT_EQ(ledger.count(r.id), 1u) << r.id;
      EXPECT_EQ(ledger.at(r.id).distinct_bodies, 1) << r.id;
    }
  }
}

}  // namespace
}  // namespace payoutd::testing
