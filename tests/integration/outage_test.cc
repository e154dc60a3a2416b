// Gateway outages end to end (issue 14), real processes: payoutd run, with the limits and retry
// settings it ships with, pays a batch of 300 while the gateway goes away for minutes (refusing
// connections, answering 503, or its process stopped), and no payout may end ERROR for it: every
// payout is created once with one body and reported as the gateway holds it. Each test also
// prints how long after the gateway came back the batch was moving again, for our notes.
//
// Each test takes 1 to 6 minutes (ctest label "outage"). They run in parallel with each other
// and with the rest: each has its own temp folder, and the sandbox and metrics ports are
// OS-chosen.
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr int kRows = 300;
// The outage starts once this many payouts are created: the batch is under way, with 240 POSTs
// still to send (five seconds' worth at the shipped 50 requests a second).
constexpr int64_t kCreatedBeforeOutage = 60;
const std::string kBatch = "outage";

struct In {
  std::string id, amount, account;
};

bool FailsBySandboxRule(const std::string& account) {
  return account.size() >= 2 && account.compare(account.size() - 2, 2, "13") == 0;
}

// kRows USD payouts; every 25th goes to an account ending in 13, which the sandbox fails.
std::vector<In> Rows() {
  std::vector<In> rows;
  for (int i = 1; i <= kRows; ++i) {
    rows.push_back({"OUT-" + std::to_string(i),
                    std::to_string(1 + i % 500) + "." + std::to_string(10 + i % 90),
                    "DE" + std::to_string(200000 + i) + (i % 25 == 0 ? "13" : "44")});
  }
  return rows;
}

std::string Csv(const std::vector<In>& rows) {
  std::string s = "id,amount,currency,account_number,account_name,operator_code\n";
  for (const In& r : rows) {
    s += r.id + "," + r.amount + ",USD," + r.account + ",Payee " + r.id + ",BNK_000\n";
  }
  return s;
}

std::string Tail(const std::string& text, size_t n = 3000) {
  return text.substr(text.size() > n ? text.size() - n : 0);
}

class OutageTest : public ::testing::Test {
 protected:
  // The sandbox, and payoutd with the shipped limits and retry settings (config/payoutd.yaml),
  // paying the batch; returns once kCreatedBeforeOutage payouts are created. Not a lower rate:
  // at 10 requests a second the limiter spreads a payout's 8 attempts over more than two
  // minutes, and a daemon that spends attempts on an outage would pass by luck.
  void StartPayingBatch() {
    sandbox_ =
        std::make_unique<SandboxProcess>(std::vector<std::string>{"--final-after-ms", "1500"});
    cfg_ = DaemonConfig::For(*sandbox_);
    cfg_.requests_per_second = 50;
    cfg_.burst = 10;
    cfg_.max_in_flight = 64;
    cfg_.max_attempts = 8;
    cfg_.initial_backoff = "500ms";
    cfg_.max_backoff = "60s";
    // The shipped polling: the first GET, 2 s after the POST, finds the payout final.
    cfg_.polling_initial_delay = "2s";
    cfg_.polling_max_interval = "60s";
    cfg_.gateway_timeout = "5s";
    cfg_.connect_timeout = "2s";
    daemon_ = std::make_unique<DaemonProcess>(cfg_.Write(dir_.path()));
    daemon_->Start();
    ASSERT_TRUE(daemon_->WaitReady()) << daemon_->log();

    rows_ = Rows();
    DropBatch(cfg_.spool_dir(dir_.path()), kBatch, Csv(rows_));
    int64_t created = 0;
    auto enough = [&] { return (created = sandbox_->Stat("created")) >= kCreatedBeforeOutage; };
    ASSERT_TRUE(WaitFor(enough, minutes(2))) << "only " << created << " payouts created; log:\n"
                                             << Tail(daemon_->log());
    // Else the outage would prove nothing: the batch must still need the gateway.
    ASSERT_LT(created, kRows);
  }

  std::string done(const std::string& name) const {
    return cfg_.spool_dir(dir_.path()) + "/done/" + name;
  }

  // After an outage that ends at `outage_end` (outage_end_t_us on the sandbox's arrivals clock):
  // the batch is reported, and every payout was paid once and reported as the gateway holds it.
  void ExpectEveryPayoutPaidOnce(const std::string& label, steady_clock::time_point outage_end,
                                 int64_t outage_end_t_us) {
    // The input arrives in done/ last, after its reports (README).
    auto timeout =
        std::chrono::duration_cast<milliseconds>(outage_end + minutes(4) - steady_clock::now());
    bool reported = WaitForFile(done(kBatch + ".csv"), timeout);
    PrintRecovery(label, outage_end_t_us);
    ASSERT_TRUE(reported) << "the batch was not reported within 4 minutes of the outage; "
                          << sandbox_->Stat("created") << " payouts created; log:\n"
                          << Tail(daemon_->log());

    std::vector<ResultRow> results = ReadResultsCsv(done(kBatch + ".results.csv"));
    std::map<std::string, SandboxLedgerEntry> ledger = sandbox_->Ledger();
    ASSERT_EQ(results.size(), rows_.size());
    int errors = 0, wrong = 0;
    std::ostringstream error_examples, wrong_examples;
    for (size_t i = 0; i < rows_.size(); ++i) {
      const ResultRow& r = results[i];
      auto it = ledger.find(rows_[i].id);
      std::string truth = it == ledger.end() ? "<not at the gateway>" : it->second.status;
      std::string want = FailsBySandboxRule(rows_[i].account) ? "FAILED" : "SUCCESS";
      if (r.state == "ERROR" && ++errors <= 5) {
        error_examples << "\n  " << r.id << " (attempts " << r.attempts << "): " << r.error;
      }
      if ((r.id != rows_[i].id || r.state != truth || truth != want) && ++wrong <= 10) {
        wrong_examples << "\n  " << r.id << ": reported " << r.state << ", gateway holds " << truth
                       << ", want " << want;
      }
    }
    if (errors > 0) {
      std::cout << "[outage] " << label << ": " << errors << " of " << kRows << " payouts ERROR"
                << std::endl;
    }
    EXPECT_EQ(errors, 0) << "payouts given up during the outage, e.g." << error_examples.str();
    EXPECT_EQ(wrong, 0) << "reported states that differ from the gateway's:"
                        << wrong_examples.str();

    // Exactly once: the gateway holds exactly the batch, each payout created once with one body.
    std::set<std::string> want_ids;
    for (const In& r : rows_) want_ids.insert(r.id);
    std::vector<std::string> missing, extra;
    for (const std::string& id : want_ids) {
      if (!ledger.count(id)) missing.push_back(id);
    }
    for (const auto& [id, e] : ledger) {
      if (!want_ids.count(id)) extra.push_back(id);
    }
    EXPECT_TRUE(missing.empty()) << missing.size() << " of the batch's payouts never reached the "
                                 << "gateway, e.g. " << missing.front();
    EXPECT_TRUE(extra.empty()) << "the gateway holds " << extra.size() << " payouts outside the "
                               << "batch, e.g. " << extra.front();
    int bad = 0;
    for (const auto& [id, e] : ledger) {
      if ((!e.created || e.distinct_bodies != 1) && ++bad <= 10) {
        ADD_FAILURE() << id << ": created=" << e.created << " distinct_bodies=" << e.distinct_bodies
                      << " posts_received=" << e.posts_received;
      }
    }
    EXPECT_EQ(sandbox_->Stat("created"), kRows);
    EXPECT_EQ(sandbox_->Stat("conflicts"), 0);
    EXPECT_EQ(daemon_->Terminate(), 0) << Tail(daemon_->log());
  }

  // Prints how long after the outage's end the first request was answered 2xx (one a client
  // still waited for: the gateway also answers requests that timed out long ago, once it runs).
  void PrintRecovery(const std::string& label, int64_t outage_end_t_us) {
    std::optional<int64_t> first;
    int64_t abandoned = 0;
    for (const SandboxArrival& a : sandbox_->Arrivals()) {
      abandoned += a.abandoned;
      if (!first && a.t_us >= outage_end_t_us && a.status / 100 == 2 && !a.abandoned) {
        first = a.t_us;
      }
    }
    std::cout << "[outage] " << label << ": ";
    if (first) {
      std::cout << "moving again " << std::fixed << std::setprecision(1)
                << static_cast<double>(*first - outage_end_t_us) / 1e6
                << " s after the gateway came back";
    } else {
      std::cout << "no request answered 2xx after the gateway came back";
    }
    if (abandoned > 0) {
      std::cout << " (" << abandoned << " requests handled after their client gave up)";
    }
    std::cout << std::endl;
  }

  TempDir dir_;
  std::unique_ptr<SandboxProcess> sandbox_;
  DaemonConfig cfg_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::vector<In> rows_;
};

TEST_F(OutageTest, GatewayRefusingConnectionsForTwoMinutesFailsNoPayout) {
  ASSERT_NO_FATAL_FAILURE(StartPayingBatch());
  SandboxOutage outage = sandbox_->StartOutage("refuse", minutes(2));
  auto end = steady_clock::now() + minutes(2);
  EXPECT_TRUE(WaitFor([&] { return !TcpConnects(sandbox_->port()); }, seconds(5)))
      << "the sandbox still accepts connections";
  // The sandbox listens again by itself when the two minutes are over.
  ExpectEveryPayoutPaidOnce("refuse 120s", end, outage.end_t_us);
}

TEST_F(OutageTest, GatewayAnswering503ForTwoMinutesFailsNoPayout) {
  ASSERT_NO_FATAL_FAILURE(StartPayingBatch());
  SandboxOutage outage = sandbox_->StartOutage("503", minutes(2));
  ExpectEveryPayoutPaidOnce("503 120s", steady_clock::now() + minutes(2), outage.end_t_us);
  EXPECT_GT(sandbox_->Stat("outage_503"), 0) << "the outage met no request";
}

TEST_F(OutageTest, GatewayProcessStoppedForAMinuteFailsNoPayout) {
  ASSERT_NO_FATAL_FAILURE(StartPayingBatch());
  sandbox_->ArrivalTimeUs(steady_clock::now());  // asks the sandbox's clock while it answers
  sandbox_->Freeze();
  // The outage itself lasts a minute; nothing to wait for meanwhile.
  std::this_thread::sleep_for(minutes(1));
  sandbox_->Thaw();
  auto end = steady_clock::now();
  ExpectEveryPayoutPaidOnce("SIGSTOP 60s", end, sandbox_->ArrivalTimeUs(end));
}

}  // namespace
}  // namespace payoutd::testing
