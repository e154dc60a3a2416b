#include "daemon/metrics_server.h"

#include <string_view>
#include <thread>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/base/listen_address.h"

namespace payoutd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// The exposition format Prometheus expects from a text endpoint.
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// One client connection. Lives as long as a handler of its holds it; everything runs on the
// server's thread.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const std::function<std::string()>& render,
          const MetricsServerOptions& options, std::shared_ptr<int> open_sessions)
      : stream_(std::move(socket)),
        // Room for one request at its largest, head and body, and what a pipelining client may
        // have sent behind it; more is refused as too large.
        buffer_(2 * options.max_request + 1024),
        render_(render),
        options_(options),
        open_sessions_(std::move(open_sessions)) {
    ++*open_sessions_;
  }
  ~Session() { --*open_sessions_; }

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options_.max_request));
    parser_->body_limit(options_.max_request);
    stream_.expires_after(options_.read_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::body_limit ||
        ec == http::error::buffer_overflow) {
      return Reply(http::status::payload_too_large, "request too large\n", false);
    }
    if (ec) return;  // closed, timed out, or not HTTP: the connection just ends
    const auto& req = parser_->get();
    const beast::string_view raw = req.target();
    const std::string_view target(raw.data(), raw.size());
    std::string_view path = target.substr(0, target.find('?'));
    if (path != "/metrics") return Reply(http::status::not_found, "not found\n", req.keep_alive());
    if (req.method() != http::verb::get) {
      return Reply(http::status::method_not_allowed, "only GET\n", req.keep_alive());
    }
    Reply(http::status::ok, render_(), req.keep_alive());
  }

  void Reply(http::status status, std::string body, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::server, "payoutd");
    res->set(http::field::content_type,
             status == http::status::ok ? kContentType : "text/plain; charset=utf-8");
    if (status == http::status::method_not_allowed) res->set(http::field::allow, "GET");
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    stream_.expires_after(options_.read_timeout);  // a client that does not read is dropped too
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                        if (!ec && keep_alive) return self->Read();
                        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const std::function<std::string()>& render_;  // the server's; it outlives every session
  const MetricsServerOptions& options_;         // likewise
  std::shared_ptr<int> open_sessions_;
};

class Server final : public MetricsServer {
 public:
  Server(std::function<std::string()> render, const MetricsServerOptions& options)
      : render_(std::move(render)), options_(options), acceptor_(io_) {}

  // Stops at once: io_.stop() ends run() after the handler under way, if any (a scrape being
  // rendered). The sessions still open are destroyed with io_'s handlers, which closes them.
  ~Server() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  Status Listen(const std::string& listen) {
    Result<ListenAddress> address = ParseListenAddress(listen);
    if (!address.ok()) return Status::InvalidArgument(address.error() + ", got '" + listen + "'");
    tcp::resolver resolver(io_);
    beast::error_code ec;
    auto endpoints = resolver.resolve(address->host, std::to_string(address->port),
                                      tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec) {
      return Status::InvalidArgument("cannot resolve '" + address->host + "': " + ec.message());
    }
    for (const auto& entry : endpoints) {
      ec = Bind(entry.endpoint());
      if (!ec) break;
    }
    if (ec) return Status::Unavailable("cannot listen on " + listen + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return Status::Ok();
  }

  int port() const override { return port_; }

 private:
  beast::error_code Bind(const tcp::endpoint& endpoint) {
    beast::error_code ec;
    if (acceptor_.is_open()) acceptor_.close(ec);
    acceptor_.open(endpoint.protocol(), ec);
    // Lets a restarted payoutd bind while the old one's connections sit in TIME_WAIT; Linux still
    // refuses a second listener on the port.
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    return ec;
  }

  void Accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec && *open_sessions_ < options_.max_connections) {
        std::make_shared<Session>(std::move(socket), render_, options_, open_sessions_)->Read();
      }  // else: the socket closes as it goes out of scope
      Accept();
    });
  }

  const std::function<std::string()> render_;
  const MetricsServerOptions options_;
  std::shared_ptr<int> open_sessions_ = std::make_shared<int>(0);
  // Declared after what sessions refer to, and before the acceptor: io_ is destroyed after the
  // acceptor, and its pending handlers (the sessions) before render_ and options_.
  asio::io_context io_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                            std::function<std::string()> render,
                                                            const MetricsServerOptions& options) {
  auto server = std::make_unique<Server>(std::move(render), options);
  PAYOUTD_RETURN_IF_ERROR(server->Listen(listen));
  return std::unique_ptr<MetricsServer>(std::move(server));
}

}  // namespace payoutd
