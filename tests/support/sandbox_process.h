// Runs the real payout-sandbox binary for a test, and talks to it.
//
//   payoutd::testing::SandboxProcess sandbox({"--final-after-ms", "0", "--500-share", "0.2"});
//   GatewayOptions g; g.base_url = sandbox.base_url(); g.merchant_code = sandbox.merchant();
//   g.secret = sandbox.secret();
//   ... run the client ...
//   auto ledger = sandbox.Ledger();            // id -> SandboxLedgerEntry
//   EXPECT_EQ(ledger.at("B-1").distinct_bodies, 1);
//   SandboxOutage o = sandbox.StartOutage("refuse", std::chrono::seconds(5));  // gateway down
//
// The constructor starts `PAYOUT_SANDBOX_BIN --listen 127.0.0.1:0 --secret-file <temp>
// --merchant <merchant> <extra args>` and returns once the sandbox printed its port (it throws
// std::runtime_error if that does not happen within 10 s). The destructor stops it (SIGTERM).
// Pass "--no-auth" among the extra args to turn token checks off. See `payout-sandbox --help`.
//
// Link: payoutd_jwt simdjson::simdjson (the helper signs tokens and parses the ledger).
// Not thread-safe; use it from the test's thread.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "core/base/clock.h"
#include "core/gateway/jwt.h"

#ifndef PAYOUT_SANDBOX_BIN
#error "PAYOUT_SANDBOX_BIN must name the payout-sandbox binary (payoutd_test defines it)"
#endif

namespace payoutd::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpReply {
  int status = 0;  // 0 when no reply came (see error)
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string error;                           // "closed" (peer closed, no reply), "timeout", ...
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// One row of GET /_sandbox/ledger.
struct SandboxLedgerEntry {
  bool created = false;        // the sandbox holds this payout
  int64_t posts_received = 0;  // every POST that arrived for the id (faulted, refused, ...)
  int64_t post_count = 0;      // POSTs with a valid body that reached the payout logic
  int64_t get_count = 0;
  int64_t distinct_bodies =
      0;               // distinct valid bodies seen; > 1 means a client sent one id with two bodies
  std::string status;  // CREATED, PENDING, SUCCESS, FAILED; REJECTED (422); NONE
  int64_t amount_minor = 0;  // of the stored payout (0 when no valid body was seen)
  std::string currency;
  std::string account_number;
};

// One row of GET /_sandbox/arrivals: a /payouts request as the sandbox saw it.
struct SandboxArrival {
  int64_t t_us = 0;    // microseconds since the sandbox started (monotonic clock)
  std::string method;  // "POST" | "GET"
  std::string id;
  int status = 0;          // the reply's status; 0 = the connection was dropped without a reply
  bool abandoned = false;  // the client had closed its connection first: the reply reached nobody
  std::string agent;       // the request's User-Agent ("" when it had none)
};

// What POST /_sandbox/outage answered: when the outage began and ends, on the arrivals' clock.
struct SandboxOutage {
  int64_t start_t_us = 0;
  int64_t end_t_us = 0;
};

// True when a TCP connection to 127.0.0.1:port is established (it is closed again at once).
inline bool TcpConnects(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// One HTTP/1.1 request on a fresh connection to 127.0.0.1:port ("Connection: close").
inline HttpReply HttpRequest(uint16_t port, const std::string& method, const std::string& target,
                             const std::string& body = "", const Headers& headers = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  HttpReply reply;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    reply.error = "socket";
    return reply;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    reply.error = "connect";
    return reply;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      reply.error = "send";
      return reply;
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  for (;;) {
    if (header_end != std::string::npos && in.size() >= header_end + 4 + content_length) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ::close(fd);
      reply.error = "timeout";
      return reply;
    }
    char buf[16384];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      ::close(fd);
      reply.error = "closed";
      return reply;
    }
    in.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos &&
        (header_end = in.find("\r\n\r\n")) != std::string::npos) {
      size_t line_end = in.find("\r\n");
      std::string status_line = in.substr(0, line_end);
      size_t sp = status_line.find(' ');
      reply.status = sp == std::string::npos ? 0 : std::atoi(status_line.c_str() + sp + 1);
      size_t pos = line_end + 2;
      while (pos < header_end) {
        size_t eol = in.find("\r\n", pos);
        std::string line = in.substr(pos, eol - pos);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
          std::string name = line.substr(0, colon);
          for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          size_t v = line.find_first_not_of(' ', colon + 1);
          reply.headers[name] = v == std::string::npos ? "" : line.substr(v);
        }
        pos = eol + 2;
      }
      content_length = static_cast<size_t>(std::atoll(reply.Header("content-length").c_str()));
    }
  }
  ::close(fd);
  reply.body = in.substr(header_end + 4, content_length);
  return reply;
}

// A valid POST body (docs/gateway.md). amount is the JSON number text, e.g. "42.05".
inline std::string PayoutBody(const std::string& amount, const std::string& currency = "USD",
                              const std::string& account_number = "11223344",
                              const std::string& operator_code = "BNK_000",
                              const std::string& callback_url = "") {
  std::string b =
      R"({"paymentRequested":{"money":{"amount":)" + amount + R"(,"currencyCode":")" + currency +
      R"("}},"paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Test account","accountNumber":")" +
      account_number + R"("},"paymentOperatorCode":")" + operator_code +
      R"(","emailAddress":"customer@test.com"})";
  if (!callback_url.empty()) b += R"(,"callbackUrl":")" + callback_url + "\"";
  return b + "}";
}

class SandboxProcess {
 public:
  explicit SandboxProcess(std::vector<std::string> extra_args = {},
                          std::string merchant = "TEST_MERCHANT",
                          std::string secret = "sandbox-test-secret")
      : merchant_(std::move(merchant)), secret_(std::move(secret)) {
    char path[] = "/tmp/payout-sandbox-secret-XXXXXX";
    int sfd = ::mkstemp(path);
    if (sfd < 0) throw std::runtime_error("mkstemp failed");
    secret_file_ = path;
    if (::write(sfd, secret_.data(), secret_.size()) != static_cast<ssize_t>(secret_.size())) {
      ::close(sfd);
      throw std::runtime_error("cannot write the secret file");
    }
    ::close(sfd);

    std::vector<std::string> args = {PAYOUT_SANDBOX_BIN, "--listen",   "127.0.0.1:0",
                                     "--secret-file",    secret_file_, "--merchant",
                                     merchant_};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      // Die with the test process, even when it is killed (e.g. by a ctest timeout). SIGKILL, as
      // a sandbox frozen by Freeze() would keep a SIGTERM pending forever.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(out[1], STDOUT_FILENO);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    std::string line = ReadLine(out[0], std::chrono::seconds(10));
    ::close(out[0]);
    const std::string prefix = "listening on 127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) {
      Stop();
      throw std::runtime_error("payout-sandbox did not start (stdout: '" + line + "')");
    }
    port_ = static_cast<uint16_t>(std::atoi(line.c_str() + prefix.size()));
  }

  ~SandboxProcess() {
    Stop();
    if (!secret_file_.empty()) ::unlink(secret_file_.c_str());
  }
  SandboxProcess(const SandboxProcess&) = delete;
  SandboxProcess& operator=(const SandboxProcess&) = delete;

  // SIGTERM, then waits up to 10 s (SIGKILL after). Returns the exit code, or 128 + signal.
  // Idempotent: later calls return the first result. A frozen sandbox is thawed to take it.
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    // Only a frozen sandbox needs waking: a SIGCONT that lands while a sanitizer build's
    // LeakSanitizer stops the exiting process to scan it can hang that scan (clang 14).
    if (frozen_) ::kill(pid_, SIGCONT);
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) ::kill(pid_, SIGKILL);
      ::close(pidfd);
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return exit_code_;
  }

  uint16_t port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& merchant() const { return merchant_; }
  const std::string& secret() const { return secret_; }
  const std::string& secret_file() const { return secret_file_; }
  pid_t pid() const { return pid_; }

  // SIGSTOP and SIGCONT: a gateway that stops answering while the kernel still completes its
  // connections and takes the requests' bytes, so clients wait until their own timeouts.
  void Freeze() {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
    frozen_ = true;
  }
  void Thaw() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
    frozen_ = false;
  }

  // A token for `operations`, valid for ttl from now, signed with this sandbox's secret.
  std::string Token(std::vector<std::string> operations,
                    std::chrono::seconds ttl = std::chrono::seconds(600)) {
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    return SignJwt(NewJwtClaims(std::move(operations), merchant_, now, ttl.count(), random_),
                   secret_);
  }

  // The headers the daemon sends (docs/gateway.md), with a valid token for "METHOD /payouts/ID".
  Headers AuthHeaders(const std::string& method, const std::string& id) {
    Headers h = {{"Accept", "application/json"},
                 {"X-API-Version", "2"},
                 {"Authorization", "Bearer " + Token({method + " /payouts/" + id})}};
    if (method == "POST") h.push_back({"Content-Type", "application/json"});
    return h;
  }

  HttpReply Send(const std::string& method, const std::string& target, const std::string& body = "",
                 const Headers& headers = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return HttpRequest(port_, method, target, body, headers, timeout);
  }
  HttpReply Post(const std::string& id, const std::string& body,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return Send("POST", "/payouts/" + id, body, AuthHeaders("POST", id), timeout);
  }
  HttpReply Get(const std::string& id,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return Send("GET", "/payouts/" + id, "", AuthHeaders("GET", id), timeout);
  }

  // GET /_sandbox/ledger, parsed. Throws std::runtime_error when unreadable.
  std::map<std::string, SandboxLedgerEntry> Ledger() {
    simdjson::dom::parser parser;
    simdjson::dom::element doc = Fetch(parser, "/_sandbox/ledger");
    std::map<std::string, SandboxLedgerEntry> out;
    simdjson::dom::object payouts;
    if (doc["payouts"].get_object().get(payouts)) throw std::runtime_error("ledger: no payouts");
    for (auto [key, v] : payouts) {
      SandboxLedgerEntry e;
      e.created = v["created"].get_bool().value();
      e.posts_received = v["posts_received"].get_int64().value();
      e.post_count = v["post_count"].get_int64().value();
      e.get_count = v["get_count"].get_int64().value();
      e.distinct_bodies = v["distinct_bodies"].get_int64().value();
      e.status = std::string(v["status"].get_string().value());
      simdjson::dom::element amount;
      if (!v["amount"].get(amount)) {
        e.amount_minor = amount["minor"].get_int64().value();
        e.currency = std::string(amount["currency"].get_string().value());
        e.account_number = std::string(v["account_number"].get_string().value());
      }
      out.emplace(std::string(key), std::move(e));
    }
    return out;
  }

  // GET /_sandbox/arrivals, parsed, in arrival order.
  std::vector<SandboxArrival> Arrivals() {
    simdjson::dom::parser parser;
    simdjson::dom::element doc = Fetch(parser, "/_sandbox/arrivals");
    std::vector<SandboxArrival> out;
    simdjson::dom::array arrivals;
    if (doc["arrivals"].get_array().get(arrivals)) throw std::runtime_error("arrivals: no array");
    for (simdjson::dom::element a : arrivals) {
      SandboxArrival r;
      r.t_us = a["t_us"].get_int64().value();
      r.method = std::string(a["method"].get_string().value());
      r.id = std::string(a["id"].get_string().value());
      r.status = static_cast<int>(a["status"].get_int64().value());
      bool abandoned = false;
      if (!a["abandoned"].get_bool().get(abandoned)) r.abandoned = abandoned;
      std::string_view agent;
      if (!a["agent"].get_string().get(agent)) r.agent = std::string(agent);
      out.push_back(std::move(r));
    }
    return out;
  }

  // How many POSTs and GETs arrived after `since_us` (the arrivals' clock: ArrivalTimeUs).
  struct RequestCounts {
    int64_t posts = 0;
    int64_t gets = 0;
  };
  RequestCounts RequestsAfter(int64_t since_us) {
    RequestCounts n;
    for (const SandboxArrival& a : Arrivals()) {
      if (a.t_us <= since_us) continue;
      if (a.method == "POST") ++n.posts;
      if (a.method == "GET") ++n.gets;
    }
    return n;
  }

  // The payout ids POSTed after `since_us`.
  std::set<std::string> PostedAfter(int64_t since_us) {
    std::set<std::string> ids;
    for (const SandboxArrival& a : Arrivals())
      if (a.method == "POST" && a.t_us > since_us) ids.insert(a.id);
    return ids;
  }

  // One counter of GET /_sandbox/stats (e.g. "created", "callbacks_delivered"); 0 when absent.
  int64_t Stat(const std::string& name) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc = Fetch(parser, "/_sandbox/stats");
    int64_t v = 0;
    if (doc[name].get_int64().get(v)) return 0;
    return v;
  }

  // While on, every /payouts request is answered 401, whatever its token (for pause/resume tests).
  void SetRefuseAuth(bool on) {
    HttpReply r = Send("POST", std::string("/_sandbox/refuse-auth?on=") + (on ? "1" : "0"));
    if (r.status != 200) throw std::runtime_error("sandbox refuse-auth failed");
  }

  // POST /_sandbox/reset: forget all payouts, arrivals and counters; tokens accepted again.
  void Reset() {
    HttpReply r = Send("POST", "/_sandbox/reset");
    if (r.status != 200) throw std::runtime_error("sandbox reset failed");
  }

  // POST /_sandbox/outage?kind=K&ms=N: the gateway is down for `duration` (kind "refuse", "503"
  // or "hang"; see payout-sandbox --help). A refuse outage answers before the listener closes.
  // Throws when the sandbox did not accept it.
  SandboxOutage StartOutage(const std::string& kind, std::chrono::milliseconds duration) {
    HttpReply r =
        Send("POST", "/_sandbox/outage?kind=" + kind + "&ms=" + std::to_string(duration.count()));
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    SandboxOutage o;
    if (r.status != 200 || parser.parse(r.body).get(doc) ||
        doc["start_t_us"].get_int64().get(o.start_t_us) ||
        doc["end_t_us"].get_int64().get(o.end_t_us)) {
      throw std::runtime_error("sandbox outage " + kind + " failed: " + std::to_string(r.status) +
                               " " + r.error + " " + r.body);
    }
    return o;
  }

  // A moment of this process's steady_clock on the sandbox's arrivals clock (SandboxArrival::t_us).
  // Both processes read CLOCK_MONOTONIC; GET /_sandbox/clock is asked once for the sandbox's start.
  int64_t ArrivalTimeUs(std::chrono::steady_clock::time_point t) {
    if (!start_steady_us_) {
      simdjson::dom::parser parser;
      simdjson::dom::element doc = Fetch(parser, "/_sandbox/clock");
      start_steady_us_ = doc["steady_us"].get_int64().value() - doc["t_us"].get_int64().value();
    }
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() -
           *start_steady_us_;
  }

 private:
  simdjson::dom::element Fetch(simdjson::dom::parser& parser, const std::string& path) {
    HttpReply r = Send("GET", path);
    if (r.status != 200) throw std::runtime_error("GET " + path + " failed: " + r.error);
    simdjson::dom::element doc;
    if (parser.parse(r.body).get(doc)) throw std::runtime_error("GET " + path + ": bad JSON");
    return doc;
  }

  static std::string ReadLine(int fd, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string line;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return line;
      char c;
      if (::read(fd, &c, 1) != 1) return line;
      if (c == '\n') return line;
      line.push_back(c);
    }
  }

  std::string merchant_;
  std::string secret_;
  std::string secret_file_;
  pid_t pid_ = -1;
  bool frozen_ = false;  // Freeze() without Thaw()
  int exit_code_ = -1;
  uint16_t port_ = 0;
  std::optional<int64_t> start_steady_us_;  // the sandbox's start on the steady clock
  SystemRandom random_;
};

}  // namespace payoutd::testing
