// payout-sandbox: a fake payment gateway for tests and benchmarks (docs/gateway.md). See --help.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "tests/sandbox/sandbox_gateway.h"
#include "tests/sandbox/sandbox_server.h"

namespace {

using payoutd::sandbox::SandboxOptions;

constexpr char kHelp[] =
    R"(usage: payout-sandbox --listen HOST:PORT --secret-file F --merchant M [flags]

A fake payment gateway (docs/gateway.md): POST/GET /payouts/{id} with HS256 JWT auth, a ledger for tests,
and fault injection. Prints "listening on HOST:PORT" on stdout once ready. SIGTERM/SIGINT: exit 0.

Server:
  --listen HOST:PORT        address to listen on; port 0 = OS-chosen [127.0.0.1:0]
  --port-file F             also write the chosen port to F (atomically: temp file + rename)
  --threads N               io threads [1]
  --base-path P             path prefix before /payouts, e.g. /v1 [none]
Auth:
  --secret-file F           HMAC-SHA256 secret (trailing CR/LF stripped); required unless --no-auth
  --merchant M              expected JWT sub; required unless --no-auth
  --no-auth                 accept any request without checking the token (benchmarks)
  --no-api-version-check    do not require the X-API-Version header
Behaviour:
  --final-after-ms N        payout is CREATED, PENDING after N/2, final after N ms; 0 = final at once [200]
                            final status: account number ending in 13 -> FAILED, else SUCCESS;
                            paymentOperatorCode BNK_REJECT -> POST answers 422 and nothing is created
  --replay-200              repeating an identical POST answers 200 with the POST body [409]
  --no-callbacks            do not POST callbacks to callbackUrl (http:// only) when a payout is final
  --seed N                  random seed for fault injection [1]
  --max-arrivals N          arrival records kept for /_sandbox/arrivals [1000000]
Faults (shares are probabilities 0..1; they apply to /payouts requests):
  --faults-on post|get|all  which methods get faults [all]
  --latency-ms N            fixed delay before every reply [0]
  --jitter-ms N             plus a uniform random delay in [0, N] [0]
  --500-share X             answer 500 without doing anything [0]
  --503-share X             answer 503 without doing anything [0]
  --429-share X             answer 429 with Retry-After without doing anything [0]
  --retry-after-s N         Retry-After seconds for injected 429s [1]
  --retry-after-date        send Retry-After as an HTTP-date instead of seconds
  --drop-share X            POST: the payout is created (or exists), then the connection is closed
                            without a reply [0]
  --slow-share X            reply --slow-ms late (the operation is done at once) [0]
  --slow-ms N               [5000]
  --malformed-share X       200/201 replies carry broken JSON [0]
  --stuck-share X           created payouts that never become final (stay PENDING) [0]
  --rate-limit N            at most N /payouts requests in any one-second window, else 429
                            with Retry-After: 1 [0 = off]
Inspection (no auth):
  GET /_sandbox/ledger      {"payouts":{ID:{created,posts_received,post_count,get_count,
                            distinct_bodies,status,amount:{minor,currency},account_number}}}
  GET /_sandbox/arrivals    {"arrivals":[{t_us,method,id,status[,abandoned][,agent]}],"not_recorded":N}
                            t_us = microseconds since start (monotonic); status 0 = dropped;
                            abandoned: true when the client had closed its connection before
                            the request was handled (it gave up; the reply reached nobody)
  GET /_sandbox/stats       counters: requests, posts, gets, created, duplicates, conflicts, ...
  GET /_sandbox/clock       {"t_us":N,"steady_us":M}: the arrivals' clock now, and the monotonic
                            clock (CLOCK_MONOTONIC, std::chrono::steady_clock) in microseconds
  POST /_sandbox/reset      forget everything; ends a 503 or hang outage
  POST /_sandbox/refuse-auth?on=1   answer 401 to every /payouts request until ?on=0 (or reset)
  POST /_sandbox/outage?kind=K&ms=N   the gateway is down for N ms (1..86400000); answers
                            {"outage":K,"ms":N,"start_t_us":S,"end_t_us":E} (the arrivals' clock)
      kind=refuse           once this reply is written, close the listening socket and every
                            open connection: connects fail with ECONNREFUSED (/_sandbox/* too);
                            after N ms listen again on the same port. The ledger is kept.
      kind=503              answer every /payouts request 503 without doing anything
      kind=hang             read /payouts requests, never answer them, close each connection
                            unanswered when the N ms are over (nothing is done)
                            A later 503 or hang outage replaces the running one.
)";

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "payout-sandbox: %s (see --help)\n", why.c_str());
  std::exit(2);
}

double Share(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || *end != '\0' || !(d >= 0 && d <= 1))
    Usage(flag + " wants a share in [0, 1]");
  return d;
}

int64_t Int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0' || n < 0) Usage(flag + " wants a non-negative integer");
  return n;
}

SandboxOptions ParseArgs(int argc, char** argv) {
  SandboxOptions o;
  std::string secret_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " wants a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (a == "--listen")
      o.listen = value();
    else if (a == "--port-file")
      o.port_file = value();
    else if (a == "--threads")
      o.threads = static_cast<int>(std::max<int64_t>(1, Int(a, value())));
    else if (a == "--base-path")
      o.base_path = value();
    else if (a == "--secret-file")
      secret_file = value();
    else if (a == "--merchant")
      o.merchant = value();
    else if (a == "--no-auth")
      o.auth = false;
    else if (a == "--no-api-version-check")
      o.require_api_version = false;
    else if (a == "--final-after-ms")
      o.final_after_ms = Int(a, value());
    else if (a == "--replay-200")
      o.replay_200 = true;
    else if (a == "--no-callbacks")
      o.callbacks = false;
    else if (a == "--seed")
      o.seed = static_cast<uint64_t>(Int(a, value()));
    else if (a == "--max-arrivals")
      o.max_arrivals = static_cast<size_t>(Int(a, value()));
    else if (a == "--faults-on") {
      std::string v = value();
      if (v == "post")
        o.faults_on_get = false;
      else if (v == "get")
        o.faults_on_post = false;
      else if (v != "all")
        Usage("--faults-on wants post, get or all");
    } else if (a == "--latency-ms")
      o.latency_ms = Int(a, value());
    else if (a == "--jitter-ms")
      o.jitter_ms = Int(a, value());
    else if (a == "--500-share")
      o.share_500 = Share(a, value());
    else if (a == "--503-share")
      o.share_503 = Share(a, value());
    else if (a == "--429-share")
      o.share_429 = Share(a, value());
    else if (a == "--retry-after-s")
      o.retry_after_s = Int(a, value());
    else if (a == "--retry-after-date")
      o.retry_after_http_date = true;
    else if (a == "--drop-share")
      o.drop_share = Share(a, value());
    else if (a == "--slow-share")
      o.slow_share = Share(a, value());
    else if (a == "--slow-ms")
      o.slow_ms = Int(a, value());
    else if (a == "--malformed-share")
      o.malformed_share = Share(a, value());
    else if (a == "--stuck-share")
      o.stuck_share = Share(a, value());
    else if (a == "--rate-limit") {
      o.rate_limit = Int(a, value());
      if (o.rate_limit > 1'000'000)
        Usage("--rate-limit is at most 1000000 (it keeps one slot per request)");
    } else
      Usage("unknown flag " + a);
  }
  if (o.auth) {
    if (secret_file.empty() || o.merchant.empty())
      Usage("--secret-file and --merchant are required (or --no-auth)");
    std::ifstream in(secret_file, std::ios::binary);
    if (!in) Usage("cannot read --secret-file " + secret_file);
    std::stringstream ss;
    ss << in.rdbuf();
    o.secret = ss.str();
    while (!o.secret.empty() && (o.secret.back() == '\n' || o.secret.back() == '\r'))
      o.secret.pop_back();
    if (o.secret.empty()) Usage("--secret-file is empty");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  SandboxOptions options = ParseArgs(argc, argv);
  payoutd::sandbox::SandboxGateway gateway(options);
  boost::asio::io_context io(options.threads);
  std::unique_ptr<payoutd::sandbox::SandboxServer> server;
  try {
    server = std::make_unique<payoutd::sandbox::SandboxServer>(io, gateway);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "payout-sandbox: cannot listen on %s: %s\n", options.listen.c_str(),
                 e.what());
    return 1;
  }
  uint16_t port = server->port();
  if (!options.port_file.empty()) {
    std::string tmp = options.port_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << port << "\n";
      if (!out) {
        std::fprintf(stderr, "payout-sandbox: cannot write %s\n", tmp.c_str());
        return 1;
      }
    }
    if (std::rename(tmp.c_str(), options.port_file.c_str()) != 0) {
      std::fprintf(stderr, "payout-sandbox: cannot rename to %s\n", options.port_file.c_str());
      return 1;
    }
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::printf("listening on %s:%u\n", host.c_str(), static_cast<unsigned>(port));
  std::fflush(stdout);

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    server->Close();
    io.stop();
  });

  std::vector<std::thread> extra;
  for (int i = 1; i < options.threads; ++i) extra.emplace_back([&io] { io.run(); });
  io.run();
  for (std::thread& t : extra) t.join();
  return 0;
}
