// The callbacks receiver (daemon/callbacks.h) on 127.0.0.1 with an OS-chosen port. The receiver
// runs on the test's thread (its io thread); each client is a plain blocking socket on a thread of
// its own, and the test runs the io_context until the client is done.
#include "daemon/callbacks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Answer {
  int status = 0;  // 0: no answer (the connection ended first)
  std::string body;
};

// One exchange over a new connection: `raw` as is, then the answer (blocking, on its own thread).
Answer Exchange(int port, const std::string& raw) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
  beast::error_code ec;
  asio::write(socket, asio::buffer(raw), ec);  // a refused body may be cut short: read anyway
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res, ec);
  if (ec) return {};
  return {static_cast<int>(res.result_int()), res.body()};
}

std::string Post(const std::string& body, const std::string& method = "POST") {
  return method + " /callbacks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

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

class CallbacksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto metrics = Metrics::Create("", "0.0.0");  // not served; Render() still works
    ASSERT_TRUE(metrics.ok()) << metrics.error();
    metrics_ = std::move(*metrics);
    auto receiver = CallbackReceiver::Create(
        io_, "127.0.0.1:0",
        [this](const std::string& id) {
          nudged_.push_back(id);
          return id.rfind("KNOWN-", 0) == 0;
        },
        metrics_.get());
    ASSERT_TRUE(receiver.ok()) << receiver.error();
    receiver_ = std::move(*receiver);
    ASSERT_GT(receiver_->port(), 0);
  }

  // Runs the io_context (the receiver) until `f` is ready, for at most 10 s.
  template <typename T>
  T Await(std::future<T> f) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (f.wait_for(milliseconds(0)) != std::future_status::ready) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ADD_FAILURE() << "no answer within 10 s";
        receiver_->Stop();
        io_.stop();
        break;
      }
      io_.run_one_for(milliseconds(10));
    }
    return f.get();
  }

  Answer Send(const std::string& raw) {
    return Await(std::async(std::launch::async, Exchange, receiver_->port(), raw));
  }

  double Count(const std::string& result) {
    return Sample(metrics_->Render(), "payoutd_callbacks_total{result=\"" + result + "\"}")
        .value_or(-1);
  }

  asio::io_context io_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<CallbackReceiver> receiver_;
  std::vector<std::string> nudged_;
};

TEST_F(CallbacksTest, Callbacks_AnswerOkAndNudgeTheEngineForAKnownPayout) {
  Answer a = Send(Post(R"({"paymentMethodResponse":{"idPayout":"KNOWN-1"},"process":{}})"));
  EXPECT_EQ(a.status, 200);
  EXPECT_THAT(nudged_, ElementsAre("KNOWN-1"));
  EXPECT_EQ(Count("accepted"), 1);
}

TEST_F(CallbacksTest, Callbacks_AnswerOkToAnUnknownIdAndOnlyCountIt) {
  Answer a = Send(Post(R"({"idPayout":"STRANGER-7"})"));
  EXPECT_EQ(a.status, 200);
  EXPECT_THAT(nudged_, ElementsAre("STRANGER-7"));
  EXPECT_EQ(Count("unknown_id"), 1);
  EXPECT_EQ(Count("accepted"), 0);
}

TEST_F(CallbacksTest, Callbacks_RefuseABodyThatIsNotJsonWith400) {
  Answer a = Send(Post("idPayout=KNOWN-1"));
  EXPECT_EQ(a.status, 400);
  EXPECT_THAT(a.body, HasSubstr("not JSON"));
  EXPECT_TRUE(nudged_.empty());
  EXPECT_EQ(Count("bad_request"), 1);
}

TEST_F(CallbacksTest, Callbacks_RefuseJsonThatNamesNoPayoutWith400) {
  Answer a = Send(Post(R"({"process":{"status":"SUCCESS"}})"));
  EXPECT_EQ(a.status, 400);
  EXPECT_TRUE(nudged_.empty());
}

TEST_F(CallbacksTest, Callbacks_TakeABodyOfExactly64KiB) {
  std::string body = R"({"idPayout":"KNOWN-2","pad":")";
  body += std::string(CallbackReceiver::kMaxBody - body.size() - 2, 'x') + "\"}";
  ASSERT_EQ(body.size(), 64u * 1024);
  EXPECT_EQ(Send(Post(body)).status, 200);
  EXPECT_THAT(nudged_, ElementsAre("KNOWN-2"));
}

TEST_F(CallbacksTest, Callbacks_RefuseABodyOver64KiBWith413) {
  std::string body = R"({"idPayout":"KNOWN-3","pad":")";
  body += std::string(CallbackReceiver::kMaxBody - body.size() - 1, 'x') + "\"}";
  ASSERT_EQ(body.size(), 64u * 1024 + 1);
  EXPECT_EQ(Send(Post(body)).status, 413);
  EXPECT_TRUE(nudged_.empty());
  EXPECT_EQ(Count("too_large"), 1);
}

TEST_F(CallbacksTest, Callbacks_RefuseOtherMethodsWith405) {
  EXPECT_EQ(Send(Post(R"({"idPayout":"KNOWN-1"})", "PUT")).status, 405);
  EXPECT_TRUE(nudged_.empty());
}

TEST_F(CallbacksTest, Callbacks_KeepServingWhileAClientSendsNothing) {
  asio::io_context client_io;
  tcp::socket silent(client_io);
  silent.connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(receiver_->port())));
  tcp::socket gone(client_io);  // connects and leaves without a byte
  gone.connect(silent.remote_endpoint());
  gone.close();
  Answer a = Send(Post(R"({"idPayout":"KNOWN-4"})"));
  EXPECT_EQ(a.status, 200);
  EXPECT_THAT(nudged_, ElementsAre("KNOWN-4"));
}

TEST_F(CallbacksTest, Callbacks_AnswerSeveralRequestsOnOneKeptAliveConnection) {
  auto client = [port = receiver_->port()] {
    asio::io_context io;
    tcp::socket socket(io);
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
    beast::flat_buffer buffer;
    std::vector<int> statuses;
    for (const char* id : {"KNOWN-5", "KNOWN-6"}) {
      http::request<http::string_body> req(http::verb::post, "/callbacks", 11);
      req.set(http::field::host, "127.0.0.1");
      req.keep_alive(true);
      req.body() = std::string(R"({"idPayout":")") + id + "\"}";
      req.prepare_payload();
      http::write(socket, req);
      http::response<http::string_body> res;
      http::read(socket, buffer, res);
      statuses.push_back(static_cast<int>(res.result_int()));
    }
    return statuses;
  };
  EXPECT_THAT(Await(std::async(std::launch::async, client)), ElementsAre(200, 200));
  EXPECT_THAT(nudged_, ElementsAre("KNOWN-5", "KNOWN-6"));
}

TEST_F(CallbacksTest, Callbacks_RefuseConnectionsOnceStopped) {
  const int port = receiver_->port();
  receiver_->Stop();
  io_.poll();
  asio::io_context client_io;
  tcp::socket socket(client_io);
  beast::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)),
                 ec);
  EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST(Callbacks, CreateFailsWithTheAddressItCouldNotUse) {
  asio::io_context io;
  auto bad = CallbackReceiver::Create(
      io, "no-port", [](const std::string&) { return true; }, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error(), HasSubstr("no-port"));
  auto unknown = CallbackReceiver::Create(
      io, "example.invalid:80", [](const std::string&) { return true; }, nullptr);
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error(), HasSubstr("cannot resolve 'example.invalid'"));
}

TEST(Callbacks, ListensOnAHostNameAsMetricsListenDoes) {
  asio::io_context io;
  auto named = CallbackReceiver::Create(
      io, "localhost:0", [](const std::string&) { return true; }, nullptr);
  ASSERT_TRUE(named.ok()) << named.error();
  EXPECT_GT((*named)->port(), 0);
  (*named)->Stop();
}

TEST(Callbacks, CallbackPayoutId_PrefersThePaymentMethodResponsesId) {
  auto both = CallbackPayoutId(R"({"idPayout":"OUTER","paymentMethodResponse":{"idPayout":"IN"}})");
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(*both, "IN");
  auto outer = CallbackPayoutId(R"({"idPayout":"OUTER"})");
  ASSERT_TRUE(outer.ok());
  EXPECT_EQ(*outer, "OUTER");
  EXPECT_FALSE(CallbackPayoutId(R"({"idPayout":7})").ok());
  EXPECT_FALSE(CallbackPayoutId("").ok());
}

}  // namespace
}  // namespace payoutd
