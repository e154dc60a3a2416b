// The metrics HTTP server (daemon/metrics_server.h) on loopback with OS-chosen ports: what it
// answers, on IPv4 and IPv6, to well-behaved and to misbehaving clients, and how fast it stops.
// Each client here is a plain blocking socket on the test's thread; the server runs on its own.
#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "daemon/metrics.h"

namespace payoutd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Answer {
  int status = 0;  // 0: no answer (the connection ended first)
  std::string allow;
  std::string content_type;
  bool keep_alive = false;
  std::string body;
};

// A blocking client on one connection.
class Client {
 public:
  Client(const std::string& host, int port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address(host), static_cast<uint16_t>(port)));
  }
  void Send(const std::string& raw) {
    beast::error_code ec;
    asio::write(socket_, asio::buffer(raw), ec);  // a refused request may be cut short
  }
  Answer Read() {
    beast::error_code ec;
    http::response<http::string_body> res;
    http::read(socket_, buffer_, res, ec);
    if (ec) return {};
    return {static_cast<int>(res.result_int()), std::string(res[http::field::allow]),
            std::string(res[http::field::content_type]), res.keep_alive(), res.body()};
  }
  Answer Exchange(const std::string& raw) {
    Send(raw);
    return Read();
  }
  // True when the server has closed the connection (a read ends with end of file or reset).
  bool ClosedByServer() {
    char byte;
    beast::error_code ec;
    asio::read(socket_, asio::buffer(&byte, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

std::string Request(const std::string& method, const std::string& target,
                    const std::string& extra_headers = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers + "\r\n";
}

constexpr const char* kText = "# TYPE payoutd_up gauge\npayoutd_up 1\n";

std::unique_ptr<MetricsServer> StartServer(const std::string& listen,
                                           const MetricsServerOptions& options = {}) {
  auto server = MetricsServer::Start(
      listen, [] { return std::string(kText); }, options);
  if (!server.ok()) ADD_FAILURE() << server.error();
  return server.ok() ? std::move(*server) : nullptr;
}

bool HaveIpv6Loopback() {
  asio::io_context io;
  tcp::acceptor a(io);
  beast::error_code ec;
  a.open(tcp::v6(), ec);
  if (!ec) a.bind(tcp::endpoint(asio::ip::make_address("::1"), 0), ec);
  return !ec;
}

// An IPv4 address that is not this machine's, from the ranges reserved for documentation (some
// test machines use one of them for themselves); empty when every candidate is local.
std::string ForeignAddress() {
  for (const char* candidate : {"203.0.113.7", "198.51.100.7", "192.0.2.77"}) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, candidate, &a.sin_addr);
    bool local = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (!local) return candidate;
  }
  return "";
}

TEST(MetricsServer, GetMetricsAnswersTheRenderedTextInPrometheusFormat) {
  auto server = StartServer("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  Client c("127.0.0.1", server->port());
  Answer a = c.Exchange(Request("GET", "/metrics"));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(a.body, kText);
  EXPECT_EQ(c.Exchange(Request("GET", "/metrics?name[]=payoutd_up")).status, 200)
      << "a query string is ignored";
}

TEST(MetricsServer, KeepsTheConnectionForTheNextScrape) {
  auto server = StartServer("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  Client c("127.0.0.1", server->port());
  for (int i = 0; i < 3; ++i) {
    Answer a = c.Exchange(Request("GET", "/metrics"));
    EXPECT_EQ(a.status, 200) << "scrape " << i;
    EXPECT_TRUE(a.keep_alive);
  }
}

TEST(MetricsServer, AnswersNotFoundForAnyOtherPath) {
  auto server = StartServer("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  Client c("127.0.0.1", server->port());
  for (const char* target : {"/", "/metric", "/metrics/", "/metricsx", "/../metrics", "*"}) {
    Answer a = c.Exchange(Request("GET", target));
    EXPECT_EQ(a.status, 404) << target;
    EXPECT_EQ(a.body.find("payoutd_up"), std::string::npos) << target;
  }
}

TEST(MetricsServer, AnswersMethodNotAllowedWithAllowGetForOtherMethods) {
  auto server = StartServer("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  Client c("127.0.0.1", server->port());
  for (const char* method : {"POST", "PUT", "DELETE", "HEAD", "OPTIONS"}) {
    std::string body = std::string(method) == "HEAD" ? "" : "Content-Length: 0\r\n";
    Answer a = c.Exchange(Request(method, "/metrics", body));
    EXPECT_EQ(a.status, 405) << method;
    EXPECT_EQ(a.allow, "GET") << method;
  }
}

TEST(MetricsServer, RefusesHeadersOverTheCapWith413AndCloses) {
  MetricsServerOptions o;
  o.max_request = 1024;
  auto server = StartServer("127.0.0.1:0", o);
  ASSERT_NE(server, nullptr);
  Client c("127.0.0.1", server->port());
  Answer a =
      c.Exchange(Request("GET", "/metrics", "X-Padding: " + std::string(4096, 'a') + "\r\n"));
  EXPECT_EQ(a.status, 413);
  EXPECT_FALSE(a.keep_alive);
  EXPECT_TRUE(c.ClosedByServer());
}

TEST(MetricsServer, RefusesABodyOverTheCapWith413) {
  MetricsServerOptions o;
  o.max_request = 1024;
  auto server = StartServer("127.0.0.1:0", o);
  ASSERT_NE(server, nullptr);
  Client c("127.0.0.1", server->port());
  std::string body(2048, 'x');
  Answer a = c.Exchange(Request("GET", "/metrics", "Content-Length: 2048\r\n") + body);
  EXPECT_EQ(a.status, 413);
}

TEST(MetricsServer, DropsAClientThatSendsNothingAtTheReadDeadline) {
  MetricsServerOptions o;
  o.read_timeout = milliseconds(200);
  auto server = StartServer("127.0.0.1:0", o);
  ASSERT_NE(server, nullptr);
  Client silent("127.0.0.1", server->port());
  Client half("127.0.0.1", server->port());
  half.Send("GET /metr");  // and then nothing
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.ClosedByServer());  // blocks until the server closes it
  EXPECT_TRUE(half.ClosedByServer());
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, milliseconds(150));
  EXPECT_LT(took, milliseconds(5000));
}

TEST(MetricsServer, ServesOthersWhileAClientSendsNothing) {
  auto server = StartServer("127.0.0.1:0");  // default read deadline: 10 s
  ASSERT_NE(server, nullptr);
  Client silent("127.0.0.1", server->port());
  Client c("127.0.0.1", server->port());
  EXPECT_EQ(c.Exchange(Request("GET", "/metrics")).status, 200);
}

TEST(MetricsServer, ClosesConnectionsBeyondTheCap) {
  MetricsServerOptions o;
  o.max_connections = 2;
  auto server = StartServer("127.0.0.1:0", o);
  ASSERT_NE(server, nullptr);
  Client a("127.0.0.1", server->port());
  Client b("127.0.0.1", server->port());
  // Both are accepted once each has been answered; then a third is one too many.
  EXPECT_EQ(a.Exchange(Request("GET", "/metrics")).status, 200);
  EXPECT_EQ(b.Exchange(Request("GET", "/metrics")).status, 200);
  Client c("127.0.0.1", server->port());
  EXPECT_EQ(c.Exchange(Request("GET", "/metrics")).status, 0) << "closed without an answer";
  EXPECT_EQ(a.Exchange(Request("GET", "/metrics")).status, 200) << "the first two are unharmed";
}

TEST(MetricsServer, StopsAtOnceWithSilentAndKeptAliveClientsConnected) {
  auto server = StartServer("127.0.0.1:0");  // read deadline 10 s: stopping must not wait for it
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  Client silent("127.0.0.1", port);
  Client kept("127.0.0.1", port);
  ASSERT_EQ(kept.Exchange(Request("GET", "/metrics")).status, 200);
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, milliseconds(500));
  EXPECT_TRUE(silent.ClosedByServer());
  EXPECT_TRUE(kept.ClosedByServer());
  asio::io_context io;
  tcp::socket s(io);
  beast::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)), ec);
  EXPECT_EQ(ec, asio::error::connection_refused) << "the port is released";
}

TEST(MetricsServer, ServesOnIpv6Loopback) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  auto server = StartServer("[::1]:0");
  ASSERT_NE(server, nullptr);
  Client c("::1", server->port());
  Answer a = c.Exchange(Request("GET", "/metrics"));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, kText);
}

TEST(MetricsServer, ServesOnEveryIpv6Address) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  auto server = StartServer("[::]:0");
  ASSERT_NE(server, nullptr);
  Client c("::1", server->port());
  EXPECT_EQ(c.Exchange(Request("GET", "/metrics")).status, 200);
}

TEST(MetricsServer, ResolvesAHostName) {
  auto server = StartServer("localhost:0");
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
}

TEST(MetricsServer, FailsUnavailableWhenThePortIsInUse) {
  auto first = StartServer("127.0.0.1:0");
  ASSERT_NE(first, nullptr);
  const std::string taken = "127.0.0.1:" + std::to_string(first->port());
  auto second = MetricsServer::Start(taken, [] { return std::string(); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(second.error(), HasSubstr(taken));
  EXPECT_THAT(second.error(), HasSubstr("in use"));
}

TEST(MetricsServer, FailsUnavailableForAnAddressOfAnotherHost) {
  const std::string foreign = ForeignAddress();
  if (foreign.empty()) GTEST_SKIP() << "every candidate address is this machine's";
  auto s = MetricsServer::Start(foreign + ":0", [] { return std::string(); });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.error(), HasSubstr(foreign + ":0"));
}

TEST(MetricsServer, FailsInvalidArgumentForAMalformedOrUnknownHost) {
  for (const char* bad : {"::1:9464", "127.0.0.1", "[::1]:99999", "no-such-host.invalid:0"}) {
    auto s = MetricsServer::Start(bad, [] { return std::string(); });
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << bad << ": " << s.error();
  }
}

// ---- the daemon's metrics on IPv6, as Prometheus checks them ------------------------------------

bool HavePromtool() {
  return std::system("command -v promtool > /dev/null 2>&1") == 0;
}

TEST(MetricsServer, Ipv6ScrapeOfPayoutdMetricsPassesPromtool) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  if (!HavePromtool()) GTEST_SKIP() << "promtool not installed";
  auto m = Metrics::Create("[::1]:0", "0.1.0");
  ASSERT_TRUE(m.ok()) << m.error();
  (*m)->OnPayoutFinal(FinalState::kSuccess, "EUR", 1250, 2);
  (*m)->OnResponse("POST", 201, 0.02);
  Client c("::1", (*m)->port());
  Answer a = c.Exchange(Request("GET", "/metrics"));
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body, (*m)->Render()) << "the scrape is exactly the registry, nothing added";
  auto dir = std::filesystem::temp_directory_path() / ("payoutd-msrv-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "scrape.txt") << a.body;
  std::string cmd = "promtool check metrics < '" + (dir / "scrape.txt").string() + "' > '" +
                    (dir / "out.txt").string() + "' 2>&1";
  int rc = std::system(cmd.c_str());
  std::stringstream out;
  out << std::ifstream(dir / "out.txt").rdbuf();
  std::filesystem::remove_all(dir);
  EXPECT_EQ(rc, 0) << out.str();
  EXPECT_EQ(out.str(), "") << "promtool lint findings";
}

TEST(MetricsServer, MetricsCreateNamesTheKeyWhenThePortIsInUse) {
  auto first = Metrics::Create("127.0.0.1:0", "0.1.0");
  ASSERT_TRUE(first.ok()) << first.error();
  auto second = Metrics::Create("127.0.0.1:" + std::to_string((*first)->port()), "0.1.0");
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.error(), StartsWith("metrics.listen: cannot listen on 127.0.0.1:"));
}

}  // namespace
}  // namespace payoutd
