// The gateway client against the real payout-sandbox over loopback: every row of the table in
// docs/gateway.md ("Each answer, and what payoutd does"), the rate limit as the gateway saw it,
// auth pause/resume, and 10,000 payouts through faults.
// No sleeps: the io_context runs until a condition holds or a deadline passes.
#include "core/gateway/gateway_client.h"
#include "core/base/log.h"
#include "core/gateway/jwt.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSecret[] = "integration-secret-0123456789";
constexpr char kMerchant[] = "MERCHANT-1";

// ---------------------------------------------------------------------------------------------
// A child process that prints the port it listens on in a line starting with `prefix`, e.g.
// "listening on 127.0.0.1:PORT" (payout-sandbox) or "ACCEPT 127.0.0.1:PORT" (openssl s_server).
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> args, const std::string& prefix) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
    // Read lines (with a deadline) until the one that names the port.
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + seconds(20);
    while (port_ == 0 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char buf[256];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
      for (size_t eol; (eol = text.find('\n')) != std::string::npos; text.erase(0, eol + 1)) {
        const std::string line = text.substr(0, eol);
        const size_t colon = line.rfind(':');
        if (line.rfind(prefix, 0) == 0 && colon != std::string::npos)
          port_ = static_cast<uint16_t>(std::atoi(line.c_str() + colon + 1));
      }
    }
  }
  ~ChildProcess() { Stop(); }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    ::close(out_);  // kept open until now so the child never writes into a closed pipe
  }
  uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  uint16_t port_ = 0;
};

// A payout-sandbox child process on 127.0.0.1 with an OS-chosen port (or `port`).
class Sandbox {
 public:
  explicit Sandbox(std::vector<std::string> flags, uint16_t port = 0)
      : dir_(MakeDir()), process_(Args(dir_, std::move(flags), port), "listening on ") {}
  ~Sandbox() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Stop() { process_.Stop(); }
  bool ok() const { return process_.port() != 0; }
  uint16_t port() const { return process_.port(); }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port()); }

  // Blocking GET of an inspection endpoint.
  std::string Fetch(const std::string& path) const {
    std::string body;
    CURL* e = curl_easy_init();
    const std::string url = base_url() + path;
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(
        e, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) {
          static_cast<std::string*>(u)->append(d, s * n);
          return s * n;
        });
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    curl_easy_perform(e);
    curl_easy_cleanup(e);
    return body;
  }

  struct LedgerEntry {
    bool created = false;
    int64_t posts_received = 0;
    int64_t post_count = 0;
    int64_t distinct_bodies = 0;
    int64_t amount_minor = 0;
    std::string currency;
    std::string account_number;
  };
  std::map<std::string, LedgerEntry> Ledger() const {
    std::map<std::string, LedgerEntry> out;
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(Fetch("/_sandbox/ledger"));
    for (auto [id, v] : doc["payouts"].get_object()) {
      LedgerEntry e;
      e.created = v["created"].get_bool();
      e.posts_received = v["posts_received"].get_int64();
      e.post_count = v["post_count"].get_int64();
      e.distinct_bodies = v["distinct_bodies"].get_int64();
      if (v["amount"].is_object()) {
        e.amount_minor = v["amount"]["minor"].get_int64();
        e.currency = std::string(v["amount"]["currency"].get_string().value());
      }
      if (v["account_number"].is_string())
        e.account_number = std::string(v["account_number"].get_string().value());
      out.emplace(std::string(id), e);
    }
    return out;
  }

  struct Arrival {
    int64_t t_us;
    std::string method;
    std::string id;
    int64_t status;
  };
  std::vector<Arrival> Arrivals() const {
    std::vector<Arrival> out;
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(Fetch("/_sandbox/arrivals"));
    for (simdjson::dom::element a : doc["arrivals"].get_array()) {
      out.push_back({a["t_us"].get_int64(), std::string(a["method"].get_string().value()),
                     std::string(a["id"].get_string().value()), a["status"].get_int64()});
    }
    return out;
  }

 private:
  static std::filesystem::path MakeDir() {
    static int counter = 0;
    auto dir = std::filesystem::temp_directory_path() /
               ("gwtest-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "secret") << kSecret << "\n";
    return dir;
  }
  static std::vector<std::string> Args(const std::filesystem::path& dir,
                                       std::vector<std::string> flags, uint16_t port) {
    // $PAYOUT_SANDBOX overrides the binary, e.g. an optimised one under a sanitizer build.
    const char* bin = std::getenv("PAYOUT_SANDBOX");
    std::vector<std::string> args = {bin && *bin ? bin : PAYOUT_SANDBOX_BIN,
                                     "--listen",
                                     "127.0.0.1:" + std::to_string(port),
                                     "--secret-file",
                                     (dir / "secret").string(),
                                     "--merchant",
                                     kMerchant,
                                     "--no-callbacks"};
    args.insert(args.end(), flags.begin(), flags.end());
    return args;
  }

  std::filesystem::path dir_;
  ChildProcess process_;
};

// ---------------------------------------------------------------------------------------------
class RecordingObserver final : public GatewayObserver {
 public:
  void OnResponse(std::string_view method, int code, double) override {
    ++responses[std::string(method) + " " + std::to_string(code)];
  }
  void OnRetry(std::string_view method, std::string_view reason) override {
    ++retries[std::string(method) + " " + std::string(reason)];
  }
  void OnThrottled() override { ++throttled; }
  void OnPaused(bool p) override { pauses.push_back(p); }
  void OnInFlight(int n) override { max_in_flight = std::max(max_in_flight, n); }
  void OnCircuit(const CircuitEvent& e) override {
    if (e.kind == CircuitEvent::Kind::kOpened) ++circuit_opened;
    if (e.kind == CircuitEvent::Kind::kClosed) ++circuit_closed;
  }
  int Retries(const std::string& key) const {
    auto it = retries.find(key);
    return it == retries.end() ? 0 : it->second;
  }

  std::map<std::string, int> responses;
  std::map<std::string, int> retries;
  int throttled = 0;
  std::vector<bool> pauses;
  int max_in_flight = 0;
  int circuit_opened = 0;
  int circuit_closed = 0;
};

GatewayOptions Options(const std::string& base_url) {
  GatewayOptions o;
  o.base_url = base_url;
  o.merchant_code = kMerchant;
  o.secret = kSecret;
  o.timeout = seconds(10);
  o.connect_timeout = seconds(2);
  o.limits.requests_per_second = 5000;
  o.limits.burst = 100;
  o.limits.max_in_flight = 32;
  o.retry.max_attempts = 6;
  o.retry.initial_backoff = milliseconds(5);
  o.retry.max_backoff = milliseconds(50);
  return o;
}

Payout MakePayout(const std::string& id, int64_t minor = 4205,
                  const std::string& currency = "USD") {
  Payout p;
  p.id = id;
  p.amount_minor = minor;
  p.currency = currency;
  p.account_number = "DE8937040044053201300" + std::to_string(id.size() % 10);
  p.account_name = "Ann Example";
  p.operator_code = "BNK_000";
  p.method = "BANK_TRANSFER";
  return p;
}

// Runs the io_context until `done()` or the deadline; returns done().
template <typename Pred>
bool RunUntil(boost::asio::io_context& io, Pred done, Duration limit = seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(milliseconds(20));
    if (io.stopped()) io.restart();
  }
  return done();
}

struct Harness {
  explicit Harness(const GatewayOptions& options) {
    auto created = GatewayClient::Create(io, options, clock, random, &observer);
    EXPECT_TRUE(created.ok()) << created.error();
    if (created.ok()) client = std::move(created.value());
  }
  ~Harness() {
    if (!client) return;
    client->Shutdown();
    RunUntil(
        io, [&] { return client->idle(); }, seconds(30));
  }
  SubmitResult SubmitAndWait(const Payout& p) {
    std::optional<SubmitResult> result;
    client->Submit(p, [&](SubmitResult r) { result = std::move(r); });
    EXPECT_TRUE(RunUntil(io, [&] { return result.has_value(); })) << "no report for " << p.id;
    return result.value_or(SubmitResult{});
  }
  PollResult PollAndWait(const std::string& id) {
    std::optional<PollResult> result;
    client->Poll(id, [&](PollResult r) { result = std::move(r); });
    EXPECT_TRUE(RunUntil(io, [&] { return result.has_value(); })) << "no poll report for " << id;
    return result.value_or(PollResult{});
  }

  boost::asio::io_context io;
  SystemClock clock;
  SystemRandom random{12345};
  RecordingObserver observer;
  std::unique_ptr<GatewayClient> client;
};

uint16_t UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);  // nothing listens there now: connection refused
  return ntohs(a.sin_port);
}

// ---------------------------------------------------------------------------------------------
TEST(GatewayClient, SubmitCreatesPayoutWithExactAmountAndPollSeesItFinal) {
  Sandbox sandbox({"--final-after-ms", "0"});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  Payout p = MakePayout("OK-1", 9007199254740993);  // beyond double's exact integers
  SubmitResult r = h.SubmitAndWait(p);
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  EXPECT_EQ(r.post_attempts, 1);
  EXPECT_EQ(r.http_status, 201);
  auto ledger = sandbox.Ledger();
  ASSERT_TRUE(ledger.count("OK-1"));
  EXPECT_TRUE(ledger["OK-1"].created);
  EXPECT_EQ(ledger["OK-1"].amount_minor, 9007199254740993);
  EXPECT_EQ(ledger["OK-1"].account_number, p.account_number);

  PollResult pr = h.PollAndWait("OK-1");
  ASSERT_EQ(pr.outcome, PollResult::Outcome::kFound) << pr.message;
  EXPECT_EQ(pr.payout.status, "SUCCESS");
  EXPECT_EQ(pr.payout.amount_minor, 9007199254740993);
  EXPECT_EQ(pr.payout.currency, "USD");
  EXPECT_TRUE(pr.payout.has_fee);
  EXPECT_EQ(pr.payout.fee_minor, 9007199254740993 / 100);
  EXPECT_FALSE(pr.payout.processed_at.empty());
  EXPECT_EQ(h.observer.responses["POST 201"] + h.observer.responses["POST 200"], 1);
}

// A closed send gate (a leader whose lease is not renewed) starts nothing, probes included, and
// asks again and again; once it opens the queued call goes out.
TEST(GatewayClient, ClosedSendGateStartsNothingUntilItOpens) {
  Sandbox sandbox({"--final-after-ms", "0"});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  bool open = false;
  int asked = 0;
  h.client->SetSendGate([&](SteadyTime) {
    ++asked;
    return open;
  });
  std::optional<SubmitResult> result;
  h.client->Submit(MakePayout("GATE-1", 100), [&](SubmitResult r) { result = std::move(r); });
  // Asked at the start and then every kSendGateRecheck: five answers mean it kept waiting.
  ASSERT_TRUE(RunUntil(h.io, [&] { return asked >= 5; }));
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(h.client->in_flight(), 0);
  EXPECT_FALSE(sandbox.Ledger().count("GATE-1")) << "a request started through a closed gate";
  open = true;
  ASSERT_TRUE(RunUntil(h.io, [&] { return result.has_value(); }));
  EXPECT_EQ(result->outcome, SubmitResult::Outcome::kCreated) << result->message;
  EXPECT_TRUE(sandbox.Ledger()["GATE-1"].created);
}

TEST(GatewayClient, PollOfUnknownIdIsNotFound) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  PollResult pr = h.PollAndWait("NOPE-1");
  EXPECT_EQ(pr.outcome, PollResult::Outcome::kNotFound);
  EXPECT_EQ(pr.http_status, 404);
}

TEST(GatewayClient, IdsThatBreakTheUrlAreNeverSent) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  EXPECT_EQ(h.PollAndWait("../_sandbox/reset").outcome, PollResult::Outcome::kFailed);
  SubmitResult r = h.SubmitAndWait(MakePayout("A/B?x=1"));
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kNotCreated);
  EXPECT_EQ(r.post_attempts, 0);
  EXPECT_TRUE(sandbox.Arrivals().empty());
}

TEST(GatewayClient, Rejection422IsFinalWithTheGatewaysMessage) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  Payout p = MakePayout("REJ-1");
  p.operator_code = "BNK_REJECT";
  SubmitResult r = h.SubmitAndWait(p);
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kRejected);
  EXPECT_EQ(r.http_status, 422);
  EXPECT_FALSE(r.message.empty());
  EXPECT_EQ(r.post_attempts, 1);
  EXPECT_FALSE(sandbox.Ledger()["REJ-1"].created);
}

TEST(GatewayClient, Post409WithSameBodyIsCreatedAndWithOtherBodyIsConflict) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  ASSERT_EQ(h.SubmitAndWait(MakePayout("DUP-1", 1000)).outcome, SubmitResult::Outcome::kCreated);

  SubmitResult same = h.SubmitAndWait(MakePayout("DUP-1", 1000));
  EXPECT_EQ(same.outcome, SubmitResult::Outcome::kCreated) << same.message;
  ASSERT_TRUE(same.payout.has_value());
  EXPECT_EQ(same.payout->amount_minor, 1000);

  SubmitResult other = h.SubmitAndWait(MakePayout("DUP-1", 2000));
  EXPECT_EQ(other.outcome, SubmitResult::Outcome::kConflict);
  // Says what the gateway holds, with the account masked.
  const std::string account = MakePayout("DUP-1").account_number;
  EXPECT_NE(other.message.find("10.00 USD"), std::string::npos) << other.message;
  EXPECT_NE(other.message.find(MaskAccount(account)), std::string::npos) << other.message;
  EXPECT_EQ(other.message.find(account), std::string::npos) << other.message;
  ASSERT_TRUE(other.payout.has_value());
  EXPECT_EQ(other.payout->amount_minor, 1000);
  EXPECT_EQ(h.observer.responses["POST 409"], 2);
  EXPECT_EQ(sandbox.Ledger()["DUP-1"].amount_minor, 1000);
}

// An id conflict is any difference in what the gateway holds: amount (above), account, currency.
// Recording a payout to another beneficiary as created would pay the wrong person.
TEST(GatewayClient, Post409WithAnotherAccountIsAConflict) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  ASSERT_EQ(h.SubmitAndWait(MakePayout("ACC-1", 1000)).outcome, SubmitResult::Outcome::kCreated);
  Payout other = MakePayout("ACC-1", 1000);
  other.account_number = "FR7630006000011234567890189";
  SubmitResult r = h.SubmitAndWait(other);
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kConflict) << r.message;
  EXPECT_EQ(r.message.find(other.account_number), std::string::npos)
      << "no full account in a message";
}

TEST(GatewayClient, Post409WithAnotherCurrencyIsAConflict) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  ASSERT_EQ(h.SubmitAndWait(MakePayout("CUR-1", 1000, "USD")).outcome,
            SubmitResult::Outcome::kCreated);
  SubmitResult r = h.SubmitAndWait(MakePayout("CUR-1", 1000, "EUR"));
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kConflict) << r.message;
  EXPECT_NE(r.message.find("USD"), std::string::npos) << r.message;
}

TEST(GatewayClient, CloseAfterCreateIsResolvedWithGetWithoutSecondPost) {
  Sandbox sandbox({"--drop-share", "1", "--faults-on", "post"});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  SubmitResult r = h.SubmitAndWait(MakePayout("DROP-1"));
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  EXPECT_EQ(r.post_attempts, 1);
  ASSERT_TRUE(r.payout.has_value());
  EXPECT_EQ(h.observer.Retries("POST network"), 1);
  auto ledger = sandbox.Ledger();
  EXPECT_EQ(ledger["DROP-1"].posts_received, 1);
  EXPECT_EQ(ledger["DROP-1"].distinct_bodies, 1);
}

TEST(GatewayClient, MalformedSuccessBodyIsResolvedWithGet) {
  Sandbox sandbox({"--malformed-share", "1", "--faults-on", "post"});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  SubmitResult r = h.SubmitAndWait(MakePayout("BAD-1"));
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  EXPECT_EQ(h.observer.Retries("POST bad_json"), 1);
  EXPECT_EQ(sandbox.Ledger()["BAD-1"].posts_received, 1);
}

TEST(GatewayClient, MalformedGetBodyIsRetriedThenPollFails) {
  Sandbox sandbox({"--malformed-share", "1", "--faults-on", "get"});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  ASSERT_EQ(h.SubmitAndWait(MakePayout("BADGET-1")).outcome, SubmitResult::Outcome::kCreated);
  PollResult pr = h.PollAndWait("BADGET-1");
  EXPECT_EQ(pr.outcome, PollResult::Outcome::kFailed);
  EXPECT_EQ(h.observer.Retries("GET bad_json"), 5);  // 6 attempts, 5 retries
}

TEST(GatewayClient, ServerErrorsOnEveryPostEndUnknownAfterMaxAttempts) {
  Sandbox sandbox({"--500-share", "1", "--faults-on", "post"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.retry.max_attempts = 4;
  Harness h(o);
  SubmitResult r = h.SubmitAndWait(MakePayout("E500-1"));
  // POST 500 -> GET 404 -> POST 500 -> GET 404: the POSTs might have landed, so unknown.
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kUnknown);
  EXPECT_EQ(r.post_attempts, 2);
  EXPECT_EQ(h.observer.responses["GET 404"], 2);
  EXPECT_EQ(h.observer.Retries("POST 5xx"), 2);
  EXPECT_FALSE(sandbox.Ledger()["E500-1"].created);
}

TEST(GatewayClient, TransientServerErrorsAreRetriedUntilCreated) {
  Sandbox sandbox({"--500-share", "0.4", "--503-share", "0.3", "--seed", "7"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.retry.max_attempts = 30;
  Harness h(o);
  for (int i = 0; i < 10; ++i) {
    SubmitResult r = h.SubmitAndWait(MakePayout("E5XX-" + std::to_string(i)));
    EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  }
  EXPECT_GT(h.observer.Retries("POST 5xx") + h.observer.Retries("GET 5xx"), 0);
  for (auto& [id, e] : sandbox.Ledger()) {
    EXPECT_TRUE(e.created) << id;
    EXPECT_EQ(e.distinct_bodies, 1) << id;
  }
}

// A refused connection carries nothing: it costs the payout no attempt, however long it lasts.
// Five in a row open the circuit, and the payout is created once the gateway listens again.
TEST(GatewayClient, ConnectionRefusedSpendsNoAttemptAndTheCallWaitsForTheGateway) {
  const uint16_t port = UnusedPort();
  GatewayOptions o = Options("http://127.0.0.1:" + std::to_string(port));
  o.retry.max_attempts = 2;
  Harness h(o);
  std::optional<SubmitResult> result;
  h.client->Submit(MakePayout("REFUSED-1"), [&](SubmitResult r) { result = std::move(r); });
  ASSERT_TRUE(RunUntil(h.io, [&] { return h.client->circuit().open; }));
  EXPECT_NE(h.client->circuit().cause.find("onnect"), std::string::npos)
      << h.client->circuit().cause;
  EXPECT_EQ(h.observer.circuit_opened, 1);
  EXPECT_GE(h.observer.responses["POST 0"], 5) << "five refusals in a row open the circuit";
  EXPECT_FALSE(result.has_value()) << "refusals beyond max_attempts must not end the payout";

  Sandbox sandbox({"--final-after-ms", "0"}, port);
  ASSERT_TRUE(sandbox.ok()) << "port " << port << " was taken meanwhile";
  ASSERT_TRUE(RunUntil(h.io, [&] { return result.has_value(); }));
  EXPECT_EQ(result->outcome, SubmitResult::Outcome::kCreated) << result->message;
  EXPECT_EQ(result->post_attempts, 1) << "refused connections are not POSTs sent";
  EXPECT_EQ(h.observer.circuit_closed, 1);
  EXPECT_FALSE(h.client->circuit().open);
  EXPECT_EQ(sandbox.Ledger()["REFUSED-1"].posts_received, 1);
}

TEST(GatewayClient, TimedOutPostIsResolvedWithGet) {
  Sandbox sandbox({"--slow-share", "1", "--slow-ms", "3000", "--faults-on", "post"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.timeout = milliseconds(300);
  Harness h(o);
  SubmitResult r = h.SubmitAndWait(MakePayout("SLOW-1"));
  EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  EXPECT_EQ(r.post_attempts, 1);
  EXPECT_EQ(h.observer.Retries("POST timeout"), 1);
}

TEST(GatewayClient, TimedOutPollsFailAfterMaxAttempts) {
  Sandbox sandbox({"--slow-share", "1", "--slow-ms", "3000", "--faults-on", "get"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.timeout = milliseconds(200);
  o.retry.max_attempts = 2;
  Harness h(o);
  PollResult pr = h.PollAndWait("SLOWGET-1");
  EXPECT_EQ(pr.outcome, PollResult::Outcome::kFailed);
  EXPECT_EQ(h.observer.Retries("GET timeout"), 1);
}

// Every 429 pauses the whole client for Retry-After: the gateway sees nothing from us until then.
TEST(GatewayClient, RetryAfterSecondsPausesTheWholeClient) {
  Sandbox sandbox({"--429-share", "0.5", "--retry-after-s", "1", "--seed", "3"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.limits.max_in_flight = 1;  // one request at a time: the gap after a 429 is the pause alone
  Harness h(o);
  for (int i = 0; i < 4; ++i) {
    SubmitResult r = h.SubmitAndWait(MakePayout("THR-" + std::to_string(i)));
    EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  }
  std::vector<Sandbox::Arrival> arrivals = sandbox.Arrivals();
  int throttles = 0;
  for (size_t i = 0; i + 1 < arrivals.size(); ++i) {
    if (arrivals[i].status != 429) continue;
    ++throttles;
    EXPECT_GE(arrivals[i + 1].t_us - arrivals[i].t_us, 1'000'000)
        << "request " << i + 1 << " came too soon";
  }
  EXPECT_GT(throttles, 0);
  EXPECT_EQ(h.observer.throttled, throttles);
}

TEST(GatewayClient, RetryAfterHttpDatePausesTheWholeClient) {
  // The sandbox sends now + 2 s as an HTTP-date (whole seconds): at least 1 s from the 429.
  Sandbox sandbox(
      {"--429-share", "0.5", "--retry-after-s", "1", "--retry-after-date", "--seed", "3"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.limits.max_in_flight = 1;
  Harness h(o);
  for (int i = 0; i < 3; ++i) {
    SubmitResult r = h.SubmitAndWait(MakePayout("THD-" + std::to_string(i)));
    EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated) << r.message;
  }
  std::vector<Sandbox::Arrival> arrivals = sandbox.Arrivals();
  int throttles = 0;
  for (size_t i = 0; i + 1 < arrivals.size(); ++i) {
    if (arrivals[i].status != 429) continue;
    ++throttles;
    EXPECT_GE(arrivals[i + 1].t_us - arrivals[i].t_us, 1'000'000)
        << "request " << i + 1 << " came too soon";
  }
  EXPECT_GT(throttles, 0);
}

// The largest number of times inside any half-open one-second window; `first` is where it starts.
template <typename T, typename F>
size_t MaxPerSecond(const std::vector<T>& v, F micros, size_t* first) {
  size_t worst = 0, lo = 0;
  for (size_t hi = 0; hi < v.size(); ++hi) {
    while (micros(v[hi]) - micros(v[lo]) >= 1'000'000) ++lo;
    if (hi - lo + 1 > worst) *first = lo;
    worst = std::max(worst, hi - lo + 1);
  }
  return worst;
}

TEST(GatewayClient, RateLimitHoldsAtTheGatewayAndBacklogUsesIt) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.limits.requests_per_second = 200;
  o.limits.burst = 10;
  o.limits.max_in_flight = 64;
  // Our own starts, as the observer sees them (in-flight count going up).
  struct StartObserver : GatewayObserver {
    void OnInFlight(int n) override {
      if (n > last) starts.push_back(std::chrono::steady_clock::now());
      last = n;
    }
    int last = 0;
    std::vector<std::chrono::steady_clock::time_point> starts;
  };
  StartObserver observer;
  boost::asio::io_context io;
  SystemClock clock;
  SystemRandom random(1);
  auto client = std::move(GatewayClient::Create(io, o, clock, random, &observer).value());
  // The first 60 payouts warm the gateway up (its first requests, on new connections, are stamped
  // in bunches whatever we do) and drain the burst; the next 640 are a ~3 s backlog at the rate.
  const int warm = 60, n = 640;
  int left = warm + n;
  for (int i = 0; i < warm + n; ++i)
    client->Submit(MakePayout((i < warm ? "WARM-" : "RL-") + std::to_string(i)),
                   [&](SubmitResult r) {
                     EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated);
                     --left;
                   });
  ASSERT_TRUE(RunUntil(
      io, [&] { return left == 0; }, seconds(30)));

  // Every start, burst included: never more than rps + burst in a second.
  size_t first = 0;
  auto us = [&](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t - observer.starts[0]).count();
  };
  ASSERT_EQ(observer.starts.size(), static_cast<size_t>(warm + n));
  EXPECT_LE(MaxPerSecond(observer.starts, us, &first), 210u) << "our starts, from start " << first;

  // As the gateway saw the backlog.
  std::vector<Sandbox::Arrival> a;
  for (auto& x : sandbox.Arrivals())
    if (x.id.rfind("RL-", 0) == 0) a.push_back(x);
  ASSERT_EQ(a.size(), static_cast<size_t>(n));
  const size_t worst = MaxPerSecond(
      a, [](const Sandbox::Arrival& x) { return x.t_us; }, &first);
  EXPECT_LE(worst, 210u) << "more than rps + burst in the second from arrival " << first;
  const double span_s = (a.back().t_us - a.front().t_us) / 1e6;
  const double rate = (a.size() - 1) / span_s;
  EXPECT_GE(rate, 0.9 * 200) << "backlog used only " << rate << " req/s";
  EXPECT_LE(rate, 205);  // arrival jitter only
  client->Shutdown();
  RunUntil(io, [&] { return client->idle(); });
}

TEST(GatewayClient, ReconfigureRaisesTheRateForQueuedWork) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.limits.requests_per_second = 1;  // 20 payouts would take ~20 s
  o.limits.burst = 1;
  Harness h(o);
  int left = 20;
  for (int i = 0; i < 20; ++i)
    h.client->Submit(MakePayout("RC-" + std::to_string(i)), [&](SubmitResult r) {
      EXPECT_EQ(r.outcome, SubmitResult::Outcome::kCreated);
      --left;
    });
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return left == 19; }, seconds(5)));
  const auto changed = std::chrono::steady_clock::now();
  LimitOptions faster = o.limits;
  faster.requests_per_second = 1000;
  faster.burst = 10;
  h.client->Reconfigure(faster, o.retry);
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return left == 0; }, seconds(10)));
  EXPECT_LT(std::chrono::steady_clock::now() - changed, seconds(3));
}

TEST(GatewayClient, TokensAreAcceptedByTheGateway) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  Harness h(o);  // a token's renewal is tested in fake time: tests/unit/gateway_tokens_test.cc
  ASSERT_EQ(h.SubmitAndWait(MakePayout("TOK-1")).outcome, SubmitResult::Outcome::kCreated);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(h.PollAndWait("TOK-1").outcome, PollResult::Outcome::kFound);
  EXPECT_EQ(h.observer.Retries("POST auth") + h.observer.Retries("GET auth"), 0);
  EXPECT_FALSE(h.client->paused());
}

TEST(GatewayClient, StaticAuthSendsTheSecretAsTheBearerTokenAsIs) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  // A token made elsewhere (here: signed by the test) is the whole secret in static mode.
  SystemRandom random(3);
  const int64_t now =
      std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  GatewayOptions o = Options(sandbox.base_url());
  o.auth_mode = GatewayOptions::AuthMode::kStatic;
  o.merchant_code.clear();
  o.secret = SignJwt(NewJwtClaims({"POST /payouts/STATIC-1", "GET /payouts/STATIC-1"}, kMerchant,
                                  now, 600, random),
                     kSecret);
  Harness h(o);
  EXPECT_EQ(h.SubmitAndWait(MakePayout("STATIC-1")).outcome, SubmitResult::Outcome::kCreated);
  EXPECT_EQ(h.PollAndWait("STATIC-1").outcome, PollResult::Outcome::kFound);
  EXPECT_EQ(h.observer.Retries("POST auth"), 0);
}

TEST(GatewayClient, WrongSecretPausesSendingAndNeverFailsThePayout) {
  Sandbox sandbox({});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.secret = "not-the-secret";
  o.retry.max_backoff = milliseconds(100);
  Harness h(o);
  std::optional<SubmitResult> result;
  h.client->Submit(MakePayout("AUTH-1"), [&](SubmitResult r) { result = r; });
  h.client->Submit(MakePayout("AUTH-2"), [&](SubmitResult) {});
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.client->paused(); }, seconds(10)));
  EXPECT_EQ(h.observer.pauses, std::vector<bool>{true});
  // Probes keep coming every max_backoff, and the payouts stay outstanding, not failed.
  const int before = h.observer.Retries("POST auth");
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.observer.Retries("POST auth") >= before + 3; }, seconds(10)));
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(h.client->outstanding(), 2u);
  EXPECT_FALSE(sandbox.Ledger()["AUTH-1"].created);
  h.client->Shutdown();
  ASSERT_TRUE(RunUntil(h.io, [&] { return h.client->idle(); }));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->outcome, SubmitResult::Outcome::kCancelled);
}

TEST(GatewayClient, PausedClientResumesWhenTheGatewayAcceptsTokensAgain) {
  // The gateway first knows another secret; then it is restarted on the same port with ours.
  auto wrong = std::make_unique<Sandbox>(std::vector<std::string>{});
  ASSERT_TRUE(wrong->ok());
  const uint16_t port = wrong->port();
  GatewayOptions o = Options(wrong->base_url());
  o.secret = "rotated-secret";
  o.retry.max_backoff = milliseconds(100);
  Harness h(o);
  std::optional<SubmitResult> result;
  h.client->Submit(MakePayout("RESUME-1"), [&](SubmitResult r) { result = r; });
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.client->paused(); }, seconds(10)));
  wrong.reset();

  // payout-sandbox reads the secret from a file; start it with the client's.
  const std::string secret_file =
      (std::filesystem::temp_directory_path() / ("gwtest-rotated-" + std::to_string(::getpid())))
          .string();
  std::ofstream(secret_file) << "rotated-secret\n";
  Sandbox restarted({"--secret-file", secret_file}, port);  // the later flag wins
  ASSERT_TRUE(restarted.ok());
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return result.has_value(); }, seconds(20)));
  EXPECT_EQ(result->outcome, SubmitResult::Outcome::kCreated) << result->message;
  EXPECT_FALSE(h.client->paused());
  EXPECT_EQ(h.observer.pauses, (std::vector<bool>{true, false}));
  EXPECT_TRUE(restarted.Ledger()["RESUME-1"].created);
  std::filesystem::remove(secret_file);
}

TEST(GatewayClient, ShutdownCancelsQueuedCallsAndLetsInFlightFinish) {
  Sandbox sandbox({"--latency-ms", "200"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.limits.max_in_flight = 2;
  Harness h(o);
  std::map<SubmitResult::Outcome, int> outcomes;
  for (int i = 0; i < 10; ++i)
    h.client->Submit(MakePayout("SD-" + std::to_string(i)),
                     [&](SubmitResult r) { ++outcomes[r.outcome]; });
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.client->in_flight() == 2; }, seconds(10)));
  h.client->Shutdown();
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.client->idle(); }, seconds(10)));
  EXPECT_EQ(outcomes[SubmitResult::Outcome::kCreated], 2);
  EXPECT_EQ(outcomes[SubmitResult::Outcome::kCancelled], 8);
  std::optional<SubmitResult> late;
  h.client->Submit(MakePayout("SD-late"), [&](SubmitResult r) { late = r; });
  ASSERT_TRUE(RunUntil(h.io, [&] { return late.has_value(); }));
  EXPECT_EQ(late->outcome, SubmitResult::Outcome::kCancelled);
}

TEST(GatewayClient, CancelAbortsRequestsInFlight) {
  Sandbox sandbox({"--latency-ms", "5000"});
  ASSERT_TRUE(sandbox.ok());
  Harness h(Options(sandbox.base_url()));
  std::vector<SubmitResult> results;
  for (int i = 0; i < 3; ++i)
    h.client->Submit(MakePayout("CX-" + std::to_string(i)),
                     [&](SubmitResult r) { results.push_back(r); });
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.client->in_flight() == 3; }, seconds(10)));
  const auto started = std::chrono::steady_clock::now();
  h.client->Cancel();
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return h.client->idle(); }, seconds(10)));
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(2));
  ASSERT_EQ(results.size(), 3u);
  // A POST cut off mid-flight may have landed: the caller must resolve it.
  for (auto& r : results) EXPECT_EQ(r.outcome, SubmitResult::Outcome::kUnknown);
  EXPECT_EQ(h.client->in_flight(), 0);
}

// TLS against `openssl s_server -www` (it answers any GET with an HTML status page, which is no
// payout JSON: a handshake that succeeds shows up as a GET 200 with an unusable body).
TEST(GatewayClient, TlsVerifiesThePeerByDefaultAndHonoursCaFile) {
  const auto dir = std::filesystem::temp_directory_path() / ("gwtls-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  const std::string make_cert =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  if (std::system(make_cert.c_str()) != 0)
    GTEST_SKIP() << "no openssl command to make a certificate";
  ChildProcess server(
      {"openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key, "-www"},
      "ACCEPT");
  ASSERT_NE(server.port(), 0);
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port());

  auto poll_once = [&](GatewayOptions o) {
    o.retry.max_attempts = 1;
    Harness h(o);
    PollResult r = h.PollAndWait("TLS-1");
    return std::make_pair(r, h.observer.responses["GET 200"]);
  };
  // Default: verify on, system store: the self-signed certificate is refused. No request reaches
  // the gateway, so the call waits (the circuit opens and says why) instead of failing.
  {
    std::optional<PollResult> refused;  // before h: ~Harness delivers the cancelled poll into it
    Harness h(Options(url));
    h.client->Poll("TLS-1", [&](PollResult r) { refused = std::move(r); });
    ASSERT_TRUE(RunUntil(h.io, [&] { return h.client->circuit().open; }));
    EXPECT_NE(h.client->circuit().cause.find("certificate"), std::string::npos)
        << h.client->circuit().cause;
    EXPECT_FALSE(refused.has_value());
    EXPECT_EQ(h.observer.responses["GET 200"], 0);
  }
  // ca_file names it: the handshake succeeds and the request is answered.
  GatewayOptions with_ca = Options(url);
  with_ca.ca_file = cert;
  auto [trusted, trusted_200s] = poll_once(with_ca);
  EXPECT_EQ(trusted_200s, 1) << trusted.message;
  EXPECT_EQ(trusted.message.find("certificate"), std::string::npos) << trusted.message;
  // verify_tls off: answered too.
  GatewayOptions unverified = Options(url);
  unverified.verify_tls = false;
  EXPECT_EQ(poll_once(unverified).second, 1);
  server.Stop();
  std::filesystem::remove_all(dir);
}

TEST(GatewayClient, TenThousandPayoutsThroughFaultsAreEachCreatedOnceWithOneBody) {
  Sandbox sandbox({"--500-share", "0.05", "--503-share", "0.04", "--429-share", "0.03",
                   "--retry-after-s", "0", "--drop-share", "0.04", "--malformed-share", "0.04",
                   "--seed", "11", "--final-after-ms", "0"});
  ASSERT_TRUE(sandbox.ok());
  GatewayOptions o = Options(sandbox.base_url());
  o.limits.requests_per_second = 20000;
  o.limits.burst = 200;
  o.limits.max_in_flight = 64;
  o.retry.max_attempts = 25;
  o.retry.initial_backoff = milliseconds(1);
  o.retry.max_backoff = milliseconds(20);
  Harness h(o);
  const int n = 10000;
  std::map<SubmitResult::Outcome, int> outcomes;
  int left = n;
  std::map<std::string, int64_t> amounts;
  for (int i = 0; i < n; ++i) {
    Payout p = MakePayout("BULK-" + std::to_string(i), 100 + i);
    amounts[p.id] = p.amount_minor;
    h.client->Submit(p, [&](SubmitResult r) {
      ++outcomes[r.outcome];
      --left;
    });
  }
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil(
      h.io, [&] { return left == 0; }, seconds(120)));
  const double seconds_taken =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(outcomes[SubmitResult::Outcome::kCreated], n);
  EXPECT_LE(h.observer.max_in_flight, 64);
  auto ledger = sandbox.Ledger();
  ASSERT_EQ(ledger.size(), static_cast<size_t>(n));
  int created = 0;
  for (auto& [id, e] : ledger) {
    created += e.created;
    EXPECT_EQ(e.distinct_bodies, 1) << id;
    EXPECT_EQ(e.amount_minor, amounts[id]) << id;
  }
  EXPECT_EQ(created, n);
  int retries = 0;
  for (auto& [k, v] : h.observer.retries) retries += v;
  EXPECT_GT(retries, n / 10) << "faults were injected";
  std::printf("10k payouts with faults: %.2f s, %d retries\n", seconds_taken, retries);
}

}  // namespace
}  // namespace payoutd
