#include "daemon/callbacks.h"

#include <simdjson.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/base/listen_address.h"
#include "core/base/liveness.h"
#include "core/base/log.h"
#include "core/base/thread_checker.h"
#include "daemon/metrics.h"

namespace payoutd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

Result<std::string> CallbackPayoutId(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) return Status::InvalidArgument("body is not JSON");
  std::string_view id;
  if (!doc["paymentMethodResponse"]["idPayout"].get(id)) return std::string(id);
  if (!doc["idPayout"].get(id)) return std::string(id);
  return Status::InvalidArgument("body names no idPayout");
}

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::function<bool(const std::string&)>& nudge, Metrics* metrics,
          const ThreadChecker& io_thread)
      : stream_(std::move(socket)), nudge_(nudge), metrics_(metrics), io_thread_(io_thread) {}

  void Read() {
    parser_.emplace();
    parser_->body_limit(CallbackReceiver::kMaxBody);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    if (ec == http::error::body_limit) {
      if (metrics_) metrics_->OnCallback(Metrics::CallbackResult::kTooLarge);
      return Reply(http::status::payload_too_large, "{\"error\":\"body too large\"}", false);
    }
    if (ec) return;  // closed, timed out or not HTTP
    auto& req = parser_->get();
    if (req.method() != http::verb::post)
      return Reply(http::status::method_not_allowed, "{}", req.keep_alive());
    auto id = CallbackPayoutId(req.body());
    if (!id.ok()) {
      if (metrics_) metrics_->OnCallback(Metrics::CallbackResult::kBadRequest);
      return Reply(http::status::bad_request, "{\"error\":\"" + id.error() + "\"}",
                   req.keep_alive());
    }
    bool known = nudge_(*id);
    if (metrics_)
      metrics_->OnCallback(known ? Metrics::CallbackResult::kAccepted
                                 : Metrics::CallbackResult::kUnknownId);
    log::Debug("callback.received", {{"payout", *id}, {"known", known ? "yes" : "no"}});
    Reply(http::status::ok, "{}", req.keep_alive());
  }

  void Reply(http::status status, std::string body, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::content_type, "application/json");
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                        if (!ec && keep_alive)
                          self->Read();
                        else
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::function<bool(const std::string&)>& nudge_;
  Metrics* metrics_;
  const ThreadChecker& io_thread_;  // the receiver's, like nudge_
};

class Receiver final : public CallbackReceiver {
 public:
  Receiver(asio::io_context& io, std::function<bool(const std::string&)> nudge, Metrics* metrics)
      : acceptor_(io), nudge_(std::move(nudge)), metrics_(metrics) {}
  ~Receiver() override { alive_.End(); }

  Status Listen(const std::string& listen) {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    Result<ListenAddress> address = ParseListenAddress(listen);
    if (!address.ok()) {
      return Status::InvalidArgument(address.error() + ", got '" + listen + "'");
    }
    beast::error_code ec;
    // A name is resolved as metrics.listen's is (docs/configuration.md): its first address.
    tcp::resolver resolver(acceptor_.get_executor());
    auto found = resolver.resolve(address->host, std::to_string(address->port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || found.empty()) {
      return Status::InvalidArgument("cannot resolve '" + address->host + "': " + ec.message());
    }
    tcp::endpoint ep = found.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::Unavailable("cannot listen on " + listen + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    Accept();
    return Status::Ok();
  }

  int port() const override { return port_; }
  void Stop() override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    beast::error_code ec;
    acceptor_.close(ec);
  }

 private:
  void Accept() {
    auto on_accept = [this, alive = alive_.token()](beast::error_code ec, tcp::socket socket) {
      if (!alive || ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      PAYOUTD_DCHECK_ON_THREAD(io_thread_);
      if (!ec) std::make_shared<Session>(std::move(socket), nudge_, metrics_, io_thread_)->Read();
      Accept();
    };
    acceptor_.async_accept(std::move(on_accept));
  }

  tcp::acceptor acceptor_;
  std::function<bool(const std::string&)> nudge_;
  Metrics* metrics_;
  int port_ = 0;
  ThreadChecker io_thread_;  // binds to the io thread at the first call
  Liveness alive_;           // last: ends first
};

}  // namespace

Result<std::unique_ptr<CallbackReceiver>> CallbackReceiver::Create(
    asio::io_context& io, const std::string& listen, std::function<bool(const std::string&)> nudge,
    Metrics* metrics) {
  auto r = std::make_unique<Receiver>(io, std::move(nudge), metrics);
  PAYOUTD_RETURN_IF_ERROR(r->Listen(listen));
  log::Info("callbacks.listening", {{"listen", listen}, {"port", std::to_string(r->port())}});
  return std::unique_ptr<CallbackReceiver>(std::move(r));
}

}  // namespace payoutd
