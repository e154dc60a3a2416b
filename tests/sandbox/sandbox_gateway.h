// The sandbox gateway's behaviour, apart from the network: given one HTTP request it decides the
// reply (status, body, headers, delay, or "drop the connection") following docs/gateway.md and the
// provider's seed page, and keeps the ledger that tests inspect. Fault injection is decided here
// from a seeded random source, so a given --seed and request order give the same faults.
//
// Thread-safe: one mutex guards all state (the server may run several io threads).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"

namespace payoutd::sandbox {

using Clock = std::chrono::steady_clock;

struct SandboxOptions {
  std::string listen = "127.0.0.1:0";
  std::string secret;    // HMAC key; from --secret-file
  std::string merchant;  // expected JWT sub
  bool auth = true;      // --no-auth turns token checks off
  bool require_api_version = true;
  std::string base_path;         // prefix before /payouts, e.g. "/v1"
  bool replay_200 = false;       // repeated identical POST answers 200 (else 409)
  int64_t final_after_ms = 200;  // CREATED -> PENDING at half of it, final at it
  bool callbacks = true;
  uint64_t seed = 1;
  int threads = 1;
  std::string port_file;
  size_t max_arrivals = 1'000'000;

  // Faults. Shares are probabilities in [0, 1].
  bool faults_on_post = true;
  bool faults_on_get = true;
  int64_t latency_ms = 0;  // added to every /payouts reply
  int64_t jitter_ms = 0;   // plus uniform [0, jitter_ms]
  double share_500 = 0;
  double share_503 = 0;
  double share_429 = 0;
  int64_t retry_after_s = 1;
  bool retry_after_http_date = false;
  double drop_share = 0;  // POST: payout created, then the connection closed unanswered
  double slow_share = 0;  // reply after slow_ms (the operation itself is done at once)
  int64_t slow_ms = 5000;
  double malformed_share = 0;  // 200/201 replies get a broken JSON body
  double stuck_share = 0;      // created payouts that never become final
  int64_t rate_limit = 0;  // > 0: at most N /payouts requests in any one-second window; 429 beyond
};

struct Header {
  std::string name;
  std::string value;
};

// A callback to send when a payout becomes final.
struct CallbackPlan {
  std::string id;
  std::string url;
  Clock::time_point due;
};

struct Reply {
  int status = 200;
  std::string body;                      // JSON
  std::vector<Header> headers;           // besides Content-Type
  std::chrono::milliseconds delay{0};    // wait this long before answering (or before dropping)
  bool drop = false;                     // close the connection without answering
  std::optional<CallbackPlan> callback;  // schedule this callback
  // Once this reply is written, close the listener and every connection, and listen again on the
  // same port after this long (POST /_sandbox/outage?kind=refuse). Sockets are the server's.
  std::chrono::milliseconds refuse_connections_for{0};
};

struct Request {
  std::string_view method;
  std::string_view target;
  std::string_view authorization;  // the Authorization header, "" when absent
  std::string_view user_agent;     // the User-Agent header, "" when absent (kept in arrivals)
  bool has_api_version = false;
  std::string_view body;
  // The client had closed its connection before the request was handled (it gave up waiting,
  // e.g. while the gateway process was stopped): no reply can reach it. Recorded in arrivals.
  bool abandoned = false;
};

class SandboxGateway {
 public:
  explicit SandboxGateway(SandboxOptions options);

  Reply Handle(const Request& request, Clock::time_point now) EXCLUDES(mu_);

  // The GET body of a payout, as sent in a callback; nullopt when it does not exist.
  std::optional<std::string> PayoutJson(const std::string& id, Clock::time_point now) EXCLUDES(mu_);
  void NoteCallback(bool delivered) EXCLUDES(mu_);

  const SandboxOptions& options() const { return options_; }

 private:
  struct Body {
    int64_t amount_minor = 0;
    int digits = 2;
    std::string amount_text;  // as received (shortest form, verified)
    std::string currency;
    std::string method_code;
    std::string account_name;
    std::string account_number;
    std::string operator_code;
    std::string email;
    std::string callback_url;
    bool operator==(const Body&) const = default;
    uint64_t Fingerprint() const;  // for counting distinct bodies; equality uses operator==
  };
  struct Entry {
    bool created = false;
    Body body;                     // the stored payout (first accepted body)
    std::vector<uint64_t> bodies;  // fingerprints of distinct valid bodies seen
    int64_t posts_received = 0;    // every POST arrival for this id
    int64_t post_count = 0;        // POSTs that reached the payout logic (valid body)
    int64_t get_count = 0;
    int64_t refused_count = 0;  // 422s
    Clock::time_point created_at{};
    std::chrono::system_clock::time_point created_wall{};
    bool stuck = false;
  };
  struct Arrival {
    int64_t t_us;
    bool post;
    std::string id;
    int status;  // 0 = dropped (no reply)
    bool abandoned;
    std::string agent;  // User-Agent
  };
  // POST /_sandbox/outage: the whole gateway down for a while, every /payouts request failing
  // the same way (the failures docs/gateway.md calls transient, all at once).
  enum class Outage { kNone, kRefuse, k503, kHang };

  // The steps of Handle(), all under mu_. An Entry passed in is one of entries_: guarded too.

  Reply HandleSandbox(const Request& r, Clock::time_point now) REQUIRES(mu_);
  Reply HandlePost(const std::string& id, const Request& r, Clock::time_point now) REQUIRES(mu_);
  Reply HandleGet(const std::string& id, Clock::time_point now) REQUIRES(mu_);
  Reply StartOutage(const Request& r, Clock::time_point now) REQUIRES(mu_);
  std::optional<Reply> DuringOutage(Clock::time_point now) REQUIRES(mu_);
  void Record(size_t arrival, const Reply& reply) REQUIRES(mu_);
  int64_t SinceStartUs(Clock::time_point t) const;
  bool Draw(double share) REQUIRES(mu_);
  bool RateLimited(Clock::time_point now) REQUIRES(mu_);
  std::string StatusOf(const Entry& e, Clock::time_point now) const REQUIRES(mu_);
  bool IsFinal(const Entry& e, Clock::time_point now) const REQUIRES(mu_);
  std::string PostJson(const std::string& id, const Entry& e) const REQUIRES(mu_);
  std::string GetJson(const std::string& id, const Entry& e, Clock::time_point now) const
      REQUIRES(mu_);
  std::string LedgerJson(Clock::time_point now) const REQUIRES(mu_);
  std::string ArrivalsJson() const REQUIRES(mu_);
  std::string StatsJson() const REQUIRES(mu_);
  void Count(int status) REQUIRES(mu_);
  Header RetryAfter(int64_t seconds) const;

  const SandboxOptions options_;
  const Clock::time_point start_;
  Mutex mu_;
  std::mt19937_64 random_ GUARDED_BY(mu_);
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  std::vector<Arrival> arrivals_ GUARDED_BY(mu_);
  int64_t arrivals_dropped_ GUARDED_BY(mu_) = 0;
  // Accepted request times in the last second (ring).
  std::vector<Clock::time_point> window_ GUARDED_BY(mu_);
  size_t window_head_ GUARDED_BY(mu_) = 0;
  size_t window_size_ GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> stats_ GUARDED_BY(mu_);
  std::map<int, int64_t> by_status_ GUARDED_BY(mu_);
  // POST /_sandbox/refuse-auth?on=1: every /payouts request gets 401.
  bool refuse_auth_ GUARDED_BY(mu_) = false;
  Outage outage_ GUARDED_BY(mu_) = Outage::kNone;
  Clock::time_point outage_end_ GUARDED_BY(mu_){};
};

}  // namespace payoutd::sandbox
