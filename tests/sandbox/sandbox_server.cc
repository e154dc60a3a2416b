#include "tests/sandbox/sandbox_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <utility>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"

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

std::string_view Sv(beast::string_view s) {
  return {s.data(), s.size()};
}

// What a session asks of its server. Owned by SandboxServer::Impl, which outlives every handler
// that runs (handlers still queued when the io_context is destroyed are dropped, never run).
struct ServerHooks {
  std::function<void(const CallbackPlan&)> schedule_callback;
  std::function<void(std::chrono::milliseconds)> refuse_connections;
};

// One keep-alive connection: read a request, let the gateway decide, wait if told, answer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket socket, SandboxGateway& gateway, const ServerHooks& hooks)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        gateway_(gateway),
        hooks_(hooks) {}

  void Start() { ReadRequest(); }

  // Ends the connection from another thread (the acceptor's strand, for an outage) while this
  // session's own handlers may be running: shutdown(2) makes its pending read or write fail, and
  // it then closes itself on its own thread. The mutex keeps the descriptor from being closed, and
  // reused by another socket, under us.
  void Abort() EXCLUDES(close_mu_) {
    MutexLock lock(&close_mu_);
    if (socket_.is_open()) ::shutdown(socket_.native_handle(), SHUT_RDWR);
  }

 private:
  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(1 << 20);
    http::async_read(
        socket_, buffer_, *parser_,
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
    auto agent = req.find(http::field::user_agent);
    if (agent != req.end()) r.user_agent = Sv(agent->value());
    r.has_api_version = req.find("X-API-Version") != req.end();
    r.body = req.body();
    r.abandoned = PeerClosed();
    Reply reply = gateway_.Handle(r, Clock::now());
    if (reply.callback) hooks_.schedule_callback(*reply.callback);
    if (reply.drop) return Drop(reply.delay);
    refuse_after_write_ = reply.refuse_connections_for;

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
      // After the write, so the client that asked for the outage has its answer.
      if (self->refuse_after_write_.count() > 0) {
        self->hooks_.refuse_connections(std::exchange(self->refuse_after_write_, {}));
      }
      if (ec || !self->keep_alive_) return self->Close();
      self->ReadRequest();
    });
  }

  // Closes without answering, at once or after `after` (a hanging gateway holds the connection).
  void Drop(std::chrono::milliseconds after) {
    if (after.count() <= 0) return Close();
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this()](beast::error_code) { self->Close(); });
  }

  // True when the client has closed its side (or reset) before we answered: an HTTP/1.1 client
  // does that when it gives up waiting. One non-blocking peek at the kernel's buffer.
  bool PeerClosed() {
    char c;
    ssize_t n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }

  void Close() EXCLUDES(close_mu_) {
    MutexLock lock(&close_mu_);
    beast::error_code ignored;
    socket_.shutdown(Socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  // Not GUARDED_BY(close_mu_): the session's own handlers read and write through it without the
  // lock. What the lock guards is its descriptor's life: only Close() closes it and only Abort()
  // touches it from another thread, both holding close_mu_.
  Socket socket_;
  Timer timer_;
  SandboxGateway& gateway_;
  const ServerHooks& hooks_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  bool keep_alive_ = true;
  std::chrono::milliseconds refuse_after_write_{0};
  Mutex close_mu_;  // Close() against Abort()
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

// Delivers one callback: POST of the GET-shaped body. Failures are logged and counted, never
// retried.
class CallbackSender : public std::enable_shared_from_this<CallbackSender> {
 public:
  CallbackSender(asio::io_context& io, SandboxGateway& gateway, Url url, std::string id,
                 std::string body)
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
    resolver_.async_resolve(
        url_.host, url_.port,
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

// The acceptor, the session list and the outage timer are touched only on `strand`, so an outage
// asked for on one io thread never races an accept completing on another.
struct SandboxServer::Impl {
  Impl(asio::io_context& io, SandboxGateway& gateway)
      : io(io),
        gateway(gateway),
        strand(asio::make_strand(io.get_executor())),
        acceptor(io.get_executor()),
        reopen_timer(io.get_executor()) {
    hooks.schedule_callback = [this](const CallbackPlan& p) { ScheduleCallback(p); };
    hooks.refuse_connections = [this](std::chrono::milliseconds d) {
      asio::post(strand, [this, d] { RefuseConnections(d); });
    };
  }

  void Accept() {
    acceptor.async_accept(asio::bind_executor(strand, [this](beast::error_code ec, Socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open() || !listening) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        auto session = std::make_shared<Session>(std::move(socket), gateway, hooks);
        Track(session);
        session->Start();
      }
      Accept();
    }));
  }

  // Opens the acceptor and binds it to `endpoint` without listening: a bound socket that does not
  // listen answers a connect with RST (ECONNREFUSED), and it keeps the port ours meanwhile.
  void Bind(beast::error_code& ec) {
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (ec) {
      beast::error_code ignored;
      acceptor.close(ignored);
    }
  }

  void Track(const std::shared_ptr<Session>& session) {
    if (sessions.size() >= purge_at) {
      std::erase_if(sessions, [](const std::weak_ptr<Session>& s) { return s.expired(); });
      purge_at = std::max<size_t>(1024, 2 * sessions.size());
    }
    sessions.push_back(session);
  }

  // The gateway host as seen when its service is down: nothing listens on the port and every
  // connection is gone (a client's kept-alive one too). Closing and binding again, rather than
  // shutdown(2) on the listener, because Linux forgets an OS-chosen port when the listener stops.
  void RefuseConnections(std::chrono::milliseconds duration) {
    listening = false;
    beast::error_code ec;
    acceptor.close(ec);
    Bind(ec);  // a failure here is retried when the outage ends
    for (const std::weak_ptr<Session>& weak : sessions) {
      if (std::shared_ptr<Session> session = weak.lock()) session->Abort();
    }
    sessions.clear();
    std::fprintf(stderr, "payout-sandbox: outage: refusing connections for %lld ms\n",
                 static_cast<long long>(duration.count()));
    reopen_timer.expires_after(duration);
    reopen_timer.async_wait(asio::bind_executor(strand, [this](beast::error_code ec) {
      if (!ec) Reopen();
    }));
  }

  void Reopen() {
    beast::error_code ec;
    if (!acceptor.is_open()) Bind(ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      std::fprintf(stderr, "payout-sandbox: outage: cannot listen on port %u again (%s)\n",
                   static_cast<unsigned>(endpoint.port()), ec.message().c_str());
      beast::error_code ignored;
      acceptor.close(ignored);
      reopen_timer.expires_after(std::chrono::milliseconds(100));
      reopen_timer.async_wait(asio::bind_executor(strand, [this](beast::error_code ec) {
        if (!ec) Reopen();
      }));
      return;
    }
    std::fprintf(stderr, "payout-sandbox: outage over: listening again\n");
    listening = true;
    Accept();
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
      std::make_shared<CallbackSender>(io, gateway, std::move(url), plan.id, std::move(*body))
          ->Send();
    });
  }

  asio::io_context& io;
  SandboxGateway& gateway;
  ServerHooks hooks;
  asio::strand<Executor> strand;
  tcp::endpoint endpoint;  // as bound: the OS-chosen port, kept across outages
  Acceptor acceptor;
  Timer reopen_timer;
  bool listening = false;
  std::vector<std::weak_ptr<Session>> sessions;  // those accepted since the last outage
  size_t purge_at = 1024;
};

SandboxServer::SandboxServer(asio::io_context& io, SandboxGateway& gateway)
    : impl_(std::make_unique<Impl>(io, gateway)) {
  const std::string& listen = gateway.options().listen;
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("--listen wants host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  tcp::endpoint ep(asio::ip::make_address(host), port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  impl_->endpoint = impl_->acceptor.local_endpoint();
  impl_->listening = true;
  impl_->Accept();
}

SandboxServer::~SandboxServer() = default;

uint16_t SandboxServer::port() const {
  return impl_->endpoint.port();
}

void SandboxServer::Close() {
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
  impl_->reopen_timer.cancel();
}

}  // namespace payoutd::sandbox
