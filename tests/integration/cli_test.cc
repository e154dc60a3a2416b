// The payoutd command line as an operator meets it (docs/cli.md), with the real binary: the
// metrics listener on IPv6 and when its port is taken, `check` of an address that can never
// work, `validate` of a file it cannot read, `validate` and `status` without the secret, and
// `status --json` / `status --watch` following a batch that a running daemon pays.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// `n` USD payouts the sandbox pays.
std::string Csv(const std::string& prefix, int n) {
  std::string s = "id,amount,currency,account_number,account_name,operator_code\n";
  for (int i = 1; i <= n; ++i) {
    s += prefix + "-" + std::to_string(i) + "," + std::to_string(i) + ".25,USD,DE" +
         std::to_string(100000 + i) + "44,Payee " + std::to_string(i) + ",BNK_000\n";
  }
  return s;
}

bool HaveIpv6Loopback() {
  asio::io_context io;
  tcp::acceptor a(io);
  beast::error_code ec;
  a.open(tcp::v6(), ec);
  if (!ec) a.bind(tcp::endpoint(asio::ip::make_address("::1"), 0), ec);
  return !ec;
}

bool HavePromtool() {
  return std::system("command -v promtool > /dev/null 2>&1") == 0;
}

// A GET over a new connection; status 0 when no answer came.
std::pair<int, std::string> Get(const std::string& host, int port, const std::string& target) {
  asio::io_context io;
  tcp::socket socket(io);
  beast::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address(host), static_cast<uint16_t>(port)), ec);
  if (ec) return {0, ec.message()};
  http::request<http::empty_body> req(http::verb::get, target, 11);
  req.set(http::field::host, "localhost");
  http::write(socket, req, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res, ec);
  if (ec) return {0, ec.message()};
  return {static_cast<int>(res.result_int()), res.body()};
}

// `payoutd ARGS` running in the background, its stdout in a file (not a terminal).
class Background {
 public:
  Background(const std::string& dir, const std::vector<std::string>& args)
      : out_path_(dir + "/background.out") {
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err =
        ::open((dir + "/background.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    pid_ = detail::Spawn(args, out, err);
    ::close(out);
    ::close(err);
  }
  ~Background() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      detail::WaitPid(pid_, seconds(10));
    }
  }
  std::string out() const { return ReadFile(out_path_); }
  // Sends `sig` and waits for the exit code (nullopt if it did not end in time).
  std::optional<int> Stop(int sig, milliseconds timeout) {
    ::kill(pid_, sig);
    std::optional<int> code = detail::WaitPid(pid_, timeout);
    if (code) pid_ = -1;
    return code;
  }

 private:
  std::string out_path_;
  pid_t pid_ = -1;
};

class CliTest : public ::testing::Test {
 protected:
  void StartSandbox(std::vector<std::string> args) {
    sandbox_ = std::make_unique<SandboxProcess>(std::move(args));
    cfg_ = DaemonConfig::For(*sandbox_);
  }
  std::string WriteConfig() { return cfg_.Write(dir_.path()); }
  std::string spool() const { return cfg_.spool_dir(dir_.path()); }

  TempDir dir_;
  std::unique_ptr<SandboxProcess> sandbox_;
  DaemonConfig cfg_;  // no sandbox: a gateway nobody answers at; these tests never reach it
};

TEST_F(CliTest, RunExitsTwoNamingMetricsListenWhenItsPortIsTaken) {
  asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string address = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  cfg_.base_url = "http://127.0.0.1:9";
  cfg_.metrics_listen = address;
  CommandResult r = RunPayoutd({"run", "--config", WriteConfig()}, seconds(30));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("startup.failed"), HasSubstr("metrics.listen"),
                           HasSubstr(address), HasSubstr("in use")));
}

TEST_F(CliTest, RunServesMetricsOnIpv6ThatPassPromtoolAndStopsPromptly) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  StartSandbox({"--final-after-ms", "0"});
  cfg_.metrics_listen = "\"[::1]:0\"";  // quoted: a bare [ starts a YAML list
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  ASSERT_GT(daemon.metrics_port(), 0) << daemon.log();
  DropBatch(spool(), "six", Csv("V6", 6));
  ASSERT_TRUE(WaitForFile(spool() + "/done/six.summary.json", seconds(60))) << daemon.log();

  auto [status, body] = Get("::1", daemon.metrics_port(), "/metrics");
  ASSERT_EQ(status, 200) << body;
  EXPECT_THAT(body, HasSubstr("payoutd_payouts_total{state=\"SUCCESS\"} 6"));
  EXPECT_EQ(Get("::1", daemon.metrics_port(), "/other").first, 404);
  if (HavePromtool()) {
    WriteFile(dir_.path() + "/scrape.txt", body);
    std::string cmd = "promtool check metrics < '" + dir_.path() + "/scrape.txt' > '" +
                      dir_.path() + "/promtool.out' 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << ReadFile(dir_.path() + "/promtool.out");
    EXPECT_EQ(ReadFile(dir_.path() + "/promtool.out"), "") << "promtool lint findings";
  }

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(daemon.Terminate(seconds(20)), 0) << daemon.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2))
      << "stopping took the old civetweb quantum or more";
}

TEST_F(CliTest, CheckRefusesAMetricsAddressThatCanNeverWork) {
  cfg_.base_url = "http://127.0.0.1:9";
  cfg_.metrics_listen = "no-such-host.invalid:9464";
  CommandResult r = RunPayoutd({"check", "--config", WriteConfig()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("metrics.listen: no-such-host.invalid:9464 can never be listened"));
  cfg_.metrics_listen = "127.0.0.1:0";
  r = RunPayoutd({"check", "--config", WriteConfig()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliTest, ValidateOfAFileItCannotReadExitsTwoWithThePathAndTheReason) {
  cfg_.base_url = "http://127.0.0.1:9";
  const std::string config = WriteConfig();
  const std::string missing = dir_.path() + "/missing.csv";
  CommandResult r = RunPayoutd({"validate", "--config", config, missing});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read batch " + missing + ": No such file or directory"));
  EXPECT_EQ(r.out, "");

  r = RunPayoutd({"validate", "--config", config, dir_.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(dir_.path() + ": not a regular file"));

  if (::geteuid() != 0) {  // root reads a file whatever its mode
    const std::string locked = dir_.path() + "/locked.csv";
    WriteFile(locked, Csv("L", 1));
    ::chmod(locked.c_str(), 0);
    r = RunPayoutd({"validate", "--config", config, locked});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr(locked + ": Permission denied"));
  }
  r = RunPayoutd({"process", "--config", config, missing});
  EXPECT_EQ(r.exit_code, 2) << "process, the same";
}

TEST_F(CliTest, ValidateAndStatusNeedNoSecretButCheckDoes) {
  cfg_.base_url = "http://127.0.0.1:9";
  const std::string config = WriteConfig();
  ASSERT_EQ(::unlink((dir_.path() + "/secret.key").c_str()), 0);
  WriteFile(dir_.path() + "/ok.csv", Csv("S", 2));
  CommandResult r = RunPayoutd({"validate", "--config", config, dir_.path() + "/ok.csv"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("valid, 2 payouts"));
  r = RunPayoutd({"status", "--config", config});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("no batches yet"));
  r = RunPayoutd({"check", "--config", config});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("auth.secret_file"));
}

TEST_F(CliTest, StatusJsonAndWatchFollowABatchTheDaemonPays) {
  StartSandbox({"--final-after-ms", "0", "--latency-ms", "40"});
  cfg_.max_in_flight = 2;
  cfg_.settle = "0s";  // DropBatch renames a complete file in
  DaemonProcess daemon(WriteConfig());
  daemon.Start();
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  Background watch(dir_.path(),
                   {"status", "--config", daemon.config_path(), "--watch", "--interval", "200ms"});
  ASSERT_TRUE(WaitFor([&] { return watch.out().find("no batch in progress") != std::string::npos; },
                      seconds(20)))
      << watch.out();

  constexpr int kRows = 120;
  DropBatch(spool(), "watched", Csv("W", kRows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("created") >= 10; }, seconds(30)))
      << daemon.log();
  CommandResult r = RunPayoutd({"status", "--config", daemon.config_path(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.out).get(doc), simdjson::SUCCESS) << r.out;
  simdjson::dom::element b = doc["batches"].at(0);
  EXPECT_EQ(std::string_view(b["id"]), "watched");
  EXPECT_EQ(int64_t(b["rows"]), kRows);
  int64_t sum = int64_t(b["pending"]);
  for (const char* s : {"SUCCESS", "FAILED", "REJECTED", "ERROR", "CANCELLED"})
    sum += int64_t(b["states"][s]);
  EXPECT_EQ(sum, kRows) << r.out;

  ASSERT_TRUE(WaitForFile(spool() + "/done/watched.summary.json", seconds(60))) << daemon.log();
  ASSERT_TRUE(WaitFor([&] { return watch.out().find("watched reported") != std::string::npos; },
                      seconds(20)))
      << watch.out();
  EXPECT_EQ(watch.Stop(SIGINT, seconds(10)), 0);

  const std::string out = watch.out();
  EXPECT_THAT(out, HasSubstr(" watched reported " + std::to_string(kRows) + "/" +
                             std::to_string(kRows) + " 100.0% SUCCESS=" + std::to_string(kRows)));
  EXPECT_THAT(out, Not(HasSubstr("\x1b"))) << "no terminal codes when not on a terminal";
  // While it was being paid, some line had a measured pace ("12.5/s left 8s").
  bool paced = false;
  for (size_t at = out.find(" watched active "); at != std::string::npos;
       at = out.find(" watched active ", at + 1)) {
    std::string line = out.substr(at, out.find('\n', at) - at);
    paced = paced || (line.find("/s left") != std::string::npos &&
                      line.find(" -/s left") == std::string::npos);
  }
  EXPECT_TRUE(paced) << out;
  CommandResult unknown =
      RunPayoutd({"status", "--config", daemon.config_path(), "--watch", "nosuch"}, seconds(10));
  EXPECT_EQ(unknown.exit_code, 1) << "an unknown batch is not watched forever";
  EXPECT_THAT(unknown.err, HasSubstr("batch nosuch: no such batch"));
  EXPECT_EQ(daemon.Terminate(), 0) << daemon.log();
}

}  // namespace
}  // namespace payoutd::testing
