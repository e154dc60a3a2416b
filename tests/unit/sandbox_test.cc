// The sandbox gateway, run as the real binary and driven over loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

bool IsValidJson(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  return !parser.parse(body).get(doc);
}

std::string JsonString(const std::string& body, std::string_view pointer) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) return "<bad json>";
  std::string_view s;
  if (doc.at_pointer(pointer).get_string().get(s)) return "<absent>";
  return std::string(s);
}

bool HasField(const std::string& body, std::string_view pointer) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) return false;
  return doc.at_pointer(pointer).error() == simdjson::SUCCESS;
}

// GETs until the payout's status is final or the deadline passes; returns the last GET body.
std::string GetUntilFinal(SandboxProcess& sandbox, const std::string& id, milliseconds within) {
  auto deadline = std::chrono::steady_clock::now() + within;
  std::string body;
  while (std::chrono::steady_clock::now() < deadline) {
    HttpReply r = sandbox.Get(id);
    if (r.status != 200) return "status " + std::to_string(r.status);
    body = r.body;
    std::string s = JsonString(body, "/process/status");
    if (s == "SUCCESS" || s == "FAILED") return body;
  }
  return body;
}

TEST(Sandbox, PostCreatesOnceThenSameBodyAnswers409AndDifferentBodyConflicts) {
  SandboxProcess sandbox({"--final-after-ms", "60000"});
  HttpReply created = sandbox.Post("P-1", PayoutBody("42.05"));
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.body,
            R"({"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},)"
            R"("paymentMethodResponse":{"paymentMethodCode":"BANK_TRANSFER","idPayout":"P-1"}})");

  HttpReply again = sandbox.Post("P-1", PayoutBody("42.05"));
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(JsonString(again.body, "/error/code"), "DUPLICATE");

  HttpReply other = sandbox.Post("P-1", PayoutBody("42.06"));
  EXPECT_EQ(other.status, 409);
  EXPECT_EQ(JsonString(other.body, "/error/code"), "CONFLICT");

  // The conflicting POST did not change the stored payout.
  HttpReply got = sandbox.Get("P-1");
  ASSERT_EQ(got.status, 200);
  EXPECT_NE(got.body.find(R"("amount":42.05,)"), std::string::npos) << got.body;
  EXPECT_EQ(JsonString(got.body, "/paymentMethod/account/accountNumber"), "11223344");

  auto ledger = sandbox.Ledger();
  ASSERT_EQ(ledger.count("P-1"), 1u);
  const SandboxLedgerEntry& e = ledger.at("P-1");
  EXPECT_TRUE(e.created);
  EXPECT_EQ(e.post_count, 3);
  EXPECT_EQ(e.distinct_bodies, 2);
  EXPECT_EQ(e.amount_minor, 4205);
  EXPECT_EQ(e.currency, "USD");
  EXPECT_EQ(sandbox.Stat("created"), 1);
}

TEST(Sandbox, Replay200FlagAnswersRepeatedPostWith200AndTheSameBody) {
  SandboxProcess sandbox({"--replay-200"});
  HttpReply first = sandbox.Post("R-1", PayoutBody("10000", "IDR"));
  ASSERT_EQ(first.status, 201);
  HttpReply again = sandbox.Post("R-1", PayoutBody("10000", "IDR"));
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(sandbox.Post("R-1", PayoutBody("10001", "IDR")).status, 409);
}

TEST(Sandbox, GetOfUnknownIdIs404) {
  SandboxProcess sandbox;
  HttpReply r = sandbox.Get("NOPE-1");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(JsonString(r.body, "/error/code"), "NOT_FOUND");
}

TEST(Sandbox, RefusesBadTokensWith401AndCreatesNothing) {
  SandboxProcess sandbox;
  const std::string body = PayoutBody("1");
  auto post_with = [&](const std::string& authorization) {
    return sandbox.Send("POST", "/payouts/A-1", body,
                        {{"X-API-Version", "2"},
                         {"Content-Type", "application/json"},
                         {"Authorization", authorization}});
  };
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  SystemRandom random(3);
  auto token = [&](std::vector<std::string> ops, std::string sub, int64_t iat, int64_t ttl,
                   std::string secret) {
    return "Bearer " +
           SignJwt(NewJwtClaims(std::move(ops), std::move(sub), iat, ttl, random), secret);
  };
  const std::string m = sandbox.merchant(), s = sandbox.secret();
  EXPECT_EQ(post_with(token({"POST /payouts/A-1"}, m, now, 600, "wrong-secret")).status, 401);
  EXPECT_EQ(post_with(token({"GET /payouts/A-1"}, m, now, 600, s)).status, 401);   // operation
  EXPECT_EQ(post_with(token({"POST /payouts/A-2"}, m, now, 600, s)).status, 401);  // id
  EXPECT_EQ(post_with(token({"POST /payouts/A-1"}, m, now - 700, 600, s)).status, 401);  // expired
  EXPECT_EQ(post_with(token({"POST /payouts/A-1"}, "OTHER", now, 600, s)).status, 401);  // sub
  EXPECT_EQ(post_with("").status, 401);
  HttpReply refused = post_with("Basic abc");
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(JsonString(refused.body, "/error/code"), "UNAUTHORIZED");
  EXPECT_EQ(refused.body.find(s), std::string::npos);

  auto ledger = sandbox.Ledger();
  ASSERT_EQ(ledger.count("A-1"), 1u);
  EXPECT_FALSE(ledger.at("A-1").created);
  EXPECT_EQ(ledger.at("A-1").posts_received, 7);
  EXPECT_EQ(ledger.at("A-1").post_count, 0);
  // The same request with a good token goes through.
  EXPECT_EQ(post_with(token({"POST /payouts/A-1"}, m, now, 600, s)).status, 201);
}

TEST(Sandbox, NoAuthFlagAcceptsRequestsWithoutToken) {
  SandboxProcess sandbox({"--no-auth"});
  EXPECT_EQ(sandbox.Send("POST", "/payouts/N-1", PayoutBody("5"), {{"X-API-Version", "2"}}).status,
            201);
}

TEST(Sandbox, MissingApiVersionHeaderIs400) {
  SandboxProcess sandbox;
  HttpReply r = sandbox.Send("GET", "/payouts/V-1", "",
                             {{"Authorization", "Bearer " + sandbox.Token({"GET /payouts/V-1"})}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(JsonString(r.body, "/error/code"), "MISSING_API_VERSION");
}

TEST(Sandbox, InvalidBodiesAre400WithErrorCodeAndCreateNothing) {
  SandboxProcess sandbox;
  const std::vector<std::string> bad = {
      "not json",
      R"({"paymentRequested":{"money":{"amount":1,"currencyCode":"USD"}}})",  // no paymentMethod
      PayoutBody("\"42.05\""),                                                // amount as a string
      PayoutBody("42.050"),                                                   // not shortest form
      PayoutBody("4.205e1"),                                                  // exponent
      PayoutBody("-1"),                                                       // sign
      PayoutBody("0"),                                                        // zero
      PayoutBody("1.5", "JPY"),  // more decimals than the currency has
      PayoutBody("1", "usd"),    // not an ISO code
  };
  for (const std::string& body : bad) {
    HttpReply r = sandbox.Post("B-1", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_FALSE(JsonString(r.body, "/error/code").empty()) << r.body;
    EXPECT_TRUE(HasField(r.body, "/error/message")) << r.body;
  }
  EXPECT_EQ(sandbox.Get("B-1").status, 404);
  EXPECT_EQ(sandbox.Post("-bad-id", PayoutBody("1")).status, 400);
}

TEST(Sandbox, StoresAmountsExactlyInMinorUnitsOfTheCurrency) {
  SandboxProcess sandbox;
  ASSERT_EQ(sandbox.Post("M-1", PayoutBody("1.234", "KWD")).status, 201);
  ASSERT_EQ(sandbox.Post("M-2", PayoutBody("1500", "JPY")).status, 201);
  ASSERT_EQ(sandbox.Post("M-3", PayoutBody("92233720368547758.07", "USD")).status, 201);
  EXPECT_EQ(sandbox.Post("M-4", PayoutBody("92233720368547758.08", "USD")).status, 400);
  auto ledger = sandbox.Ledger();
  EXPECT_EQ(ledger.at("M-1").amount_minor, 1234);
  EXPECT_EQ(ledger.at("M-2").amount_minor, 1500);
  EXPECT_EQ(ledger.at("M-3").amount_minor, INT64_MAX);
}

TEST(Sandbox, PayoutGoesCreatedThenFinalAfterDelayAccountEnding13Fails) {
  SandboxProcess sandbox({"--final-after-ms", "300"});
  ASSERT_EQ(sandbox.Post("F-1", PayoutBody("100", "USD", "99887713")).status, 201);
  ASSERT_EQ(sandbox.Post("S-1", PayoutBody("250", "USD", "99887714")).status, 201);
  HttpReply early = sandbox.Get("F-1");
  ASSERT_EQ(early.status, 200);
  EXPECT_EQ(JsonString(early.body, "/process/status"), "CREATED");
  EXPECT_FALSE(HasField(early.body, "/process/processedAt"));
  EXPECT_TRUE(HasField(early.body, "/process/createdAt"));

  std::string failed = GetUntilFinal(sandbox, "F-1", std::chrono::seconds(5));
  EXPECT_EQ(JsonString(failed, "/process/status"), "FAILED") << failed;
  EXPECT_TRUE(HasField(failed, "/process/processedAt"));
  EXPECT_NE(failed.find(R"("fee":{"amount":1,"currencyCode":"USD"})"), std::string::npos) << failed;
  std::string ok = GetUntilFinal(sandbox, "S-1", std::chrono::seconds(5));
  EXPECT_EQ(JsonString(ok, "/process/status"), "SUCCESS") << ok;
  EXPECT_NE(ok.find(R"("fee":{"amount":2.5,"currencyCode":"USD"})"), std::string::npos) << ok;
  EXPECT_EQ(sandbox.Ledger().at("F-1").status, "FAILED");
}

TEST(Sandbox, FinalAfterZeroIsFinalAtFirstGet) {
  SandboxProcess sandbox({"--final-after-ms", "0"});
  ASSERT_EQ(sandbox.Post("Z-1", PayoutBody("1")).status, 201);
  EXPECT_EQ(JsonString(sandbox.Get("Z-1").body, "/process/status"), "SUCCESS");
}

TEST(Sandbox, OperatorBnkRejectIsRefusedWith422AndNotCreated) {
  SandboxProcess sandbox;
  HttpReply r = sandbox.Post("J-1", PayoutBody("10", "USD", "11223344", "BNK_REJECT"));
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(JsonString(r.body, "/error/code"), "OPERATOR_REJECTED");
  EXPECT_EQ(sandbox.Get("J-1").status, 404);
  EXPECT_EQ(sandbox.Ledger().at("J-1").status, "REJECTED");
}

TEST(Sandbox, Injected500And503CreateNothing) {
  SandboxProcess s500({"--500-share", "1"});
  EXPECT_EQ(s500.Post("E-1", PayoutBody("1")).status, 500);
  EXPECT_FALSE(s500.Ledger().at("E-1").created);
  SandboxProcess s503({"--503-share", "1", "--faults-on", "post"});
  EXPECT_EQ(s503.Post("E-2", PayoutBody("1")).status, 503);
  EXPECT_FALSE(s503.Ledger().at("E-2").created);
  EXPECT_EQ(s503.Get("E-2").status, 404);  // GETs are spared by --faults-on post
}

TEST(Sandbox, Injected429CarriesRetryAfterInSecondsOrHttpDate) {
  SandboxProcess secs({"--429-share", "1", "--retry-after-s", "3"});
  HttpReply r = secs.Post("T-1", PayoutBody("1"));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.Header("retry-after"), "3");
  EXPECT_FALSE(secs.Ledger().at("T-1").created);

  SandboxProcess date({"--429-share", "1", "--retry-after-date"});
  HttpReply d = date.Get("T-2");
  EXPECT_EQ(d.status, 429);
  std::string ra = d.Header("retry-after");
  EXPECT_EQ(ra.size(), 29u) << ra;  // "Wed, 25 Nov 2026 14:50:17 GMT"
  EXPECT_EQ(ra.substr(ra.size() - 4), " GMT") << ra;
}

TEST(Sandbox, DropShareCreatesThePayoutThenClosesWithoutReply) {
  SandboxProcess sandbox({"--drop-share", "1"});
  HttpReply r = sandbox.Post("D-1", PayoutBody("1"));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "closed");
  EXPECT_TRUE(sandbox.Ledger().at("D-1").created);
  EXPECT_EQ(sandbox.Get("D-1").status, 200);
  auto arrivals = sandbox.Arrivals();
  ASSERT_EQ(arrivals.size(), 2u);
  EXPECT_EQ(arrivals[0].status, 0);
}

TEST(Sandbox, SlowShareDoesTheWorkButAnswersAfterTheClientTimeout) {
  SandboxProcess sandbox({"--slow-share", "1", "--slow-ms", "2000", "--faults-on", "post"});
  HttpReply r = sandbox.Post("W-1", PayoutBody("1"), milliseconds(100));
  EXPECT_EQ(r.error, "timeout");
  EXPECT_TRUE(sandbox.Ledger().at("W-1").created);
}

TEST(Sandbox, LatencyDelaysEveryReply) {
  SandboxProcess sandbox({"--latency-ms", "80"});
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(sandbox.Get("L-1").status, 404);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(80));
}

TEST(Sandbox, MalformedShareBreaksTheJsonOfSuccessfulReplies) {
  SandboxProcess sandbox({"--malformed-share", "1"});
  HttpReply r = sandbox.Post("X-1", PayoutBody("1"));
  EXPECT_EQ(r.status, 201);
  EXPECT_FALSE(IsValidJson(r.body)) << r.body;
  HttpReply missing = sandbox.Get("X-2");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(IsValidJson(missing.body));  // errors stay well-formed
}

TEST(Sandbox, StuckShareNeverBecomesFinal) {
  SandboxProcess sandbox({"--stuck-share", "1", "--final-after-ms", "0"});
  ASSERT_EQ(sandbox.Post("K-1", PayoutBody("1")).status, 201);
  EXPECT_EQ(JsonString(sandbox.Get("K-1").body, "/process/status"), "PENDING");
}

TEST(Sandbox, RateLimitAnswers429BeyondNPerSecondAndArrivalsShowIt) {
  SandboxProcess sandbox({"--rate-limit", "5"});
  int ok = 0, limited = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    HttpReply r = sandbox.Get("RL-" + std::to_string(i));
    if (r.status == 429) {
      ++limited;
      EXPECT_EQ(r.Header("retry-after"), "1");
    } else {
      ++ok;
    }
  }
  if (std::chrono::steady_clock::now() - t0 < milliseconds(900)) {  // all inside one window
    EXPECT_EQ(ok, 5);
    EXPECT_EQ(limited, 5);
  }
  EXPECT_GE(limited, 1);
  auto arrivals = sandbox.Arrivals();
  ASSERT_EQ(arrivals.size(), 10u);
  for (size_t i = 1; i < arrivals.size(); ++i) EXPECT_GE(arrivals[i].t_us, arrivals[i - 1].t_us);
  EXPECT_EQ(arrivals[0].method, "GET");
  EXPECT_EQ(arrivals[0].id, "RL-0");
  EXPECT_EQ(arrivals[0].status, 404);
  EXPECT_EQ(arrivals[9].status, 429);
}

TEST(Sandbox, SameSeedGivesTheSameFaults) {
  auto pattern = [](const std::string& seed) {
    SandboxProcess sandbox({"--500-share", "0.5", "--seed", seed});
    std::string codes;
    for (int i = 0; i < 16; ++i)
      codes += std::to_string(sandbox.Get("Q-" + std::to_string(i)).status) + ",";
    return codes;
  };
  std::string a = pattern("7");
  EXPECT_EQ(a, pattern("7"));
  EXPECT_NE(a.find("500"), std::string::npos);
  EXPECT_NE(a.find("404"), std::string::npos);
}

// A one-shot HTTP receiver for the callback.
class CallbackReceiver {
 public:
  CallbackReceiver() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 4);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~CallbackReceiver() { ::close(fd_); }
  uint16_t port() const { return port_; }
  // Accepts one request, answers 200, returns what was received ("" on timeout).
  std::string ReceiveOne(milliseconds within) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(within.count())) <= 0) return "";
    int c = ::accept(fd_, nullptr, nullptr);
    std::string in;
    auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      size_t he = in.find("\r\n\r\n");
      if (he != std::string::npos) {
        size_t cl = in.find("Content-Length: ");
        if (cl == std::string::npos) cl = in.find("content-length: ");
        size_t n = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
        if (in.size() >= he + 4 + n) break;
      }
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    ::send(c, ok, sizeof ok - 1, MSG_NOSIGNAL);
    ::close(c);
    return in;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(Sandbox, SendsCallbackWithGetShapedBodyWhenPayoutBecomesFinal) {
  CallbackReceiver receiver;
  SandboxProcess sandbox({"--final-after-ms", "50"});
  std::string url = "http://127.0.0.1:" + std::to_string(receiver.port()) + "/hook";
  ASSERT_EQ(sandbox.Post("C-1", PayoutBody("7", "USD", "11223344", "BNK_000", url)).status, 201);
  std::string got = receiver.ReceiveOne(std::chrono::seconds(5));
  ASSERT_NE(got.find("POST /hook HTTP/1.1"), std::string::npos) << got;
  std::string body = got.substr(got.find("\r\n\r\n") + 4);
  EXPECT_EQ(JsonString(body, "/process/status"), "SUCCESS") << body;
  EXPECT_EQ(JsonString(body, "/paymentMethodResponse/idPayout"), "C-1");
}

TEST(Sandbox, RefuseAuthSwitchAnswers401UntilTurnedOff) {
  SandboxProcess sandbox;
  sandbox.SetRefuseAuth(true);
  EXPECT_EQ(sandbox.Post("U-1", PayoutBody("1")).status, 401);
  EXPECT_FALSE(sandbox.Ledger().at("U-1").created);
  sandbox.SetRefuseAuth(false);
  EXPECT_EQ(sandbox.Post("U-1", PayoutBody("1")).status, 201);
}

// Polls pred every 5 ms until it holds (true) or the deadline passes (false).
bool PollUntil(const std::function<bool()>& pred, milliseconds within) {
  auto deadline = steady_clock::now() + within;
  while (steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return pred();
}

// A connection as a client's pool keeps it: one request answered, kept alive. -1 on failure.
int OpenKeptAliveConnection(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string req = "GET /_sandbox/clock HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  std::string in;
  auto deadline = steady_clock::now() + seconds(5);
  for (;;) {
    size_t end = in.find("\r\n\r\n");
    size_t cl = in.find("Content-Length: ");
    if (end != std::string::npos && cl != std::string::npos &&
        in.size() >= end + 4 + std::stoul(in.substr(cl + 16))) {
      return fd;
    }
    pollfd p{fd, POLLIN, 0};
    char buf[4096];
    ssize_t n = 0;
    if (steady_clock::now() >= deadline || ::poll(&p, 1, 100) < 0 ||
        ((p.revents & POLLIN) && (n = ::recv(fd, buf, sizeof buf, 0)) <= 0)) {
      ::close(fd);
      return -1;
    }
    in.append(buf, static_cast<size_t>(n));
  }
}

// True once the peer has closed fd (end of stream or reset); false if still open at the deadline.
bool WaitClosedByPeer(int fd, milliseconds within) {
  return PollUntil(
      [fd] {
        char c;
        ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
      },
      within);
}

TEST(Sandbox, OutageRefuseClosesListenerAndOpenConnectionsThenListensOnTheSamePortWithItsLedger) {
  SandboxProcess sandbox;
  ASSERT_EQ(sandbox.Post("O-1", PayoutBody("1")).status, 201);
  int kept = OpenKeptAliveConnection(sandbox.port());
  ASSERT_GE(kept, 0);

  auto asked = steady_clock::now();
  SandboxOutage outage = sandbox.StartOutage("refuse", milliseconds(1500));  // answered first
  EXPECT_EQ(outage.end_t_us - outage.start_t_us, 1'500'000);
  EXPECT_TRUE(PollUntil([&] { return !TcpConnects(sandbox.port()); }, seconds(2)))
      << "still accepting connections";
  EXPECT_TRUE(WaitClosedByPeer(kept, seconds(2))) << "a kept-alive connection survived";
  ::close(kept);

  // Refused until the outage is over, then the same port answers by itself.
  ASSERT_TRUE(PollUntil([&] { return TcpConnects(sandbox.port()); }, seconds(10)));
  EXPECT_GE(steady_clock::now() - asked, milliseconds(1500));
  auto ledger = sandbox.Ledger();
  ASSERT_EQ(ledger.count("O-1"), 1u);
  EXPECT_TRUE(ledger.at("O-1").created);
  EXPECT_EQ(sandbox.Get("O-1").status, 200);
  EXPECT_EQ(sandbox.Post("O-1", PayoutBody("1")).status, 409);
  EXPECT_EQ(sandbox.Stat("created"), 1);
}

TEST(Sandbox, OutageRefuseCanRepeatAndWorksWithSeveralIoThreads) {
  SandboxProcess sandbox({"--threads", "2"});
  for (int i = 0; i < 3; ++i) {
    int kept = OpenKeptAliveConnection(sandbox.port());
    ASSERT_GE(kept, 0) << i;
    sandbox.StartOutage("refuse", milliseconds(200));
    EXPECT_TRUE(PollUntil([&] { return !TcpConnects(sandbox.port()); }, seconds(2))) << i;
    EXPECT_TRUE(WaitClosedByPeer(kept, seconds(2))) << i;
    ::close(kept);
    ASSERT_TRUE(PollUntil([&] { return TcpConnects(sandbox.port()); }, seconds(10))) << i;
  }
  EXPECT_EQ(sandbox.Get("O-9").status, 404);
}

TEST(Sandbox, Outage503AnswersEveryPayoutRequest503AndDoesNothingUntilItEnds) {
  SandboxProcess sandbox;
  SandboxOutage outage = sandbox.StartOutage("503", milliseconds(3000));
  HttpReply post = sandbox.Post("O-2", PayoutBody("1"));
  EXPECT_EQ(post.status, 503);
  EXPECT_EQ(JsonString(post.body, "/error/code"), "UNAVAILABLE");
  EXPECT_EQ(sandbox.Get("O-2").status, 503);
  EXPECT_FALSE(sandbox.Ledger().at("O-2").created);  // the admin endpoints keep working

  ASSERT_TRUE(PollUntil([&] { return sandbox.Get("O-3").status == 404; }, seconds(10)));
  EXPECT_EQ(sandbox.Post("O-2", PayoutBody("1")).status, 201);
  auto arrivals = sandbox.Arrivals();
  ASSERT_GE(arrivals.size(), 4u);
  for (size_t i : {size_t{0}, size_t{1}}) {
    EXPECT_EQ(arrivals[i].status, 503) << i;
    EXPECT_GE(arrivals[i].t_us, outage.start_t_us) << i;
    EXPECT_LT(arrivals[i].t_us, outage.end_t_us) << i;
  }
  EXPECT_EQ(arrivals.back().status, 201);
  EXPECT_GE(arrivals.back().t_us, outage.end_t_us);
  EXPECT_EQ(sandbox.Stat("outage_503"), static_cast<int64_t>(arrivals.size()) - 2);
}

TEST(Sandbox, OutageHangHoldsRequestsUnansweredThenClosesThemHavingDoneNothing) {
  SandboxProcess sandbox;
  auto asked = steady_clock::now();
  sandbox.StartOutage("hang", milliseconds(2000));
  EXPECT_EQ(sandbox.Post("O-4", PayoutBody("1"), milliseconds(200)).error, "timeout");
  HttpReply held = sandbox.Get("O-4", seconds(10));
  EXPECT_EQ(held.status, 0);
  EXPECT_EQ(held.error, "closed");
  EXPECT_GE(steady_clock::now() - asked, milliseconds(2000));
  EXPECT_FALSE(sandbox.Ledger().at("O-4").created);
  EXPECT_EQ(sandbox.Get("O-4").status, 404);
  auto arrivals = sandbox.Arrivals();
  ASSERT_EQ(arrivals.size(), 3u);
  EXPECT_EQ(arrivals[0].status, 0);
  EXPECT_EQ(arrivals[1].status, 0);
}

TEST(Sandbox, OutageRefusesUnknownKindsAndBadDurationsAndStartsNothing) {
  SandboxProcess sandbox;
  for (const char* query : {"kind=down&ms=100", "kind=503", "kind=503&ms=0", "kind=503&ms=-5",
                            "kind=503&ms=1e3", "kind=503&ms=86400001", "ms=100"}) {
    HttpReply r = sandbox.Send("POST", std::string("/_sandbox/outage?") + query);
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_EQ(JsonString(r.body, "/error/code"), "INVALID_OUTAGE") << query;
  }
  EXPECT_EQ(sandbox.Get("O-5").status, 404);
  EXPECT_EQ(sandbox.Stat("outages"), 0);
}

TEST(Sandbox, ResetEndsA503Outage) {
  SandboxProcess sandbox;
  sandbox.StartOutage("503", seconds(600));
  EXPECT_EQ(sandbox.Get("O-6").status, 503);
  sandbox.Reset();
  EXPECT_EQ(sandbox.Get("O-6").status, 404);
}

TEST(Sandbox, RequestWhoseClientGaveUpBeforeItWasHandledIsRecordedAsAbandoned) {
  SandboxProcess sandbox;
  ASSERT_EQ(sandbox.Get("AB-1").status, 404);
  sandbox.Freeze();
  // The kernel takes the connection and the request; nothing answers, so the client gives up.
  HttpReply r = sandbox.Get("AB-2", milliseconds(300));
  sandbox.Thaw();
  EXPECT_EQ(r.error, "timeout");
  ASSERT_TRUE(PollUntil([&] { return sandbox.Arrivals().size() == 2; }, seconds(10)));
  auto arrivals = sandbox.Arrivals();
  EXPECT_FALSE(arrivals[0].abandoned);
  EXPECT_EQ(arrivals[1].id, "AB-2");
  EXPECT_EQ(arrivals[1].status, 404);
  EXPECT_TRUE(arrivals[1].abandoned);
  EXPECT_EQ(sandbox.Stat("abandoned"), 1);
}

TEST(Sandbox, ArrivalTimeUsMapsThisProcesssClockOntoTheArrivalsClock) {
  SandboxProcess sandbox;
  auto before = steady_clock::now();
  ASSERT_EQ(sandbox.Get("CL-1").status, 404);
  auto after = steady_clock::now();
  auto arrivals = sandbox.Arrivals();
  ASSERT_EQ(arrivals.size(), 1u);
  EXPECT_GE(arrivals[0].t_us, sandbox.ArrivalTimeUs(before));
  EXPECT_LE(arrivals[0].t_us, sandbox.ArrivalTimeUs(after));
}

TEST(Sandbox, ServesConcurrentClientsOnSeveralThreadsWithoutLosingPayouts) {
  SandboxProcess sandbox({"--threads", "2", "--no-auth"});
  constexpr int kClients = 4, kEach = 25;
  std::vector<std::thread> clients;
  std::atomic<int> created{0};
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kEach; ++i) {
        // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "T" + std::to_string(c) at -O2.
        std::string id = "T";
        id += std::to_string(c);
        id += '-';
        id += std::to_string(i);
        HttpReply r = HttpRequest(sandbox.port(), "POST", "/payouts/" + id, PayoutBody("1"),
                                  {{"X-API-Version", "2"}});
        if (r.status == 201) ++created;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(created.load(), kClients * kEach);
  auto ledger = sandbox.Ledger();
  EXPECT_EQ(ledger.size(), static_cast<size_t>(kClients * kEach));
  for (const auto& [id, e] : ledger) EXPECT_EQ(e.post_count, 1) << id;
  EXPECT_EQ(sandbox.Arrivals().size(), static_cast<size_t>(kClients * kEach));
}

TEST(Sandbox, BasePathPrefixesThePayoutEndpoints) {
  SandboxProcess sandbox({"--base-path", "/v1", "--no-auth"});
  EXPECT_EQ(
      sandbox.Send("POST", "/v1/payouts/BP-1", PayoutBody("1"), {{"X-API-Version", "2"}}).status,
      201);
  EXPECT_EQ(sandbox.Send("GET", "/payouts/BP-1", "", {{"X-API-Version", "2"}}).status, 404);
  EXPECT_EQ(sandbox.Send("GET", "/v1/payouts/BP-1", "", {{"X-API-Version", "2"}}).status, 200);
}

TEST(Sandbox, ResetForgetsEverything) {
  SandboxProcess sandbox;
  ASSERT_EQ(sandbox.Post("Y-1", PayoutBody("1")).status, 201);
  sandbox.Reset();
  EXPECT_TRUE(sandbox.Ledger().empty());
  EXPECT_TRUE(sandbox.Arrivals().empty());
  EXPECT_EQ(sandbox.Get("Y-1").status, 404);
}

TEST(Sandbox, ExitsWithZeroOnSigterm) {
  SandboxProcess sandbox;
  EXPECT_EQ(sandbox.Get("G-1").status, 404);
  EXPECT_EQ(sandbox.Stop(), 0);
}

}  // namespace
}  // namespace payoutd::testing
