// The metrics endpoint as Prometheus sees it (scraped over HTTP, checked by promtool), and the
// sd_notify messages as systemd sees them (datagrams on NOTIFY_SOCKET).
#include "daemon/metrics.h"
#include "daemon/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace payoutd {
namespace {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

struct Scrape {
  int status = 0;
  std::string content_type;
  std::string body;
};

// A blocking GET of http://127.0.0.1:<port><target>.
Scrape Get(int port, const std::string& target) {
  boost::asio::io_context io;
  tcp::socket socket(io);
  socket.connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
  http::request<http::empty_body> req(http::verb::get, target, 11);
  req.set(http::field::host, "127.0.0.1");
  http::write(socket, req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_both, ec);
  return {static_cast<int>(res.result_int()), std::string(res[http::field::content_type]),
          res.body()};
}

// The value of the sample written exactly as `series` (name plus labels in the exposition's
// order, labels sorted by name), or nullopt when absent.
std::optional<double> Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "payoutd-metrics-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult RunWithStdin(const std::string& command, const std::string& input,
                           const TempDir& dir) {
  auto in = dir.path() / "stdin.txt";
  auto out = dir.path() / "output.txt";
  std::ofstream(in) << input;
  int rc =
      std::system((command + " < '" + in.string() + "' > '" + out.string() + "' 2>&1").c_str());
  std::ifstream f(out);
  std::stringstream ss;
  ss << f.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}

bool HavePromtool() {
  return std::system("command -v promtool > /dev/null 2>&1") == 0;
}

// A known sequence: what the gateway client and the pipeline would report for a small batch.
void FeedKnownEvents(Metrics& m) {
  m.OnBatch(Metrics::BatchResult::kAccepted);
  m.OnBatch(Metrics::BatchResult::kRejected);
  m.OnInFlight(3);
  m.OnResponse("POST", 201, 0.020);
  m.OnResponse("POST", 201, 0.030);
  m.OnResponse("POST", 503, 0.004);
  m.OnResponse("POST", 0, 31.0);
  m.OnResponse("GET", 200, 0.2);
  m.OnRetry("POST", "5xx");
  m.OnRetry("POST", "timeout");
  m.OnRetry("POST", "5xx");
  m.OnThrottled();
  m.OnPaused(true);
  m.OnPayoutFinal(FinalState::kSuccess, "USD", 1250, 2);
  m.OnPayoutFinal(FinalState::kSuccess, "USD", 5, 2);
  m.OnPayoutFinal(FinalState::kFailed, "JPY", 1000, 0);
  m.OnPayoutFinal(FinalState::kRejected, "KWD", 1250, 3);
  m.SetPending(Stage::kPolling, 7);
  m.SetPending(Stage::kNew, 2);
  m.SetOldestPendingAge(42.5);
  m.OnUnknownGatewayStatus();
  m.OnCallback(Metrics::CallbackResult::kAccepted);
  m.OnCallback(Metrics::CallbackResult::kTooLarge);
  m.OnBatch(Metrics::BatchResult::kDone);
}

TEST(Metrics, ServesOnAnOsChosenPortWhenListenPortIsZero) {
  auto m = Metrics::Create("127.0.0.1:0", "1.2.3");
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_GT((*m)->port(), 0);
  Scrape s = Get((*m)->port(), "/metrics");
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(Sample(s.body, "payoutd_build_info{version=\"1.2.3\"}"), 1.0);
}

TEST(Metrics, ScrapeCountsEveryEventFedIn) {
  auto created = Metrics::Create("127.0.0.1:0", "0.1.0");
  ASSERT_TRUE(created.ok()) << created.error();
  Metrics& m = **created;
  FeedKnownEvents(m);
  const std::string t = Get(m.port(), "/metrics").body;

  EXPECT_EQ(Sample(t, "payoutd_http_requests_total{code=\"201\",method=\"POST\"}"), 2.0);
  EXPECT_EQ(Sample(t, "payoutd_http_requests_total{code=\"503\",method=\"POST\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_http_requests_total{code=\"0\",method=\"POST\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_http_requests_total{code=\"200\",method=\"GET\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_http_request_duration_seconds_count{method=\"POST\"}"), 4.0);
  EXPECT_EQ(Sample(t, "payoutd_http_request_duration_seconds_bucket{method=\"POST\",le=\"0.005\"}"),
            1.0);
  EXPECT_EQ(Sample(t, "payoutd_http_request_duration_seconds_bucket{method=\"POST\",le=\"0.025\"}"),
            2.0);
  EXPECT_EQ(Sample(t, "payoutd_http_request_duration_seconds_bucket{method=\"POST\",le=\"30\"}"),
            3.0);
  EXPECT_EQ(Sample(t, "payoutd_http_request_duration_seconds_bucket{method=\"POST\",le=\"+Inf\"}"),
            4.0);
  EXPECT_EQ(Sample(t, "payoutd_http_request_duration_seconds_count{method=\"GET\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_http_retries_total{method=\"POST\",reason=\"5xx\"}"), 2.0);
  EXPECT_EQ(Sample(t, "payoutd_http_retries_total{method=\"POST\",reason=\"timeout\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_in_flight_requests"), 3.0);
  EXPECT_EQ(Sample(t, "payoutd_throttled_total"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_sending_paused"), 1.0);

  EXPECT_EQ(Sample(t, "payoutd_payouts_total{state=\"SUCCESS\"}"), 2.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_total{state=\"FAILED\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_total{state=\"REJECTED\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_total{state=\"ERROR\"}"), 0.0);
  EXPECT_DOUBLE_EQ(*Sample(t, "payoutd_amount_total{currency=\"USD\",state=\"SUCCESS\"}"), 12.55);
  EXPECT_EQ(Sample(t, "payoutd_amount_total{currency=\"JPY\",state=\"FAILED\"}"), 1000.0);
  EXPECT_DOUBLE_EQ(*Sample(t, "payoutd_amount_total{currency=\"KWD\",state=\"REJECTED\"}"), 1.25);

  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"polling\"}"), 7.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"new\"}"), 2.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"unknown\"}"), 0.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"submitting\"}"), 0.0);
  EXPECT_EQ(Sample(t, "payoutd_oldest_pending_payout_age_seconds"), 42.5);
  EXPECT_EQ(Sample(t, "payoutd_batches_total{result=\"accepted\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_batches_total{result=\"rejected\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_batches_total{result=\"done\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_unknown_gateway_status_total"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_callbacks_total{result=\"accepted\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_callbacks_total{result=\"too_large\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_callbacks_total{result=\"unknown_id\"}"), 0.0);
  EXPECT_EQ(Sample(t, "payoutd_build_info{version=\"0.1.0\"}"), 1.0);
}

TEST(Metrics, CountsEveryEventFromConcurrentThreadsWhileBeingScraped) {
  auto created = Metrics::Create("127.0.0.1:0", "0.1.0");
  ASSERT_TRUE(created.ok()) << created.error();
  Metrics& m = **created;
  constexpr int kThreads = 4;
  constexpr int kEach = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kEach; ++i) {
        m.OnResponse(t % 2 ? "GET" : "POST", 200, 0.01);
        m.OnRetry("GET", "network");
        m.OnPayoutFinal(FinalState::kSuccess, "EUR", 100, 2);
      }
    });
  }
  // Scrapes run on the metrics server's thread meanwhile.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get(m.port(), "/metrics").status, 200);
  for (auto& th : threads) th.join();
  const std::string t = Get(m.port(), "/metrics").body;
  EXPECT_EQ(Sample(t, "payoutd_http_requests_total{code=\"200\",method=\"POST\"}"),
            kThreads / 2 * kEach);
  EXPECT_EQ(Sample(t, "payoutd_http_requests_total{code=\"200\",method=\"GET\"}"),
            kThreads / 2 * kEach);
  EXPECT_EQ(Sample(t, "payoutd_http_retries_total{method=\"GET\",reason=\"network\"}"),
            kThreads * kEach);
  EXPECT_EQ(Sample(t, "payoutd_payouts_total{state=\"SUCCESS\"}"), kThreads * kEach);
  EXPECT_DOUBLE_EQ(*Sample(t, "payoutd_amount_total{currency=\"EUR\",state=\"SUCCESS\"}"),
                   kThreads * kEach * 1.0);
}

TEST(Metrics, SendingPausedDropsBackToZeroWhenResumed) {
  auto m = Metrics::Create("", "0.1.0");
  ASSERT_TRUE(m.ok()) << m.error();
  (*m)->OnPaused(true);
  (*m)->OnPaused(false);
  EXPECT_EQ(Sample((*m)->Render(), "payoutd_sending_paused"), 0.0);
}

TEST(Metrics, PendingFromStoreSumsStagesOverBatchesAndAgesTheOldest) {
  auto m = Metrics::Create("", "0.1.0");
  ASSERT_TRUE(m.ok()) << m.error();
  (*m)->SetPending(Stage::kUnknown, 9);  // stale: no batch has it any more
  BatchProgress a;
  a.stages = {{Stage::kNew, 3}, {Stage::kPolling, 5}, {Stage::kFinal, 100}};
  a.oldest_pending_since_ms = 1'000'000;
  BatchProgress b;
  b.stages = {{Stage::kPolling, 2}, {Stage::kSubmitting, 1}};
  b.oldest_pending_since_ms = 400'000;
  BatchProgress c;  // nothing submitted yet
  c.stages = {{Stage::kNew, 4}};
  (*m)->SetPendingFrom({a, b, c}, 1'000'000 + 90'500);
  const std::string t = (*m)->Render();
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"new\"}"), 7.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"polling\"}"), 7.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"submitting\"}"), 1.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"unknown\"}"), 0.0);
  EXPECT_EQ(Sample(t, "payoutd_payouts_pending{stage=\"final\"}"), std::nullopt);
  EXPECT_EQ(Sample(t, "payoutd_oldest_pending_payout_age_seconds"), 690.5);

  (*m)->SetPendingFrom({c}, 2'000'000);
  EXPECT_EQ(Sample((*m)->Render(), "payoutd_oldest_pending_payout_age_seconds"), 0.0)
      << "nothing submitted";
}

TEST(Metrics, AlertedSeriesExistAtZeroBeforeAnyEvent) {
  auto m = Metrics::Create("", "0.1.0");
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ((*m)->port(), 0);
  const std::string t = (*m)->Render();
  for (const char* s :
       {"payoutd_payouts_total{state=\"ERROR\"}", "payoutd_batches_total{result=\"rejected\"}",
        "payoutd_payouts_pending{stage=\"unknown\"}", "payoutd_sending_paused",
        "payoutd_oldest_pending_payout_age_seconds", "payoutd_throttled_total",
        "payoutd_in_flight_requests", "payoutd_callbacks_total{result=\"bad_request\"}",
        "payoutd_http_request_duration_seconds_count{method=\"GET\"}"})
    EXPECT_EQ(Sample(t, s), 0.0) << s;
}

TEST(Metrics, ScrapedTextPassesPromtoolCheckMetrics) {
  if (!HavePromtool()) GTEST_SKIP() << "promtool not installed";
  auto m = Metrics::Create("127.0.0.1:0", "0.1.0");
  ASSERT_TRUE(m.ok()) << m.error();
  FeedKnownEvents(**m);
  TempDir dir;
  Scrape s = Get((*m)->port(), "/metrics");
  ASSERT_EQ(s.status, 200);
  CommandResult r = RunWithStdin("promtool check metrics", s.body, dir);
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- scraped ---\n" << s.body;
  EXPECT_EQ(r.output, "") << "promtool lint findings";
}

TEST(Metrics, RenderMatchesWhatAScrapeReturns) {
  auto m = Metrics::Create("127.0.0.1:0", "0.1.0");
  ASSERT_TRUE(m.ok()) << m.error();
  FeedKnownEvents(**m);
  std::string rendered = (*m)->Render();
  Scrape s = Get((*m)->port(), "/metrics");
  EXPECT_EQ(s.body, rendered);
  EXPECT_EQ((*m)->Render(), rendered) << "a scrape changes nothing that payoutd counts";
}

TEST(Metrics, CreateFailsNamingTheAddressWhenThePortIsTaken) {
  auto first = Metrics::Create("127.0.0.1:0", "0.1.0");
  ASSERT_TRUE(first.ok()) << first.error();
  std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = Metrics::Create(taken, "0.1.0");
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().find(taken), std::string::npos) << second.error();
}

TEST(Metrics, CreateRejectsListenWithoutHostOrPort) {
  for (const char* bad : {"9464", "127.0.0.1", "127.0.0.1:", ":9464", "127.0.0.1:99999",
                          "127.0.0.1:94s", "127.0.0.1:abc"}) {
    auto m = Metrics::Create(bad, "0.1.0");
    EXPECT_FALSE(m.ok()) << bad;
    if (!m.ok()) {
      EXPECT_NE(m.error().find("metrics.listen"), std::string::npos) << m.error();
    }
  }
}

// ---- sd_notify ----------------------------------------------------------------------------------

// A NOTIFY_SOCKET of our own, as systemd would provide, set in the environment for the test's life.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = (dir_.path() / "notify.sock").string();
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    bound_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~NotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    if (fd_ >= 0) close(fd_);
  }
  bool bound() const { return bound_; }

  // The next datagram; sd_notify has sent it before returning, so it is already queued.
  std::string Receive() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    return n < 0 ? std::string("<nothing received>") : std::string(buf, static_cast<size_t>(n));
  }

 private:
  TempDir dir_;
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

TEST(SdNotify, ReadySendsReadyToNotifySocket) {
  NotifySocket sock;
  ASSERT_TRUE(sock.bound());
  EXPECT_TRUE(systemd::Ready());
  EXPECT_EQ(sock.Receive(), "READY=1");
}

TEST(SdNotify, StatusSendsOneLineOfText) {
  NotifySocket sock;
  ASSERT_TRUE(sock.bound());
  EXPECT_TRUE(systemd::Status("3 batches active, 120 pending\nREADY=1"));
  EXPECT_EQ(sock.Receive(), "STATUS=3 batches active, 120 pending READY=1");
}

TEST(SdNotify, WatchdogStoppingAndReloadingSendTheirAssignments) {
  NotifySocket sock;
  ASSERT_TRUE(sock.bound());
  EXPECT_TRUE(systemd::Watchdog());
  EXPECT_EQ(sock.Receive(), "WATCHDOG=1");
  EXPECT_TRUE(systemd::Reloading());
  EXPECT_EQ(sock.Receive(), "RELOADING=1");
  EXPECT_TRUE(systemd::Stopping());
  EXPECT_EQ(sock.Receive(), "STOPPING=1");
}

TEST(SdNotify, EveryCallIsANoOpWithoutNotifySocket) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(systemd::Ready());
  EXPECT_FALSE(systemd::Status("x"));
  EXPECT_FALSE(systemd::Watchdog());
  EXPECT_FALSE(systemd::Stopping());
}

TEST(SdNotify, WatchdogIntervalComesFromWatchdogUsecForThisProcess) {
  setenv("WATCHDOG_USEC", "30000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(systemd::WatchdogInterval(), std::chrono::seconds(30));
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_EQ(systemd::WatchdogInterval(), std::chrono::microseconds(0))
      << "meant for another process";
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  EXPECT_EQ(systemd::WatchdogInterval(), std::chrono::microseconds(0));
}

}  // namespace
}  // namespace payoutd
