// HttpClient (core/gateway/http_client.h) against a small Beast server on 127.0.0.1 with an
// OS-chosen port. Client and server share the test's io_context and thread, as the client shares
// the daemon's io thread with everything else; each test runs it until its answer arrives.
#include "core/gateway/http_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace payoutd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

// What the server saw of one request.
struct Seen {
  std::string method;
  std::string target;
  std::string body;
  std::map<std::string, std::string> headers;
};

// What it does about it.
struct Plan {
  enum class Then { kAnswer, kHang, kReset } then = Then::kAnswer;
  int status = 200;
  std::string body = "{}";
  std::vector<std::pair<std::string, std::string>> headers;
};

Plan Then(Plan::Then then) {
  Plan p;
  p.then = then;
  return p;
}

class TestServer {
 public:
  TestServer(asio::io_context& io, std::function<Plan(const Seen&)> plan)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        plan_(std::move(plan)) {
    Accept();
  }
  int port() const { return acceptor_.local_endpoint().port(); }
  const std::vector<Seen>& seen() const { return seen_; }
  int connections() const { return connections_; }

 private:
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(tcp::socket socket, TestServer& server) : socket_(std::move(socket)), server_(server) {}
    void Read() {
      parser_.emplace();
      http::async_read(socket_, buffer_, *parser_,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (!ec) self->OnRequest();
                       });
    }

   private:
    void OnRequest() {
      const auto& req = parser_->get();
      Seen s{std::string(req.method_string()), std::string(req.target()), req.body(), {}};
      for (const auto& field : req)
        s.headers[std::string(field.name_string())] = std::string(field.value());
      server_.seen_.push_back(s);
      Plan plan = server_.plan_(s);
      if (plan.then == Plan::Then::kHang) {
        server_.held_.push_back(shared_from_this());  // never answered, kept open
        return;
      }
      if (plan.then == Plan::Then::kReset) {
        // Linger 0: close(2) sends RST, after the whole request was read.
        beast::error_code ec;
        socket_.set_option(asio::socket_base::linger(true, 0), ec);
        socket_.close(ec);
        return;
      }
      res_ = {};
      res_.version(11);
      res_.result(static_cast<http::status>(plan.status));
      for (const auto& [name, value] : plan.headers) res_.set(name, value);
      res_.keep_alive(req.keep_alive());
      res_.body() = plan.body;
      res_.prepare_payload();
      http::async_write(socket_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
        if (!ec) self->Read();
      });
    }

    tcp::socket socket_;
    TestServer& server_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
  };

  void Accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      ++connections_;
      std::make_shared<Session>(std::move(socket), *this)->Read();
      Accept();
    });
  }

  tcp::acceptor acceptor_;
  std::function<Plan(const Seen&)> plan_;
  std::vector<Seen> seen_;
  std::vector<std::shared_ptr<Session>> held_;
  int connections_ = 0;
};

class HttpClientTest : public ::testing::Test {
 protected:
  // Starts `req` and runs the io_context until its answer arrives (10 s at most).
  HttpResponse Fetch(HttpClient& client, HttpRequest req) {
    std::optional<HttpResponse> got;
    client.Start(std::move(req), [&](HttpResponse r) { got = std::move(r); });
    EXPECT_FALSE(got.has_value()) << "the callback ran inside Start()";
    EXPECT_TRUE(RunUntil([&] { return got.has_value(); }));
    return got.value_or(HttpResponse{});
  }

  bool RunUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (io_.stopped()) io_.restart();
      io_.run_one_for(milliseconds(10));
    }
    return true;
  }

  static HttpRequest Get(int port, const std::string& path = "/payouts/P-1") {
    HttpRequest r;
    r.method = "GET";
    r.url = "http://127.0.0.1:" + std::to_string(port) + path;
    return r;
  }

  asio::io_context io_;
  HttpClientOptions options_;
};

TEST_F(HttpClientTest, HttpClient_ReturnsStatusBodyAndRetryAfter) {
  TestServer server(io_, [](const Seen&) {
    Plan p;
    p.status = 429;
    p.body = R"({"error":"slow down"})";
    p.headers = {{"Retry-After", "7"}};
    return p;
  });
  HttpClient client(io_, options_);
  HttpResponse r = Fetch(client, Get(server.port()));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.body, R"({"error":"slow down"})");
  EXPECT_EQ(r.retry_after, "7");
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.cancelled);
  EXPECT_TRUE(r.error.empty());
  EXPECT_GE(r.seconds, 0);
  EXPECT_EQ(client.active(), 0u);
}

TEST_F(HttpClientTest, HttpClient_LeavesRetryAfterEmptyWhenAbsent) {
  TestServer server(io_, [](const Seen&) { return Plan{}; });
  HttpClient client(io_, options_);
  HttpResponse r = Fetch(client, Get(server.port()));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(r.retry_after, "");
}

TEST_F(HttpClientTest, HttpClient_SendsTheMethodHeadersAndBodyAsGiven) {
  TestServer server(io_, [](const Seen&) { return Plan{}; });
  HttpClient client(io_, options_);
  HttpRequest post;
  post.method = "POST";
  post.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/payouts";
  post.headers = {"Content-Type: application/json", "X-API-Version: 2"};
  post.body = R"({"idPayout":"P-1"})";
  ASSERT_EQ(Fetch(client, post).status, 200);
  // The same pooled handle carries a GET next: no body, no POST left over.
  ASSERT_EQ(Fetch(client, Get(server.port())).status, 200);

  ASSERT_EQ(server.seen().size(), 2u);
  const Seen& p = server.seen()[0];
  EXPECT_EQ(p.method, "POST");
  EXPECT_EQ(p.target, "/payouts");
  EXPECT_EQ(p.body, R"({"idPayout":"P-1"})");
  EXPECT_EQ(p.headers.at("X-API-Version"), "2");
  EXPECT_EQ(p.headers.at("Content-Type"), "application/json");
  EXPECT_EQ(p.headers.count("Expect"), 0u) << "no 100-continue round trip";
  const Seen& g = server.seen()[1];
  EXPECT_EQ(g.method, "GET");
  EXPECT_EQ(g.target, "/payouts/P-1");
  EXPECT_EQ(g.body, "");
  EXPECT_EQ(g.headers.count("X-API-Version"), 0u) << "headers do not carry over";
}

TEST_F(HttpClientTest, HttpClient_ReusesTheConnectionForTheNextRequest) {
  TestServer server(io_, [](const Seen&) { return Plan{}; });
  HttpClient client(io_, options_);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Fetch(client, Get(server.port())).status, 200);
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, HttpClient_TimesOutAnUnansweredRequestAsMaybeSent) {
  TestServer server(io_, [](const Seen&) { return Then(Plan::Then::kHang); });
  HttpClient client(io_, options_);
  HttpRequest req = Get(server.port());
  req.timeout = milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  HttpResponse r = Fetch(client, req);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(300));
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.timed_out);
  EXPECT_TRUE(r.maybe_sent) << "the gateway had the request: it may have acted on it";
  EXPECT_FALSE(r.cancelled);
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(server.seen().size(), 1u);
}

TEST_F(HttpClientTest, HttpClient_RefusedConnectionIsCertainlyNotSent) {
  // Bound and not listening: a connect is answered with RST (ECONNREFUSED), and the port stays
  // ours for the test.
  tcp::acceptor closed(io_);
  closed.open(tcp::v4());
  closed.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  HttpClient client(io_, options_);
  HttpResponse r = Fetch(client, Get(closed.local_endpoint().port()));
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.maybe_sent);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.cancelled);
  EXPECT_FALSE(r.error.empty());
}

TEST_F(HttpClientTest, HttpClient_ResetAfterTheRequestWasSentIsMaybeSent) {
  TestServer server(io_, [](const Seen&) { return Then(Plan::Then::kReset); });
  HttpClient client(io_, options_);
  HttpRequest post;
  post.method = "POST";
  post.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/payouts";
  post.body = R"({"idPayout":"P-1"})";
  HttpResponse r = Fetch(client, post);
  EXPECT_EQ(server.seen().size(), 1u) << "the server read the whole request before the reset";
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.maybe_sent);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.error.empty());
}

TEST_F(HttpClientTest, HttpClient_AbortReportsCancelledOnceAndLater) {
  TestServer server(io_, [](const Seen&) { return Then(Plan::Then::kHang); });
  HttpClient client(io_, options_);
  int calls = 0;
  HttpResponse got;
  const uint64_t handle = client.Start(Get(server.port()), [&](HttpResponse r) {
    ++calls;
    got = std::move(r);
  });
  ASSERT_TRUE(RunUntil([&] { return server.seen().size() == 1; }));  // in flight at the server
  EXPECT_EQ(client.active(), 1u);
  client.Abort(handle);
  EXPECT_EQ(calls, 0) << "the callback is posted, not run inside Abort()";
  EXPECT_EQ(client.active(), 0u);
  client.Abort(handle);  // unknown by now: nothing happens
  client.Abort(handle + 100);
  ASSERT_TRUE(RunUntil([&] { return calls > 0; }));
  io_.poll();  // anything else queued runs too
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(got.cancelled);
  EXPECT_EQ(got.status, 0);
  EXPECT_TRUE(got.maybe_sent);
}

TEST_F(HttpClientTest, HttpClient_AbortAllCancelsEveryRequestInFlight) {
  TestServer server(io_, [](const Seen&) { return Then(Plan::Then::kHang); });
  HttpClient client(io_, options_);
  int cancelled = 0;
  for (int i = 0; i < 3; ++i) {
    client.Start(Get(server.port(), "/payouts/P-" + std::to_string(i)),
                 [&](HttpResponse r) { cancelled += r.cancelled ? 1 : 0; });
  }
  ASSERT_TRUE(RunUntil([&] { return server.seen().size() == 3; }));
  client.AbortAll();
  EXPECT_EQ(client.active(), 0u);
  ASSERT_TRUE(RunUntil([&] { return cancelled == 3; }));
}

TEST_F(HttpClientTest, HttpClient_DroppedWithoutCallbacksWhenDestroyed) {
  TestServer server(io_, [](const Seen&) { return Then(Plan::Then::kHang); });
  bool called = false;
  {
    HttpClient client(io_, options_);
    client.Start(Get(server.port()), [&](HttpResponse) { called = true; });
    ASSERT_TRUE(RunUntil([&] { return server.seen().size() == 1; }));
  }
  io_.restart();
  io_.poll();
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace payoutd
