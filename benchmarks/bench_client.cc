// bench_client: how fast the gateway client can POST payouts to one gateway, and what each request
// costs in CPU. Run by bench_client.sh against payout-sandbox --no-auth.
//
//   bench_client --url http://127.0.0.1:PORT [--n 50000] [--connections 64] [--prefix ID]
//
// Prints: requests, seconds, requests/s, CPU µs per request (user + sys, this process).
#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "core/gateway/gateway_client.h"

namespace {

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  std::string prefix =
      "BENCH-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  int n = 50000;
  int connections = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--url")
      url = argv[i + 1];
    else if (a == "--n")
      n = std::atoi(argv[i + 1]);
    else if (a == "--connections")
      connections = std::atoi(argv[i + 1]);
    else if (a == "--prefix")
      prefix = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (url.empty() || n <= 0) {
    std::fprintf(stderr, "usage: bench_client --url URL [--n N] [--connections C] [--prefix ID]\n");
    return 2;
  }

  payoutd::GatewayOptions o;
  o.base_url = url;
  o.auth_mode = payoutd::GatewayOptions::AuthMode::kStatic;
  o.secret = "bench-static-token";
  o.limits.requests_per_second = 0;  // rate limit off
  o.limits.max_in_flight = connections;
  o.retry.max_attempts = 3;

  boost::asio::io_context io;
  payoutd::SystemClock clock;
  payoutd::SystemRandom random;
  auto client = payoutd::GatewayClient::Create(io, o, clock, random, nullptr);
  if (!client) {
    std::fprintf(stderr, "bench_client: %s\n", client.error().c_str());
    return 1;
  }

  payoutd::Payout p;
  p.amount_minor = 4205;
  p.currency = "USD";
  p.account_number = "DE89370400440532013000";
  p.account_name = "Bench Account";
  p.operator_code = "BNK_000";
  p.method = "BANK_TRANSFER";

  // A closed loop like wrk's: keep twice the connections' worth of payouts outstanding, and submit
  // the next one as each reports (as the daemon's pipeline does).
  int created = 0, other = 0, next = 0;
  std::function<void()> submit_one = [&] {
    p.id = prefix + "-" + std::to_string(next++);
    (*client)->Submit(p, [&](payoutd::SubmitResult r) {
      if (r.outcome == payoutd::SubmitResult::Outcome::kCreated)
        ++created;
      else
        ++other;
      if (next < n) submit_one();
    });
  };
  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < std::min(n, 2 * connections); ++i) submit_one();
  io.run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = CpuSeconds() - cpu0;
  std::printf("requests=%d created=%d other=%d seconds=%.3f rate=%.0f cpu_us_per_request=%.1f\n", n,
              created, other, secs, n / secs, cpu * 1e6 / n);
  return other == 0 ? 0 : 1;
}
