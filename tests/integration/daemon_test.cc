// End to end, real processes: payout-sandbox (the gateway) and payoutd (run / process / status /
// validate / check). Each test starts its own sandbox and daemon in a fresh temp folder and checks
// what docs/batches.md, results.md, cli.md and operations.md promise against the sandbox's
// ledger: every payout created once with one body, amounts exact to the minor unit, reports
// complete and in input order.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/batch_expectations.h"
#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

// The rows, their CSV and the sandbox's rules are tests/support/batch_expectations.h's; so are
// ExpectReports and ExpectLedgerExactlyOnce.
using In = PayoutIn;
constexpr auto Csv = PayoutCsv;

// n USD payouts "<prefix>-<i>"; every 50th fails by the account rule, every 97th is refused.
std::vector<In> UsdRows(const std::string& prefix, int n) {
  std::vector<In> rows;
  for (int i = 1; i <= n; ++i) {
    In r;
    r.id = prefix + "-" + std::to_string(i);
    r.amount = std::to_string(1 + i % 500) + "." + (i % 10 ? std::to_string(10 + i % 90) : "05");
    r.currency = "USD";
    r.account = "DE" + std::to_string(100000 + i) + (i % 50 == 0 ? "13" : "44");
    r.name = "Payee " + std::to_string(i);
    r.op = i % 97 == 0 ? "BNK_REJECT" : "BNK_000";
    rows.push_back(r);
  }
  return rows;
}

// A scratch folder, a sandbox and a config for one test.
class DaemonTest : public ::testing::Test {
 protected:
  void StartSandbox(std::vector<std::string> args) {
    sandbox_ = std::make_unique<SandboxProcess>(std::move(args));
    cfg_ = DaemonConfig::For(*sandbox_);
  }
  std::string WriteConfig() { return cfg_.Write(dir_.path()); }
  std::string spool() const { return cfg_.spool_dir(dir_.path()); }
  std::string done(const std::string& name) const { return spool() + "/done/" + name; }
  std::string rejected(const std::string& name) const { return spool() + "/rejected/" + name; }

  // Waits for done/<batch>.summary.json; on timeout, fails with the daemon's log tail.
  bool WaitDone(DaemonProcess& d, const std::string& batch, milliseconds timeout) {
    bool ok = WaitForFile(done(batch + ".summary.json"), timeout);
    if (!ok) {
      std::string log = d.log();
      ADD_FAILURE() << "no summary for " << batch << " in time; log tail:\n"
                    << log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
    }
    return ok;
  }

  // Waits for rejected/<stem>.csv, the last file of a rejection to appear; its reasons must be
  // there by then.
  bool WaitRejected(DaemonProcess& d, const std::string& stem, milliseconds timeout) {
    if (!WaitForFile(rejected(stem + ".csv"), timeout)) {
      ADD_FAILURE() << stem << ".csv not in rejected/ in time; log:\n" << d.log();
      return false;
    }
    EXPECT_TRUE(FileExists(rejected(stem + ".errors.csv")))
        << "a rejected batch without its reasons";
    return true;
  }

  TempDir dir_;
  std::unique_ptr<SandboxProcess> sandbox_;
  DaemonConfig cfg_;
};

// 1 -------------------------------------------------------------------------------------------
TEST_F(DaemonTest, PaysBatchInZeroTwoAndThreeDigitCurrenciesExactlyAndReportsInInputOrder) {
  StartSandbox({"--final-after-ms", "0"});
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  EXPECT_GT(daemon.metrics_port(), 0);

  std::vector<In> rows = {
      {"HP-JPY-1", "310000", "JPY", "JP1234567890", "Chiyo Tanaka", "BNK_000"},
      {"HP-USD-1", "1875.50", "USD", "GB29NWBK6016", "Bob Chen", "BNK_000"},
      {"HP-KWD-1", "420.250", "KWD", "KW81CBKU0000", "Dana Al-Sabah", "BNK_000"},
      {"HP-USD-2", "0.01", "USD", "US000000044", "Tiny Amount", "BNK_000"},
      {"HP-KWD-2", "0.001", "KWD", "KW000000001", "Smallest Fils", "BNK_000"},
      {"HP-JPY-2", "88000", "JPY", "JP0000000013", "Fails By Rule", "BNK_000"},
      {"HP-USD-3", "990.00", "USD", "US0000000013", "Fails Too", "BNK_000"},
      {"HP-KWD-3", "3.125", "KWD", "KW000000077", "Refused", "BNK_REJECT"},
      {"HP-USD-4", "42.5", "USD", "US000000055", "Short Decimals", "BNK_000"},
      {"HP-JPY-3", "1", "JPY", "JP000000066", "One Yen", "BNK_000"},
      {"HP-USD-5", "12345678.99", "USD", "US000000099", "Large Amount", "BNK_000"},
      {"HP-KWD-4", "7", "KWD", "KW000000088", "Whole Dinars", "BNK_000"},
  };
  // Hidden files, *.tmp and *.part are never taken (docs/batches.md#dropping-a-file).
  WriteFile(spool() + "/inbox/.hidden.csv", Csv(UsdRows("HIDDEN", 1)));
  WriteFile(spool() + "/inbox/later.csv.part", Csv(UsdRows("PART", 1)));
  WriteFile(spool() + "/inbox/later.tmp", Csv(UsdRows("TMP", 1)));
  DropBatch(spool(), "happy", Csv(rows));
  ASSERT_TRUE(WaitDone(daemon, "happy", seconds(60)));

  ExpectReports("happy", rows, ReadResultsCsv(done("happy.results.csv")),
                ReadSummary(done("happy.summary.json")));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  ASSERT_TRUE(WaitForFile(done("happy.csv"), seconds(10)));
  EXPECT_EQ(ReadFile(done("happy.csv")), Csv(rows)) << "the input moves to done/ unchanged";
  EXPECT_EQ(ListDir(spool() + "/inbox"),
            (std::vector<std::string>{".hidden.csv", "later.csv.part", "later.tmp"}));
  EXPECT_TRUE(ListDir(spool() + "/work").empty());
  EXPECT_TRUE(ListDir(spool() + "/rejected").empty());
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, BomCrlfQuotingHeaderCaseAndDefaultIdsArePaidExactly) {
  StartSandbox({"--final-after-ms", "0"});
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  // BOM, CRLF, header names padded and in mixed case, columns reordered, an extra column, no id
  // column (ids default to <batch>-<data row number>), a quoted name with a comma and a quote.
  std::string csv =
      "\xEF\xBB\xBF Currency ,AMOUNT,note,account_number,Account_Name,operator_code\r\n"
      "KWD,0.5,ignored,KW0001,\"Al-Sabah, Dana\",BNK_000\r\n"
      "JPY,1000,x,JP0002,\"Tanaka \"\"Chiyo\"\"\",BNK_000\r\n"
      "USD,99.99,,US0013,Plain,BNK_000\r\n";
  DropBatch(spool(), "fmt", csv);
  ASSERT_TRUE(WaitDone(daemon, "fmt", seconds(60)));
  std::vector<In> rows = {{"fmt-1", "0.5", "KWD", "KW0001", "", "BNK_000"},
                          {"fmt-2", "1000", "JPY", "JP0002", "", "BNK_000"},
                          {"fmt-3", "99.99", "USD", "US0013", "", "BNK_000"}};
  ExpectReports("fmt", rows, ReadResultsCsv(done("fmt.results.csv")),
                ReadSummary(done("fmt.summary.json")));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

// 2 -------------------------------------------------------------------------------------------
TEST_F(DaemonTest, EveryPayoutCreatedOnceWithOneBodyUnderGatewayFaults) {
  StartSandbox({"--final-after-ms",  "0",    "--seed",       "7",    "--500-share",     "0.08",
                "--503-share",       "0.08", "--429-share",  "0.08", "--retry-after-s", "0",
                "--drop-share",      "0.08", "--slow-share", "0.08", "--slow-ms",       "1500",
                "--malformed-share", "0.08"});
  cfg_.gateway_timeout = "1s";
  cfg_.max_attempts = 30;
  cfg_.initial_backoff = "10ms";
  cfg_.max_backoff = "100ms";
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();

  std::vector<In> rows = UsdRows("FLT", 300);
  rows[10].currency = "JPY";
  rows[10].amount = "12345";
  rows[20].currency = "KWD";
  rows[20].amount = "1.005";
  DropBatch(spool(), "faults", Csv(rows));
  ASSERT_TRUE(WaitDone(daemon, "faults", seconds(90)));

  ExpectReports("faults", rows, ReadResultsCsv(done("faults.results.csv")),
                ReadSummary(done("faults.summary.json")));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  // The faults did happen: some payouts needed more than one POST.
  int64_t retried = 0;
  for (const auto& [id, e] : sandbox_->Ledger()) retried += e.posts_received > 1;
  EXPECT_GT(retried, 0);
  for (const char* stat :
       {"injected_500", "injected_503", "injected_429", "injected_drop", "injected_malformed"})
    EXPECT_GT(sandbox_->Stat(stat), 0) << stat;
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

// 3 -------------------------------------------------------------------------------------------
TEST_F(DaemonTest, SigkillAtRandomMomentsLosesNothingAndPaysNothingTwice) {
  StartSandbox({"--final-after-ms", "20", "--latency-ms", "10", "--jitter-ms", "10"});
  cfg_.max_in_flight = 32;
  DaemonProcess daemon(WriteConfig());
  const int kRows = 5000;
  std::vector<In> rows = UsdRows("CR", kRows);
  DropBatch(spool(), "crash", Csv(rows));

  const char* seed_env = std::getenv("PAYOUTD_CRASH_SEED");
  std::mt19937 rng(seed_env ? static_cast<unsigned>(std::atoi(seed_env)) : 20261125u);
  std::uniform_int_distribution<int> delay_ms(100, 600);
  int kills = 0;
  int kills_mid_batch = 0;
  int64_t created_before_last_kill = 0;
  for (; kills < 10; ++kills) {
    const int64_t created_at_start = sandbox_->Stat("created");
    daemon.Start();
    auto at = std::chrono::steady_clock::now() + milliseconds(delay_ms(rng));
    // A condition wait for the moment of the kill (or for the daemon dying on its own: a failure).
    WaitFor([&] { return !daemon.running(); },
            std::chrono::duration_cast<milliseconds>(at - std::chrono::steady_clock::now()));
    ASSERT_TRUE(daemon.running()) << "payoutd exited by itself (run " << daemon.starts() << "):\n"
                                  << daemon.log();
    EXPECT_EQ(daemon.Kill(), 128 + SIGKILL);
    // A kill hits the batch in flight when this very run was creating payouts: it created some,
    // and the batch was not finished.
    const int64_t created = sandbox_->Stat("created");
    if (created > created_at_start && created < kRows && !FileExists(done("crash.summary.json")))
      ++kills_mid_batch;
  }
  created_before_last_kill = sandbox_->Stat("created");
  EXPECT_LT(created_before_last_kill, kRows)
      << "the batch finished before the last kill; make it slower";
  EXPECT_GE(kills_mid_batch, 5) << "most kills should hit the batch while payouts are in flight";

  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  ASSERT_TRUE(WaitDone(daemon, "crash", seconds(120)));
  auto results = ReadResultsCsv(done("crash.results.csv"));
  ExpectReports("crash", rows, results, ReadSummary(done("crash.summary.json")));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  EXPECT_TRUE(WaitForFile(done("crash.csv"), seconds(10)));
  EXPECT_TRUE(ListDir(spool() + "/work").empty());
  EXPECT_TRUE(ListDir(spool() + "/rejected").empty())
      << "a crash made the batch look like a duplicate";
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

// 4 -------------------------------------------------------------------------------------------
TEST_F(DaemonTest, BatchWithBadRowsIsRejectedWithExactlyThoseLinesAndNothingIsSent) {
  StartSandbox({"--final-after-ms", "0"});
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();

  std::string csv =
      "id,amount,currency,account_number,account_name,operator_code\n"
      "BAD-1,10.00,USD,US0001,Good One,BNK_000\n"         // line 2
      "BAD-2,-5.00,USD,US0002,Negative,BNK_000\n"         // line 3: sign
      "BAD-3,11.00,USD,US0003,Good Two,BNK_000\n"         // line 4
      "BAD-4,1.234,USD,US0004,Too Many Digits,BNK_000\n"  // line 5: 3 decimals for USD
      "BAD-5,12.00,XXQ,US0005,Bad Currency,BNK_000\n"     // line 6: unknown currency
      "BAD-6,13.00,USD,US0006,Good Three,BNK_000\n"       // line 7
      "BAD-7,5,JPY,,No Account,BNK_000\n";                // line 8: empty account
  DropBatch(spool(), "bad", csv);
  ASSERT_TRUE(WaitRejected(daemon, "bad", seconds(30)));
  std::set<int> lines;
  for (const auto& e : ReadErrorsCsv(rejected("bad.errors.csv"))) lines.insert(e.line);
  EXPECT_EQ(lines, (std::set<int>{3, 5, 6, 8}));
  EXPECT_TRUE(sandbox_->Ledger().empty()) << "a rejected batch sent something";
  EXPECT_EQ(sandbox_->Arrivals().size(), 0u);
  EXPECT_FALSE(FileExists(done("bad.summary.json")));
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, SameContentUnderAnotherNameAndReusedPayoutIdAreRejectedAsDuplicates) {
  StartSandbox({"--final-after-ms", "0"});
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();

  std::vector<In> rows = UsdRows("DUP", 5);
  DropBatch(spool(), "first", Csv(rows));
  ASSERT_TRUE(WaitDone(daemon, "first", seconds(30)));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  size_t requests = sandbox_->Arrivals().size();

  // The same bytes under another name.
  DropBatch(spool(), "copy", Csv(rows));
  ASSERT_TRUE(WaitRejected(daemon, "copy", seconds(30)));
  EXPECT_THAT(ReadFile(rejected("copy.errors.csv")), HasSubstr("content"));

  // New content, but its third row reuses a payout id of the first batch.
  std::vector<In> reuse = UsdRows("NEW", 4);
  reuse[2].id = "DUP-3";
  DropBatch(spool(), "reuse", Csv(reuse));
  ASSERT_TRUE(WaitRejected(daemon, "reuse", seconds(30)));
  auto errors = ReadErrorsCsv(rejected("reuse.errors.csv"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 4);
  EXPECT_EQ(errors[0].column, "id");
  EXPECT_THAT(errors[0].error, HasSubstr("DUP-3"));

  // The first batch's name again, new content.
  DropBatch(spool(), "first", Csv(UsdRows("OTHER", 2)));
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& n : ListDir(spool() + "/rejected"))
          if (n.rfind("first", 0) == 0 && n.find("errors.csv") != std::string::npos) return true;
        return false;
      },
      seconds(30)))
      << daemon.log();

  EXPECT_EQ(sandbox_->Arrivals().size(), requests) << "a rejected batch sent something";
  EXPECT_EQ(sandbox_->Ledger().size(), rows.size());
  EXPECT_FALSE(FileExists(done("copy.summary.json")));
  EXPECT_FALSE(FileExists(done("reuse.summary.json")));
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

// 5 -------------------------------------------------------------------------------------------
TEST_F(DaemonTest, SigtermMidBatchExitsZeroWithinGraceAndRestartFinishesTheBatch) {
  StartSandbox({"--final-after-ms", "50", "--latency-ms", "100"});
  cfg_.max_in_flight = 8;
  cfg_.shutdown_grace = "10s";
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  std::vector<In> rows = UsdRows("TERM", 200);
  DropBatch(spool(), "term", Csv(rows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("created") >= 20; }, seconds(30)))
      << daemon.log();

  auto t0 = std::chrono::steady_clock::now();
  daemon.Signal(SIGTERM);
  auto code = daemon.Wait(seconds(60));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(code.has_value()) << "payoutd did not stop at all:\n" << daemon.log();
  EXPECT_EQ(*code, 0) << daemon.log();
  // Requests in flight take 100 ms: it stops once they are answered, without waiting out the
  // 10 s grace.
  EXPECT_LT(took, seconds(10)) << "SIGTERM waited for the whole shutdown_grace";
  EXPECT_THAT(daemon.log(), Not(HasSubstr("payoutd.grace_expired")));
  EXPECT_FALSE(FileExists(done("term.summary.json")))
      << "the batch finished before SIGTERM; make it slower";
  int64_t created_at_stop = sandbox_->Stat("created");
  EXPECT_LT(created_at_stop, static_cast<int64_t>(rows.size()));

  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  ASSERT_TRUE(WaitDone(daemon, "term", seconds(90)));
  ExpectReports("term", rows, ReadResultsCsv(done("term.results.csv")),
                ReadSummary(done("term.summary.json")));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

// A gateway that refuses every connection: the circuit opens and says so (log, metrics, status),
// SIGTERM still stops the daemon at once, a restart resumes paused, and once the gateway listens
// again every payout is paid once; none is ERROR however long it took.
TEST_F(DaemonTest, GatewayDownAcrossARestartPausesSendingAndFailsNoPayout) {
  StartSandbox({"--final-after-ms", "0"});
  const uint16_t port = sandbox_->port();
  sandbox_->Stop();       // nothing listens on its port now: connection refused
  cfg_.max_attempts = 2;  // refusals beyond it must not end a payout
  cfg_.max_backoff = "500ms";
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  std::vector<In> rows = UsdRows("DOWN", 30);
  DropBatch(spool(), "down", Csv(rows));
  ASSERT_TRUE(WaitFor(
      [&] { return daemon.log().find("gateway.circuit_open") != std::string::npos; }, seconds(30)))
      << daemon.log();
  std::string metrics;
  ASSERT_TRUE(WaitFor(
      [&] {
        metrics = HttpRequest(daemon.metrics_port(), "GET", "/metrics").body;
        return metrics.find("payoutd_gateway_circuit_open 1") != std::string::npos;
      },
      seconds(10)))
      << metrics;
  CommandResult status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = RunPayoutd({"status", "--config", dir_.path() + "/payoutd.yaml"});
        return status.out.find("gateway unreachable since") != std::string::npos;
      },
      seconds(10)))
      << status.out << status.err;
  EXPECT_THAT(status.out, HasSubstr("next probe in"));
  EXPECT_THAT(status.out, HasSubstr("onnect"));  // the cause: curl's "Couldn't connect to server"

  EXPECT_EQ(daemon.Terminate(seconds(10)), 0) << daemon.log();
  EXPECT_FALSE(FileExists(done("down.summary.json")));

  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  EXPECT_THAT(daemon.log(), HasSubstr("restored=true"))
      << "a restart during an outage resumes paused";
  SandboxProcess gateway(
      {"--listen", "127.0.0.1:" + std::to_string(port), "--final-after-ms", "0"});
  ASSERT_TRUE(WaitDone(daemon, "down", seconds(60)));
  ExpectReports("down", rows, ReadResultsCsv(done("down.results.csv")),
                ReadSummary(done("down.summary.json")));
  ExpectLedgerExactlyOnce(rows, gateway);
  EXPECT_THAT(daemon.log(), HasSubstr("gateway.circuit_closed"));
  status = RunPayoutd({"status", "--config", dir_.path() + "/payoutd.yaml"});
  EXPECT_THAT(status.out, HasSubstr("last gateway outage"));
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, ASecondRunOnTheSameStateIsRefusedWithAClearMessage) {
  StartSandbox({"--final-after-ms", "0"});
  const std::string config = WriteConfig();
  DaemonProcess first(config);
  first.Start();
  ASSERT_TRUE(first.WaitReady()) << first.log();
  CommandResult second = RunPayoutd({"run", "--config", config}, seconds(20));
  EXPECT_EQ(second.exit_code, 1) << second.out << second.err;
  EXPECT_THAT(second.err + second.out, HasSubstr("another payoutd"));
  EXPECT_THAT(second.err + second.out, HasSubstr(cfg_.state_path(dir_.path())));
  EXPECT_TRUE(first.running()) << "the first one is unharmed";
  EXPECT_EQ(first.Terminate(), 0) << first.log();
}

// SIGHUP takes a changed rate limit and polling interval at once (as the gateway sees them), and
// keeps the running settings when the new file is broken.
TEST_F(DaemonTest, SighupReloadChangesTheRateAndPollingAtTheGatewayAndRefusesABrokenConfig) {
  StartSandbox({"--final-after-ms", "600000"});  // payouts stay PENDING: polls go on
  cfg_.requests_per_second = 5;
  cfg_.burst = 1;
  cfg_.polling_initial_delay = "100ms";
  cfg_.polling_max_interval = "100ms";
  const std::string config = WriteConfig();
  DaemonProcess daemon(config);
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  const int kRows = 20;
  DropBatch(spool(), "hup", Csv(UsdRows("HUP", kRows)));
  auto last_us = [&] {
    auto a = sandbox_->Arrivals();
    return a.empty() ? int64_t{0} : a.back().t_us;
  };
  // GETs per second in [from, from + 3 s), and the shortest gap between two GETs of one payout.
  struct Window {
    double gets_per_second = 0;
    int64_t shortest_gap_us = INT64_MAX;
  };
  auto measure = [&](int64_t from) {
    EXPECT_TRUE(WaitFor([&] { return last_us() >= from + 3'000'000; }, seconds(30)));
    Window w;
    std::map<std::string, int64_t> last;
    int64_t gets = 0;
    for (const auto& a : sandbox_->Arrivals()) {
      if (a.method != "GET" || a.t_us < from || a.t_us >= from + 3'000'000) continue;
      ++gets;
      if (auto it = last.find(a.id); it != last.end())
        w.shortest_gap_us = std::min(w.shortest_gap_us, a.t_us - it->second);
      last[a.id] = a.t_us;
    }
    w.gets_per_second = gets / 3.0;
    return w;
  };
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Ledger().size() == kRows; }, seconds(30)))
      << daemon.log();
  const Window slow = measure(last_us());
  EXPECT_LE(slow.gets_per_second, 5 + 1) << "the 5/s limit holds before the reload";

  // 50/s and a poll every 2 s per payout: 20 payouts make 10 GETs a second, under the new limit.
  cfg_.requests_per_second = 50;
  cfg_.burst = 5;
  cfg_.polling_initial_delay = "2s";
  cfg_.polling_max_interval = "2s";
  WriteConfig();
  daemon.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return daemon.log().find("config.reloaded") != std::string::npos; },
                      seconds(10)));
  const Window reloaded = measure(last_us() + 2'500'000);  // after the polls already scheduled
  EXPECT_GT(reloaded.gets_per_second, 5 + 1) << "the new rate limit did not take effect";
  EXPECT_LE(reloaded.gets_per_second, kRows / 2.0 + 2)
      << "the new polling interval did not take effect";
  EXPECT_GE(reloaded.shortest_gap_us, 1'500'000) << "a payout was polled sooner than the new 2 s";

  WriteFile(config, "limits:\n  requests_per_second: [not a number\n");
  daemon.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(
      [&] { return daemon.log().find("config.reload_failed") != std::string::npos; }, seconds(10)));
  const Window kept = measure(last_us());
  EXPECT_GE(kept.shortest_gap_us, 1'500'000) << "a broken file must keep the running settings";
  EXPECT_GT(kept.gets_per_second, 5 + 1);
  EXPECT_TRUE(daemon.running());
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, SigtermWithSlowRequestsExitsZeroWhenGraceExpires) {
  StartSandbox({"--final-after-ms", "0", "--latency-ms", "20000"});
  cfg_.gateway_timeout = "30s";
  cfg_.shutdown_grace = "500ms";
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  DropBatch(spool(), "slow", Csv(UsdRows("SLOW", 20)));
  // Requests are in flight once the sandbox has seen them arrive (it answers 20 s later).
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= 1; }, seconds(30))) << daemon.log();
  auto t0 = std::chrono::steady_clock::now();
  daemon.Signal(SIGTERM);
  auto code = daemon.Wait(seconds(60));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(code.has_value()) << "payoutd did not stop at all:\n" << daemon.log();
  EXPECT_EQ(*code, 0) << daemon.log();
  // The requests in flight would take 20 s: it waits the 500 ms grace for them, then stops.
  EXPECT_GE(took, milliseconds(500)) << "it did not wait for the requests in flight";
  EXPECT_LT(took, seconds(5)) << "it waited for the slow requests, past shutdown_grace";
  EXPECT_THAT(daemon.log(), HasSubstr("payoutd.grace_expired"));
}

TEST_F(DaemonTest, SigtermAsTheReportAppearsStillLogsTheBatchAsDone) {
  StartSandbox({"--final-after-ms", "0"});
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  // The reports are written on the store thread and batch.done is logged afterwards on the io
  // thread: a SIGTERM in between must wait for that. inotify sends it the moment summary.json is
  // renamed into done/, ahead of the input's move and the state's commit that follow it. The drain
  // itself takes a pump (10 ms), so this fails only when those fsyncs are slower than that: it
  // caught the bug on a loaded machine (ops_test lost the line in 6 runs of 8), not on an idle one.
  int watch = ::inotify_init1(IN_CLOEXEC);
  ASSERT_GE(watch, 0);
  ASSERT_GE(::inotify_add_watch(watch, (spool() + "/done").c_str(), IN_MOVED_TO | IN_CLOSE_WRITE),
            0);
  DropBatch(spool(), "quick", Csv(UsdRows("QUICK", 20)));
  bool signalled = false;
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  alignas(inotify_event) char buf[4096];
  while (!signalled && std::chrono::steady_clock::now() < deadline) {
    pollfd p{watch, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(watch, buf, sizeof buf);
    for (ssize_t off = 0; off < n && !signalled;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
      if (e->len && std::string(e->name) == "quick.summary.json") {
        daemon.Signal(SIGTERM);
        signalled = true;
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
  }
  ::close(watch);
  ASSERT_TRUE(signalled) << "no summary in time:\n" << daemon.log();
  auto code = daemon.Wait(seconds(10));
  ASSERT_TRUE(code.has_value()) << daemon.log();
  EXPECT_EQ(*code, 0) << daemon.log();
  EXPECT_THAT(daemon.log(), HasSubstr("batch.done"));
  EXPECT_TRUE(FileExists(done("quick.csv"))) << "the input moves to done/ with its reports";
}

TEST_F(DaemonTest, SameBatchNameDroppedWhileInProgressIsRejectedAndTheFirstIsPaid) {
  StartSandbox({"--final-after-ms", "0", "--latency-ms", "50"});
  cfg_.max_in_flight = 2;
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  std::vector<In> rows = UsdRows("SAME", 40);
  DropBatch(spool(), "same", Csv(rows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("created") >= 1; }, seconds(30))) << daemon.log();
  DropBatch(spool(), "same", Csv(UsdRows("SAME-NEW", 3)));
  ASSERT_TRUE(WaitRejected(daemon, "same", seconds(30)));
  EXPECT_THAT(ReadFile(rejected("same.errors.csv")), HasSubstr("same"));
  EXPECT_EQ(ReadFile(rejected("same.csv")), Csv(UsdRows("SAME-NEW", 3)));
  // The counter moves just after the files land (and their folders are fsynced): wait for it.
  std::string metrics;
  EXPECT_TRUE(WaitFor(
      [&] {
        metrics = HttpRequest(daemon.metrics_port(), "GET", "/metrics").body;
        return metrics.find("payoutd_batches_total{result=\"rejected\"} 1\n") != std::string::npos;
      },
      seconds(10)))
      << "the refused file counts as a rejected batch:\n"
      << metrics;
  ASSERT_TRUE(WaitDone(daemon, "same", seconds(60)));
  EXPECT_EQ(sandbox_->Ledger().count("SAME-NEW-1"), 0u) << "the second file was paid";
  ExpectReports("same", rows, ReadResultsCsv(done("same.results.csv")),
                ReadSummary(done("same.summary.json")));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  ASSERT_TRUE(WaitForFile(done("same.csv"), seconds(10)));
  EXPECT_EQ(ReadFile(done("same.csv")), Csv(rows));
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, IdHeldByGatewayWithAnotherBodyIsErrorAndWithTheSameBodyIsSuccess) {
  StartSandbox({"--final-after-ms", "0"});
  // Someone else created CF-1 with another amount; CF-2 exists with exactly our body (a payout
  // whose 201 we never saw, say).
  HttpReply pre = sandbox_->Post("CF-1", PayoutBody("1", "USD", "11223344"));
  ASSERT_EQ(pre.status, 201) << pre.body;
  ASSERT_EQ(sandbox_->Post("CF-2", PayoutBody("3", "USD", "55667788")).status, 201);
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  // PayoutBody's fixed fields: account name "Test account", BANK_TRANSFER, customer@test.com.
  DropBatch(spool(), "conflict",
            "id,amount,currency,account_number,account_name,operator_code,email\n"
            "CF-1,2.00,USD,11223344,Test account,BNK_000,customer@test.com\n"
            "CF-2,3.00,USD,55667788,Test account,BNK_000,customer@test.com\n"
            "CF-3,4.00,USD,99887766,Test account,BNK_000,customer@test.com\n");
  ASSERT_TRUE(WaitDone(daemon, "conflict", seconds(60)));
  auto results = ReadResultsCsv(done("conflict.results.csv"));
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].state, "ERROR");
  EXPECT_THAT(results[0].error, HasSubstr("conflict"));
  EXPECT_EQ(results[1].state, "SUCCESS") << results[1].error;
  EXPECT_EQ(results[2].state, "SUCCESS") << results[2].error;
  Summary summary = ReadSummary(done("conflict.summary.json"));
  EXPECT_EQ(summary.states, (std::map<std::string, int64_t>{{"ERROR", 1}, {"SUCCESS", 2}}));
  EXPECT_EQ(summary.totals.at("USD").requested, "9.00");
  EXPECT_EQ(summary.totals.at("USD").succeeded, "7.00");
  EXPECT_EQ(summary.totals.at("USD").failed, "2.00");
  auto ledger = sandbox_->Ledger();
  EXPECT_EQ(ledger.at("CF-1").amount_minor, 100) << "the gateway's payout was not replaced";
  EXPECT_EQ(ledger.at("CF-2").distinct_bodies, 1);
  EXPECT_EQ(ledger.at("CF-3").distinct_bodies, 1);
  EXPECT_EQ(sandbox_->Stat("created"), 3);
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, ValidateRejectsBatchesOverTheConfiguredCaps) {
  StartSandbox({"--final-after-ms", "0"});
  cfg_.extra_yaml =
      "batches:\n  max_rows: 3\n  max_amount: {USD: \"100.00\"}\n  max_total: {JPY: \"1000\"}\n";
  std::string config = WriteConfig();
  auto validate = [&](const std::string& name, const std::string& csv) {
    WriteFile(dir_.path() + "/" + name, csv);
    return RunPayoutd({"validate", "--config", config, dir_.path() + "/" + name});
  };
  const std::string header = "id,amount,currency,account_number,account_name,operator_code\n";
  CommandResult r = validate("ok.csv", header +
                                           "C-1,100.00,USD,A1,X,BNK_000\nC-2,600,JPY,A2,Y,BNK_000\n"
                                           "C-3,400,JPY,A3,Z,BNK_000\n");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;

  r = validate("rows.csv", header +
                               "C-1,1.00,USD,A1,X,BNK_000\nC-2,1.00,USD,A2,X,BNK_000\n"
                               "C-3,1.00,USD,A3,X,BNK_000\nC-4,1.00,USD,A4,X,BNK_000\n");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("max_rows"));

  r = validate("amount.csv", header + "C-1,100.01,USD,A1,X,BNK_000\nC-2,5.00,USD,A2,X,BNK_000\n");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("2,amount,"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("\n3,")));

  r = validate("total.csv", header + "C-1,600,JPY,A1,X,BNK_000\nC-2,401,JPY,A2,X,BNK_000\n");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("max_total"));
  EXPECT_EQ(sandbox_->Arrivals().size(), 0u);
}

// 6 -------------------------------------------------------------------------------------------
TEST_F(DaemonTest, ProcessExitsZeroThreeOrFourAndWritesResultsOrErrors) {
  StartSandbox({"--final-after-ms", "0"});
  std::string config = WriteConfig();
  std::string out = dir_.path() + "/out";

  std::vector<In> ok_rows = UsdRows("PROC-OK", 5);
  ok_rows[3].op = "BNK_000";
  for (auto& r : ok_rows) r.account = "US00000044";
  WriteFile(dir_.path() + "/allgood.csv", Csv(ok_rows));
  CommandResult r =
      RunPayoutd({"process", "--config", config, dir_.path() + "/allgood.csv", "--out", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(FileExists(out + "/allgood.summary.json")) << r.err;
  ExpectReports("allgood", ok_rows, ReadResultsCsv(out + "/allgood.results.csv"),
                ReadSummary(out + "/allgood.summary.json"));
  EXPECT_THAT(r.out, HasSubstr("\"batch\": \"allgood\""));

  std::vector<In> some_fail = UsdRows("PROC-FAIL", 5);
  some_fail[1].account = "US00000013";
  WriteFile(dir_.path() + "/somefail.csv", Csv(some_fail));
  r = RunPayoutd({"process", "--config", config, dir_.path() + "/somefail.csv", "--out", out});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  ASSERT_TRUE(FileExists(out + "/somefail.results.csv")) << r.err;
  ExpectReports("somefail", some_fail, ReadResultsCsv(out + "/somefail.results.csv"),
                ReadSummary(out + "/somefail.summary.json"));

  WriteFile(dir_.path() + "/invalid.csv",
            "id,amount,currency,account_number,account_name,operator_code\nPROC-BAD-1,abc,USD,US1,"
            "X,BNK_000\n");
  r = RunPayoutd({"process", "--config", config, dir_.path() + "/invalid.csv", "--out", out});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  ASSERT_TRUE(FileExists(out + "/invalid.errors.csv"));
  auto errors = ReadErrorsCsv(out + "/invalid.errors.csv");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 2);
  EXPECT_EQ(errors[0].column, "amount");

  // The same finished batch again is a duplicate (docs/batches.md): exit 4, nothing sent again.
  r = RunPayoutd(
      {"process", "--config", config, dir_.path() + "/allgood.csv", "--out", out + "/again"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.out, HasSubstr("already processed"));
  EXPECT_TRUE(FileExists(out + "/again/allgood.errors.csv"));

  std::vector<In> both = ok_rows;
  both.insert(both.end(), some_fail.begin(), some_fail.end());
  ExpectLedgerExactlyOnce(both, *sandbox_);
}

TEST_F(DaemonTest, StatusShowsTheRunningBatchAndItsCounts) {
  StartSandbox({"--final-after-ms", "0", "--latency-ms", "100"});
  cfg_.max_in_flight = 4;
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  std::vector<In> rows = UsdRows("STAT", 300);
  DropBatch(spool(), "stat", Csv(rows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("created") >= 5; }, seconds(30))) << daemon.log();

  CommandResult r = RunPayoutd({"status", "--config", daemon.config_path()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("batch stat (active), 300 payouts"));
  // "states: SUCCESS=a FAILED=b REJECTED=c ERROR=d pending=e": they add up to the batch.
  size_t at = r.out.find("states:");
  ASSERT_NE(at, std::string::npos) << r.out;
  int64_t sum = 0;
  for (const char* key : {"SUCCESS=", "FAILED=", "REJECTED=", "ERROR=", "pending="}) {
    size_t k = r.out.find(key, at);
    ASSERT_NE(k, std::string::npos) << key << " in " << r.out;
    sum += std::atoll(r.out.c_str() + k + std::strlen(key));
  }
  EXPECT_EQ(sum, 300) << r.out;
  EXPECT_THAT(r.out, HasSubstr("USD: requested "));
  EXPECT_FALSE(FileExists(done("stat.summary.json"))) << "the batch finished before status ran";

  CommandResult one = RunPayoutd({"status", "--config", daemon.config_path(), "stat"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("batch stat (active)"));
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

TEST_F(DaemonTest, ValidateCheckAndUsageExitCodes) {
  StartSandbox({"--final-after-ms", "0"});
  std::string config = WriteConfig();

  WriteFile(dir_.path() + "/good.csv", Csv(UsdRows("VAL", 3)));
  CommandResult r = RunPayoutd({"validate", "--config", config, dir_.path() + "/good.csv"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("valid, 3 payouts"));

  WriteFile(dir_.path() + "/bad.csv",
            "id,amount,currency,account_number,account_name,operator_code\nV-1,1.00,USD,A1,X,BNK_"
            "000\nV-2,1.00,ZZZ,A2,Y,BNK_000\n");
  r = RunPayoutd({"validate", "--config", config, dir_.path() + "/bad.csv"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3,currency,"));
  EXPECT_EQ(sandbox_->Arrivals().size(), 0u) << "validate sent something";

  r = RunPayoutd({"check", "--config", config});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("configuration OK"));
  EXPECT_THAT(r.out + r.err, ::testing::Not(HasSubstr(cfg_.secret))) << "check printed the secret";

  DaemonConfig bad = cfg_;
  bad.extra_yaml = "no_such_key: 1\n";
  std::string bad_config = bad.Write(dir_.path(), "bad.yaml");
  r = RunPayoutd({"check", "--config", bad_config});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no_such_key"));

  r = RunPayoutd({"check", "--config", config, "--no-such-flag"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--no-such-flag"));
  r = RunPayoutd({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace payoutd::testing
