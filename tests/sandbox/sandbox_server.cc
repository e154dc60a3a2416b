#include "tests/sandbox/sandbox_server.h"

#include <cstdio>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace payoutd::sandbox {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
// Concrete executor types: the default type-erased executor costs measurably per operation.
// No strand: a session has at most one operation outstanding, so its handlers never overlap even
// with --threads > 1.
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;

namespace {

std::string_view Sv(beast::string_view s) { return {s.data(), s.size()}; }

// One keep-alive connection: read a request, let the gateway decide, wait if told, answer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket socket, SandboxGateway& gateway,
          std::function<void(const CallbackPlan&)> schedule_callback)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        gateway_(gateway),
        schedule_callback_(std::move(schedule_callback)) {}

  void Start() { ReadRequest(); }

 private:
  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(1 << 20);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnRequest(beast::error_code ec) {
    if (ec) return Close();
    const auto& req = parser_->get();
    Request r;
    r.method = Sv(req.method_string());
    r.target = Sv(req.target());
    auto auth = req.find(http::field::authorization);
    if (auth != req.end()) r.authorization = Sv(auth->value());
    r.has_api_version = req.find("X-API-Version") != req.end();
    r.body = req.body();
    Reply reply = gateway_.Handle(r, Clock::now());
    if (reply.callback) schedule_callback_(*reply.callback);
    if (reply.drop) return Close();

    keep_alive_ = req.keep_alive();
    res_ = {};
    res_.version(11);
    res_.result(static_cast<http::status>(reply.status));
    res_.set(http::field::server, "payout-sandbox");
    res_.set(http::field::content_type, "application/json");
    for (const Header& h : reply.headers) res_.set(h.name, h.value);
    res_.keep_alive(keep_alive_);
    res_.body() = std::move(reply.body);
    res_.prepare_payload();
    if (reply.delay.count() > 0) {
      timer_.expires_after(reply.delay);
      timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->WriteResponse();
      });
      return;
    }
    WriteResponse();
  }

  void WriteResponse() {
    http::async_write(socket_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || !self->keep_alive_) return self->Close();
      self->ReadRequest();
    });
  }

  void Close() {
    beast::error_code ignored;
    socket_.shutdown(Socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  Socket socket_;
  Timer timer_;
  SandboxGateway& gateway_;
  std::function<void(const CallbackPlan&)> schedule_callback_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  bool keep_alive_ = true;
};

struct Url {
  std::string host, port, path;
};

bool ParseHttpUrl(std::string_view url, Url* out) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return false;
  url.remove_prefix(kScheme.size());
  size_t slash = url.find('/');
  std::string_view hostport = url.substr(0, slash);
  out->path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  size_t colon = hostport.rfind(':');
  if (colon == std::string_view::npos) {
    out->host = std::string(hostport);
    out->port = "80";
  } else {
    out->host = std::string(hostport.substr(0, colon));
    out->port = std::string(hostport.substr(colon + 1));
  }
  return !out->host.empty();
}

// Delivers one callback: POST of the GET-shaped body. Failures are logged and counted, never retried.
class CallbackSender : public std::enable_shared_from_this<CallbackSender> {
 public:
  CallbackSender(asio::io_context& io, SandboxGateway& gateway, Url url, std::string id, std::string body)
      : resolver_(io), stream_(io), gateway_(gateway), url_(std::move(url)), id_(std::move(id)) {
    req_.method(http::verb::post);
    req_.target(url_.path);
    req_.version(11);
    req_.set(http::field::host, url_.host + ":" + url_.port);
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::user_agent, "payout-sandbox");
    req_.keep_alive(false);
    req_.body() = std::move(body);
    req_.prepare_payload();
  }

  void Send() {
    resolver_.async_resolve(url_.host, url_.port,
                            [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
                              if (ec) return self->Fail("resolve", ec);
                              self->stream_.expires_after(std::chrono::seconds(5));
                              self->stream_.async_connect(r, [self](beast::error_code ec, auto) {
                                if (ec) return self->Fail("connect", ec);
                                self->Write();
                              });
                            });
  }

 private:
  void Write() {
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail("write", ec);
      http::async_read(self->stream_, self->buffer_, self->res_,
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->Fail("read", ec);
                         bool ok = self->res_.result_int() / 100 == 2;
                         if (!ok) {
                           std::fprintf(stderr, "payout-sandbox: callback id=%s answered %u\n",
                                        self->id_.c_str(), self->res_.result_int());
                         }
                         self->gateway_.NoteCallback(ok);
                         beast::error_code ignored;
                         self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
                       });
    });
  }

  void Fail(const char* step, beast::error_code ec) {
    std::fprintf(stderr, "payout-sandbox: callback id=%s failed at %s: %s\n", id_.c_str(), step,
                 ec.message().c_str());
    gateway_.NoteCallback(false);
  }

  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  SandboxGateway& gateway_;
  Url url_;
  std::string id_;
  http::request<http::string_body> req_;
  beast::flat_buffer buffer_;
  http::response<http::string_body> res_;
};

}  // namespace

struct SandboxServer::Impl {
  Impl(asio::io_context& io, SandboxGateway& gateway)
      : io(io), gateway(gateway), acceptor(io.get_executor()) {}

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, Socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(std::move(socket), gateway,
                                  [this](const CallbackPlan& p) { ScheduleCallback(p); })
            ->Start();
      }
      Accept();
    });
  }

  void ScheduleCallback(const CallbackPlan& plan) {
    auto timer = std::make_shared<asio::steady_timer>(io, plan.due);
    timer->async_wait([this, timer, plan](beast::error_code ec) {
      if (ec) return;
      Url url;
      if (!ParseHttpUrl(plan.url, &url)) {
        std::fprintf(stderr, "payout-sandbox: callback id=%s: only http:// URLs are supported\n",
                     plan.id.c_str());
        gateway.NoteCallback(false);
        return;
      }
      std::optional<std::string> body = gateway.PayoutJson(plan.id, Clock::now());
      if (!body) return;
      std::make_shared<CallbackSender>(io, gateway, std::move(url), plan.id, std::move(*body))->Send();
    });
  }

  asio::io_context& io;
  SandboxGateway& gateway;
  Acceptor acceptor;
};

SandboxServer::SandboxServer(asio::io_context& io, SandboxGateway& gateway)
    : impl_(std::make_unique<Impl>(io, gateway)) {
  const std::string& listen = gateway.options().listen;
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("--listen wants host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  tcp::endpoint ep(asio::ip::make_address(host), port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  impl_->Accept();
}

SandboxServer::~SandboxServer() = default;

uint16_t SandboxServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void SandboxServer::Close() {
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace payoutd::sandbox
