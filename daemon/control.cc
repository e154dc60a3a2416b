#include "daemon/control.h"

#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <simdjson.h>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "core/base/json_text.h"
#include "core/base/log.h"

namespace payoutd {
namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

std::string UserName(uid_t uid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found) return found->pw_name;
  return std::to_string(uid);
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(local::socket socket, std::shared_ptr<ControlServer::Handler> handler,
          std::chrono::milliseconds read_timeout)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        handler_(std::move(handler)),
        read_timeout_(read_timeout) {}

  void Start() {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return;
    peer_.uid = cred.uid;
    peer_.pid = cred.pid;
    peer_.user = UserName(cred.uid);
    timer_.expires_after(read_timeout_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      log::Warn("control.timeout", {{"peer", self->peer_.Describe()}});
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
    asio::async_read_until(socket_, asio::dynamic_buffer(buffer_, kMaxControlRequest), '\n',
                           [self = shared_from_this()](const boost::system::error_code& ec,
                                                       size_t n) { self->OnRead(ec, n); });
  }

 private:
  void OnRead(const boost::system::error_code& ec, size_t n) {
    timer_.cancel();
    if (ec == asio::error::not_found) return Send({2, "request too large (at most 64 KiB)"});
    if (ec && ec != asio::error::eof) return;  // closed, or timed out
    const std::string line = buffer_.substr(0, n ? n : buffer_.size());
    if (line.empty()) return;
    auto request = DecodeControlRequest(line);
    if (!request.ok()) return Send({2, "malformed request: " + request.error()});
    (*handler_)(*request, peer_,
                [self = shared_from_this()](ControlReply reply) { self->Send(std::move(reply)); });
  }

  void Send(ControlReply reply) {
    out_ = EncodeControlReply(reply);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](const boost::system::error_code&, size_t) {
                        boost::system::error_code ignored;
                        self->socket_.shutdown(local::socket::shutdown_both, ignored);
                        self->socket_.close(ignored);
                      });
  }

  local::socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<ControlServer::Handler> handler_;  // shared: a reply may outlive the server
  std::chrono::milliseconds read_timeout_;
  ControlPeer peer_;
  std::string buffer_;
  std::string out_;
};

class ControlServerImpl final : public ControlServer {
 public:
  ControlServerImpl(asio::io_context& io, std::string path, Handler handler,
                    std::chrono::milliseconds read_timeout)
      : acceptor_(io),
        path_(std::move(path)),
        handler_(std::make_shared<Handler>(std::move(handler))),
        read_timeout_(read_timeout) {}
  ~ControlServerImpl() override { Stop(); }

  Status Listen() {
    ::unlink(
        path_.c_str());  // a socket left by a daemon that died; the state lock says we are alone
    boost::system::error_code ec;
    acceptor_.open(local(), ec);
    if (!ec) acceptor_.bind(local::endpoint(path_), ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::Unavailable("control.socket " + path_ + ": " + ec.message());
    if (::chmod(path_.c_str(), 0660) != 0)
      return Status::Unavailable("control.socket " + path_ + ": chmod: " + std::strerror(errno));
    Accept();
    return Status::Ok();
  }

  void Stop() override {
    if (!acceptor_.is_open()) return;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    ::unlink(path_.c_str());
  }

 private:
  void Accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, local::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(socket), handler_, read_timeout_)->Start();
      Accept();
    });
  }

  local::acceptor acceptor_;
  std::string path_;
  std::shared_ptr<Handler> handler_;
  std::chrono::milliseconds read_timeout_;
};

Result<std::string> StringField(simdjson::dom::object& o, const char* key, bool required) {
  simdjson::dom::element e;
  if (o[key].get(e)) {
    if (required) return Status::InvalidArgument(std::string("'") + key + "' is missing");
    return std::string();
  }
  std::string_view v;
  if (e.get_string().get(v))
    return Status::InvalidArgument(std::string("'") + key + "' must be a string");
  return std::string(v);
}

}  // namespace

std::string ControlPeer::Describe() const {
  return user + " (uid " + std::to_string(uid) + ")" + (host.empty() ? "" : " on " + host);
}

ControlPeer ControlPeer::Self(bool with_host) {
  ControlPeer p;
  p.uid = ::getuid();
  p.pid = ::getpid();
  p.user = UserName(p.uid);
  if (with_host) {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) == 0) p.host = name;
  }
  return p;
}

std::string EncodeControlRequest(const ControlRequest& r) {
  std::string out = "{\"command\":";
  AppendJsonString(out, r.command);
  out += ",\"batch\":";
  AppendJsonString(out, r.batch);
  out += r.all ? ",\"all\":true" : ",\"all\":false";
  out += ",\"reason\":";
  AppendJsonString(out, r.reason);
  out += "}\n";
  return out;
}

Result<ControlRequest> DecodeControlRequest(std::string_view line) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(line.data(), line.size()).get(doc)) return Status::InvalidArgument("not JSON");
  simdjson::dom::object o;
  if (doc.get_object().get(o)) return Status::InvalidArgument("not a JSON object");
  ControlRequest r;
  auto command = StringField(o, "command", true);
  if (!command.ok()) return command.status();
  r.command = *command;
  auto batch = StringField(o, "batch", false);
  if (!batch.ok()) return batch.status();
  r.batch = *batch;
  auto reason = StringField(o, "reason", false);
  if (!reason.ok()) return reason.status();
  r.reason = *reason;
  simdjson::dom::element all;
  if (!o["all"].get(all) && all.get_bool().get(r.all))
    return Status::InvalidArgument("'all' must be true or false");
  return r;
}

std::string EncodeControlReply(const ControlReply& r) {
  std::string out = "{\"exit\":" + std::to_string(r.exit_code) + ",\"message\":";
  AppendJsonString(out, r.message);
  out += "}\n";
  return out;
}

Result<ControlReply> DecodeControlReply(std::string_view line) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(line.data(), line.size()).get(doc))
    return Status::Unavailable("the daemon's reply is not JSON");
  ControlReply r;
  int64_t code = 0;
  std::string_view message;
  if (doc["exit"].get_int64().get(code) || doc["message"].get_string().get(message))
    return Status::Unavailable("the daemon's reply lacks exit or message");
  r.exit_code = static_cast<int>(code);
  r.message = std::string(message);
  return r;
}

Result<std::unique_ptr<ControlServer>> ControlServer::Create(
    asio::io_context& io, const std::string& path, Handler handler,
    std::chrono::milliseconds read_timeout) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return Status::InvalidArgument("control.socket " + path +
                                   ": longer than a Unix socket path may be (107 bytes)");
  // Its folder, and any missing above it (systemd's RuntimeDirectory= makes /run/payoutd).
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
      return Status::Unavailable("control.socket " + path + ": cannot create " + dir + ": " +
                                 std::strerror(errno));
  }
  auto server = std::make_unique<ControlServerImpl>(io, path, std::move(handler), read_timeout);
  if (Status st = server->Listen(); !st.ok()) return st;
  return std::unique_ptr<ControlServer>(std::move(server));
}

Result<std::optional<ControlReply>> SendControl(const std::string& path,
                                                const ControlRequest& request,
                                                std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return Status::InvalidArgument("control.socket " + path + ": path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return std::optional<ControlReply>();
    return Status::Unavailable("control.socket " + path + ": " + std::strerror(errno));
  }
  const std::string line = EncodeControlRequest(request);
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return Status::Unavailable("control.socket " + path +
                               ": cannot send the request: " + std::strerror(errno));
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (reply.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return Status::Unavailable("the daemon did not answer within " +
                                 std::to_string(timeout.count() / 1000) + "s");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  if (reply.empty())
    return Status::Unavailable("the daemon closed the control connection without an answer");
  auto decoded = DecodeControlReply(reply.substr(0, reply.find('\n')));
  if (!decoded.ok()) return decoded.status();
  return std::optional<ControlReply>(std::move(*decoded));
}

}  // namespace payoutd
