#include "core/gateway/gateway_client.h"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <deque>
#include <unordered_map>

#include "core/base/failpoint.h"
#include "core/base/liveness.h"
#include "core/base/log.h"
#include "core/base/thread_checker.h"
#include "core/gateway/circuit_breaker.h"
#include "core/gateway/http_client.h"
#include "core/gateway/jwt.h"
#include "core/gateway/payout_json.h"
#include "core/gateway/rate_limiter.h"
#include "core/gateway/retry_policy.h"
#include "core/money/money.h"

namespace payoutd {
namespace {

namespace asio = boost::asio;

constexpr size_t kMaxCachedTokens = 100'000;

std::chrono::milliseconds ToMillis(Duration d) {
  return std::chrono::ceil<std::chrono::milliseconds>(std::max(d, Duration::zero()));
}

class GatewayClientImpl final : public GatewayClient {
 public:
  GatewayClientImpl(asio::io_context& io, GatewayOptions options, CurrencyTable currencies,
                    Clock& clock, Random& random, GatewayObserver* observer,
                    std::unique_ptr<HttpTransport> transport)
      : io_(io),
        options_(std::move(options)),
        currencies_(std::move(currencies)),
        clock_(clock),
        random_(random),
        observer_(observer ? observer : &null_observer_),
        http_(transport
                  ? std::move(transport)
                  : std::make_unique<HttpClient>(
                        io, HttpClientOptions{options_.ca_file, options_.verify_tls,
                                              std::max<long>(options_.limits.max_in_flight, 1)})),
        limiter_(options_.limits, clock.Now()),
        policy_(options_.retry),
        dispatch_timer_(clock.NewTimer(io)),
        probe_timer_(clock.NewTimer(io)) {
    while (!options_.base_url.empty() && options_.base_url.back() == '/')
      options_.base_url.pop_back();
  }

  void Submit(const Payout& payout, std::function<void(SubmitResult)> done) override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    auto call = NewCall(Call::Kind::kSubmit, payout.id);
    call->submit_done = std::move(done);
    call->payout = payout;
    call->next = Method::kPost;
    const std::optional<int> digits = currencies_.MinorUnits(payout.currency);
    if (!digits || payout.amount_minor <= 0 || !IsValidId(payout.id)) {
      // The validator never lets this through; refuse without sending anything.
      call->message =
          "cannot build the request: invalid id, unknown currency or non-positive amount";
      PostReport(std::move(call), SubmitResult::Outcome::kNotCreated);
      return;
    }
    call->body = BuildPayoutRequest(payout, *digits, options_.callback_url);
    Accept(std::move(call));
  }

  void Poll(const std::string& id, std::function<void(PollResult)> done) override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    auto call = NewCall(Call::Kind::kPoll, id);
    call->poll_done = std::move(done);
    call->next = Method::kGet;
    if (!IsValidId(id)) {
      // Never put an id that breaks the URL on the wire. The validator never lets one through.
      call->message = "invalid payout id";
      ++posted_reports_;
      std::shared_ptr<Call> shared(std::move(call));
      asio::post(io_, [this, shared, alive = alive_.token()] {
        if (!alive) return;
        --posted_reports_;
        Deliver(*shared, std::nullopt, PollResult::Outcome::kFailed);
      });
      return;
    }
    Accept(std::move(call));
  }

  void Reconfigure(const LimitOptions& limits, const RetryOptions& retry) override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    options_.limits = limits;
    options_.retry = retry;
    limiter_.Reconfigure(limits, clock_.Now());
    http_->SetMaxConnections(std::max(limits.max_in_flight, 1));
    policy_ = RetryPolicy(retry);
    dispatch_armed_ = false;
    dispatch_timer_->Cancel();
    Dispatch();
  }

  void SetSendGate(std::function<bool(SteadyTime now)> gate) override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    send_gate_ = std::move(gate);
    Dispatch();
  }

  void Shutdown() override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    if (shutdown_) return;
    shutdown_ = true;
    dispatch_timer_->Cancel();
    probe_timer_->Cancel();
    probe_armed_ = false;
    ready_.clear();
    // Everything not in flight (queued or waiting for its backoff) reports now; requests in flight
    // report when they finish.
    std::vector<uint64_t> waiting;
    for (auto& [id, call] : calls_)
      if (!call->in_flight) waiting.push_back(id);
    for (uint64_t id : waiting) {
      auto node = calls_.extract(id);
      std::unique_ptr<Call> call = std::move(node.mapped());
      call->backoff.reset();
      PostReport(std::move(call), std::nullopt);
    }
  }

  size_t WithdrawSubmissions(
      const std::function<bool(const std::string& payout_id)>& which) override {
    std::vector<uint64_t> taken;
    for (auto& [id, call] : calls_)
      if (call->kind == Call::Kind::kSubmit && !call->in_flight && which(call->payout_id))
        taken.push_back(id);
    for (uint64_t id : taken) {
      ready_.erase(std::remove(ready_.begin(), ready_.end(), id), ready_.end());
      auto node = calls_.extract(id);
      std::unique_ptr<Call> call = std::move(node.mapped());
      call->backoff.reset();
      PostReport(std::move(call), std::nullopt);
    }
    return taken.size();
  }

  void Cancel() override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    Shutdown();
    for (auto& [id, call] : calls_)
      if (call->in_flight) call->cancelled = true;
    http_->AbortAll();
  }

  size_t outstanding() const override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    return calls_.size() + posted_reports_;
  }
  int in_flight() const override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    return limiter_.in_flight();
  }
  bool paused() const override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    return auth_paused_;
  }

  CircuitState circuit() const override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    CircuitState s;
    s.open = breaker_.open();
    if (!s.open) return s;
    s.since = breaker_.opened_at();
    s.cause = breaker_.cause();
    s.probes = breaker_.probes();
    return s;
  }

  void SetCircuitListener(std::function<void(const CircuitEvent&)> listener) override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    circuit_listener_ = std::move(listener);
  }

  void OpenCircuit(WallTime since, const std::string& cause) override {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    if (breaker_.open()) return;
    breaker_.OpenSince(clock_.Now(), since, cause);
    log::Warn("gateway.circuit_open",
              {{"cause", cause},
               {"since", std::to_string(ToMillis(since.time_since_epoch()).count())},
               {"restored", "true"},
               {"action", "no request starts but probes until the gateway answers"}});
    CircuitEvent e;
    e.kind = CircuitEvent::Kind::kOpened;
    e.since = since;
    e.cause = cause;
    e.next_probe = clock_.WallNow() + ProbeDelay();
    NotifyCircuit(e);
    ArmProbeTimer();
  }

 private:
  struct Call {
    enum class Kind { kSubmit, kPoll } kind = Kind::kSubmit;
    uint64_t id = 0;
    std::string payout_id;
    Payout payout;     // Submit only
    std::string body;  // Submit only: the one body this id is ever sent with
    Method next = Method::kPost;
    bool in_flight = false;
    bool cancelled = false;
    bool probe = false;  // sent to test the gateway (credentials or outage) while paused
    bool auth_retried = false;
    bool maybe_created = false;  // a POST may have reached the gateway, or it said the id exists
    int attempts = 0;            // requests that count towards retry.max_attempts
    int systemic = 0;            // of those, gateway-wide failures: given back if the circuit opens
    int unbilled = 0;            // failed requests that cost no attempt (never reached the gateway)
    int post_attempts = 0;
    int http_status = 0;
    std::string message;
    std::optional<GatewayPayout> view;  // the gateway's view, from a GET
    std::unique_ptr<Timer> backoff;
    std::function<void(SubmitResult)> submit_done;
    std::function<void(PollResult)> poll_done;
  };

  struct CachedToken {
    std::string token;
    int64_t exp = 0;
  };

  std::unique_ptr<Call> NewCall(Call::Kind kind, const std::string& payout_id) {
    auto call = std::make_unique<Call>();
    call->kind = kind;
    call->id = next_call_id_++;
    call->payout_id = payout_id;
    return call;
  }

  void Accept(std::unique_ptr<Call> call) {
    if (shutdown_) {
      PostReport(std::move(call), std::nullopt);
      return;
    }
    const uint64_t id = call->id;
    calls_.emplace(id, std::move(call));
    ready_.push_back(id);
    Dispatch();
  }

  // --- starting requests ---

  void Dispatch() {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    if (shutdown_) return;
    while (!ready_.empty()) {
      if (send_gate_ && !send_gate_(clock_.Now())) {
        // Not allowed to start anything now (no lease): look again soon, start nothing meanwhile.
        ArmDispatchTimer(clock_.Now() + kSendGateRecheck);
        return;
      }
      if (auth_paused_ || breaker_.open()) {
        MaybeProbe();
        return;
      }
      if (limiter_.FullyInFlight()) return;  // a finishing request calls Dispatch again
      const SteadyTime now = clock_.Now();
      if (!limiter_.TryStart(now)) {
        ArmDispatchTimer(limiter_.NextStartTime(now));
        return;
      }
      const uint64_t id = ready_.front();
      ready_.pop_front();
      Send(*calls_.at(id));
    }
  }

  void ArmDispatchTimer(SteadyTime at) {
    if (dispatch_armed_ && dispatch_at_ <= at) return;
    dispatch_armed_ = true;
    dispatch_at_ = at;
    dispatch_timer_->WaitUntil(at, [this] {
      dispatch_armed_ = false;
      Dispatch();
    });
  }

  // Sends the call's next request. The caller has taken a start from the limiter.
  void Send(Call& call) {
    const bool post = call.next == Method::kPost;
    HttpRequest request;
    request.method = post ? "POST" : "GET";
    request.url = options_.base_url + "/payouts/" + call.payout_id;
    request.timeout = ToMillis(options_.timeout);
    request.connect_timeout = ToMillis(options_.connect_timeout);
    request.headers.reserve(5);
    request.headers.push_back("Accept: application/json");
    if (!options_.user_agent.empty())
      request.headers.push_back("User-Agent: " + options_.user_agent);
    request.headers.push_back("X-API-Version: " + std::to_string(options_.api_version));
    request.headers.push_back("Authorization: Bearer " + TokenFor(call.payout_id));
    if (post) {
      request.headers.push_back("Content-Type: application/json");
      request.body = call.body;
    }
    call.in_flight = true;
    observer_->OnInFlight(limiter_.in_flight());
    const uint64_t id = call.id;
    auto on_response = [this, id, post, alive = alive_.token()](HttpResponse response) {
      if (!alive) return;
      OnResponse(id, post ? Method::kPost : Method::kGet, std::move(response));
    };
    http_->Start(std::move(request), std::move(on_response));
  }

  std::string TokenFor(const std::string& payout_id) {
    if (options_.auth_mode == GatewayOptions::AuthMode::kStatic) return options_.secret;
    const int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(clock_.WallNow().time_since_epoch())
            .count();
    const int64_t ttl = std::max<int64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(options_.token_ttl).count(), 1);
    // Reuse a token while comfortably inside its lifetime, so a request never carries a token that
    // expires on the way.
    const int64_t margin = std::clamp<int64_t>(ttl / 4, 1, 60);
    auto it = tokens_.find(payout_id);
    if (it != tokens_.end() && now + margin < it->second.exp) return it->second.token;
    JwtClaims claims = NewJwtClaims({"POST /payouts/" + payout_id, "GET /payouts/" + payout_id},
                                    options_.merchant_code, now, ttl, random_);
    CachedToken fresh{SignJwt(claims, options_.secret), claims.exp};
    if (it != tokens_.end()) {
      it->second = fresh;
    } else {
      if (tokens_.size() >= kMaxCachedTokens) tokens_.erase(tokens_.begin());
      tokens_.emplace(payout_id, fresh);
    }
    return fresh.token;
  }

  // --- handling responses ---

  void OnResponse(uint64_t id, Method method, HttpResponse r) {
    PAYOUTD_DCHECK_ON_THREAD(io_thread_);
    HandleResponse(id, method, std::move(r));
    Dispatch();  // a slot is free now
  }

  void HandleResponse(uint64_t id, Method method, HttpResponse r) {
    limiter_.Finished();
    observer_->OnInFlight(limiter_.in_flight());
    const std::string_view method_name = method == Method::kPost ? "POST" : "GET";
    if (!r.cancelled) observer_->OnResponse(method_name, r.status, r.seconds);
    auto it = calls_.find(id);
    PAYOUTD_CHECK(it != calls_.end());
    Call& call = *it->second;
    call.in_flight = false;
    call.http_status = r.status;
    const bool was_probe = call.probe;
    call.probe = false;
    if (was_probe) probe_in_flight_ = false;
    // A POST counts once it may have reached the gateway; a refused connection carried nothing.
    if (method == Method::kPost && (r.status != 0 || r.maybe_sent || r.cancelled))
      ++call.post_attempts;
    if (r.cancelled || call.cancelled) {
      if (method == Method::kPost) call.maybe_created = true;  // cut off mid-request
      call.message = "cancelled";
      return Report(id, std::nullopt);
    }

    Verdict verdict = Classify(method, r.status, r.maybe_sent);
    std::optional<GatewayPayout> parsed;
    std::string bad_body;
    if (verdict == Verdict::kOk) {
      Result<GatewayPayout> p = method == Method::kPost
                                    ? ParsePostResponse(r.body, call.payout_id, currencies_)
                                    : ParseGetResponse(r.body, call.payout_id, currencies_);
      if (p) {
        parsed = std::move(*p);
      } else {
        bad_body = p.error();
        verdict = Verdict::kAmbiguous;  // a 2xx we cannot use: the POST may have been accepted
      }
    }
    if (verdict != Verdict::kThrottled) throttle_streak_ = 0;
    const CircuitBreaker::Outcome health = HealthOf(verdict, r.status);
    RecordHealth(call, health, r, bad_body);
    if (health != CircuitBreaker::Outcome::kHealthy && was_probe) breaker_.ProbeFailed();

    if (verdict == Verdict::kAuth) {
      return OnAuthRefused(call, method_name, r.status);
    }
    call.auth_retried = false;
    // Only an answer the gateway gives after checking the token proves it is accepted again; a
    // transport failure, a 5xx or a 429 may come before any token check.
    if (auth_paused_ && r.status != 0 && r.status < 500 && r.status != 429) Resume(was_probe);

    switch (verdict) {
      case Verdict::kOk:
        ++call.attempts;
        call.message.clear();
        if (method == Method::kPost) (void)PAYOUTD_FAILPOINT("gateway.post_created");
        if (method == Method::kPost) return Report(id, SubmitResult::Outcome::kCreated);
        call.view = std::move(parsed);
        if (call.kind == Call::Kind::kPoll)
          return Report(id, std::nullopt, PollResult::Outcome::kFound);
        return Report(id, CompareWithOurs(call));
      case Verdict::kExists:
        // The id exists at the gateway: read it back and compare with what we sent.
        ++call.attempts;
        call.maybe_created = true;
        call.next = Method::kGet;
        call.message = "id exists; not yet compared";
        if (!policy_.MayRetry(call.attempts)) return Report(id, SubmitResult::Outcome::kUnknown);
        return Requeue(call);
      case Verdict::kRejected:
        ++call.attempts;
        call.message = ErrorMessageFromBody(r.body);
        (void)PAYOUTD_FAILPOINT("gateway.post_refused");
        return Report(id, SubmitResult::Outcome::kRejected);
      case Verdict::kNotFound:
        ++call.attempts;
        if (call.kind == Call::Kind::kPoll)
          return Report(id, std::nullopt, PollResult::Outcome::kNotFound);
        // Our earlier POST did not land (or not yet): send it again, same id and body.
        call.next = Method::kPost;
        if (!policy_.MayRetry(call.attempts))
          return Report(id, call.maybe_created ? SubmitResult::Outcome::kUnknown
                                               : SubmitResult::Outcome::kNotCreated);
        return Requeue(call);
      case Verdict::kThrottled: {
        observer_->OnThrottled();
        observer_->OnRetry(method_name, "throttled");
        const std::optional<Duration> after = ParseRetryAfter(r.retry_after, clock_.WallNow());
        const Duration wait = after ? *after : policy_.Backoff(++throttle_streak_, random_);
        limiter_.PauseUntil(clock_.Now() + wait);
        log::Debug("gateway_throttled", {{"wait_ms", std::to_string(ToMillis(wait).count())}});
        return Requeue(call, /*front=*/true);
      }
      default: break;
    }
    OnTransientFailure(call, method, verdict, health, r, bad_body);
  }

  // 5xx, transport failure, unusable body, unexpected status: retried after a backoff, within the
  // payout's budget, or (circuit open) held until the gateway is back.
  void OnTransientFailure(Call& call, Method method, Verdict verdict,
                          CircuitBreaker::Outcome health, const HttpResponse& r,
                          const std::string& bad_body) {
    const std::string_view method_name = method == Method::kPost ? "POST" : "GET";
    const bool ambiguous = verdict == Verdict::kAmbiguous;
    std::string_view reason =
        bad_body.empty() ? RetryReason(verdict, r.status, r.timed_out) : "bad_json";
    if (method == Method::kPost) {
      if (ambiguous) call.maybe_created = true;
      // An ambiguous POST is resolved with GET before anything is sent again.
      call.next = ambiguous ? Method::kGet : Method::kPost;
      if (ambiguous) reason = bad_body.empty() && r.status >= 500 ? "5xx" : reason;
    }
    call.message = !bad_body.empty() ? "unusable response: " + bad_body
                   : r.status != 0   ? "HTTP " + std::to_string(r.status)
                                     : r.error;
    if (health != CircuitBreaker::Outcome::kHealthy && breaker_.open()) {
      // The gateway as a whole is failing: this says nothing about the payout. It waits for the
      // circuit to close, its budget untouched; a probe keeps its place at the front.
      ++call.unbilled;
      observer_->OnRetry(method_name, reason);
      return Requeue(call, /*front=*/true);
    }
    if (verdict == Verdict::kNotSent) {
      ++call.unbilled;  // nothing reached the gateway: a retry costs the payout nothing
    } else {
      ++call.attempts;
      if (health != CircuitBreaker::Outcome::kHealthy) ++call.systemic;
    }
    if (!policy_.MayRetry(call.attempts)) {
      if (call.kind == Call::Kind::kPoll)
        return Report(call.id, std::nullopt, PollResult::Outcome::kFailed);
      return Report(call.id, call.maybe_created ? SubmitResult::Outcome::kUnknown
                                                : SubmitResult::Outcome::kNotCreated);
    }
    observer_->OnRetry(method_name, reason);
    log::Debug("gateway_retry", {{"id", call.payout_id},
                                 {"method", std::string(method_name)},
                                 {"reason", std::string(reason)},
                                 {"attempt", std::to_string(call.attempts)}});
    Backoff(call, policy_.Backoff(call.attempts + call.unbilled, random_));
  }

  static CircuitBreaker::Outcome HealthOf(Verdict verdict, int http_status) {
    switch (verdict) {
      case Verdict::kNotSent: return CircuitBreaker::Outcome::kTransportFailure;
      case Verdict::kAmbiguous:
        return http_status == 0 ? CircuitBreaker::Outcome::kTransportFailure
                                : CircuitBreaker::Outcome::kServerFailure;
      case Verdict::kThrottled: return CircuitBreaker::Outcome::kServerFailure;
      default: return CircuitBreaker::Outcome::kHealthy;
    }
  }

  // --- the circuit ---

  void RecordHealth(const Call& call, CircuitBreaker::Outcome health, const HttpResponse& r,
                    const std::string& bad_body) {
    const bool was_open = breaker_.open();
    const std::string cause = health == CircuitBreaker::Outcome::kHealthy ? std::string()
                              : !bad_body.empty()                         ? "unusable response"
                              : r.status != 0 ? "HTTP " + std::to_string(r.status)
                                              : CleanCause(r.error);
    const bool opened =
        breaker_.Record(clock_.Now(), clock_.WallNow(), call.payout_id, health, cause);
    if (opened) return OnCircuitOpened();
    if (was_open && !breaker_.open()) OnCircuitClosed();
  }

  static std::string CleanCause(const std::string& error) {
    return error.empty() ? "no answer" : error.substr(0, 200);
  }

  void OnCircuitOpened() {
    // The failures that led up to the opening were the outage, not the payouts' own: give them
    // back.
    for (auto& [id, c] : calls_) {
      c->attempts -= c->systemic;
      c->systemic = 0;
    }
    log::Warn("gateway.circuit_open",
              {{"cause", breaker_.cause()},
               {"failures", std::to_string(CircuitBreaker::kOpenAfter) + " in a row"},
               {"action", "no request starts but probes until the gateway answers"}});
    CircuitEvent e;
    e.kind = CircuitEvent::Kind::kOpened;
    e.since = breaker_.opened_at();
    e.cause = breaker_.cause();
    e.next_probe = clock_.WallNow() + ProbeDelay();
    NotifyCircuit(e);
    ArmProbeTimer();
  }

  void OnCircuitClosed() {
    const Duration lasted = clock_.Now() - breaker_.opened_steady();
    probe_timer_->Cancel();
    probe_armed_ = false;
    probe_due_ = false;
    log::Info("gateway.circuit_closed",
              {{"outage_s",
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(lasted).count())},
               {"action", "sending resumed at the configured pace"}});
    CircuitEvent e;
    e.kind = CircuitEvent::Kind::kClosed;
    e.lasted = lasted;
    NotifyCircuit(e);
    asio::post(io_, [this, alive = alive_.token()] {
      if (alive) Dispatch();
    });
  }

  void NotifyCircuit(const CircuitEvent& e) {
    observer_->OnCircuit(e);
    if (circuit_listener_) circuit_listener_(e);
  }

  // After a 409 (or an ambiguous POST), is the gateway's payout under this id ours?
  SubmitResult::Outcome CompareWithOurs(Call& call) const {
    const GatewayPayout& v = *call.view;
    const Payout& p = call.payout;
    const bool same = v.amount_minor == p.amount_minor && v.currency == p.currency &&
                      (v.account_number.empty() || v.account_number == p.account_number);
    if (same) {
      call.message.clear();
      return SubmitResult::Outcome::kCreated;
    }
    const int digits = currencies_.MinorUnits(v.currency).value_or(0);
    call.message =
        "the gateway holds " + FormatFixedAmount(v.amount_minor, digits) + " " + v.currency +
        (v.account_number.empty() ? "" : " to " + MaskAccount(v.account_number)) + " under this id";
    return SubmitResult::Outcome::kConflict;
  }

  void OnAuthRefused(Call& call, std::string_view method_name, int status) {
    observer_->OnRetry(method_name, "auth");
    tokens_.erase(call.payout_id);
    if (!call.auth_retried && !auth_paused_) {
      // One retry with a fresh token before concluding the credentials are refused.
      call.auth_retried = true;
      return Requeue(call, /*front=*/true);
    }
    if (!auth_paused_) {
      auth_paused_ = true;
      log::Error("gateway_auth_refused",
                 {{"status", std::to_string(status)},
                  {"action", "sending paused; probing every retry.max_backoff"}});
      observer_->OnPaused(true);
    }
    Requeue(call, /*front=*/true);
  }

  void Resume(bool by_probe) {
    auth_paused_ = false;
    if (!breaker_.open()) {
      probe_timer_->Cancel();
      probe_armed_ = false;
      probe_due_ = false;
    }
    log::Info("gateway_auth_accepted",
              {{"action", "sending resumed"}, {"by_probe", by_probe ? "true" : "false"}});
    observer_->OnPaused(false);
    asio::post(io_, [this, alive = alive_.token()] {
      if (alive) Dispatch();
    });
  }

  // --- probes, while paused (credentials refused, or the circuit open) ---

  // Outage: initial_backoff doubling to max_backoff with each failed probe. Credentials refused:
  // max_backoff (a token does not come back by itself; someone has to fix the secret).
  Duration ProbeDelay() const {
    if (breaker_.open()) return policy_.Ceiling(breaker_.probes() + 1);
    return options_.retry.max_backoff;
  }

  void ArmProbeTimer() {
    if (probe_armed_ || probe_due_ || shutdown_) return;
    probe_armed_ = true;
    const Duration delay = std::max(ProbeDelay(), Duration(std::chrono::milliseconds(1)));
    if (breaker_.open()) {
      CircuitEvent e;
      e.kind = CircuitEvent::Kind::kProbeScheduled;
      e.since = breaker_.opened_at();
      e.cause = breaker_.cause();
      e.next_probe = clock_.WallNow() + delay;
      NotifyCircuit(e);
    }
    probe_timer_->WaitUntil(clock_.Now() + delay, [this] {
      probe_armed_ = false;
      probe_due_ = true;
      Dispatch();
    });
  }

  // One probe at a time: the first waiting call, once its wait is over and the limiter allows.
  void MaybeProbe() {
    if (shutdown_ || probe_in_flight_) return;
    if (!probe_due_) return ArmProbeTimer();
    if (ready_.empty()) return;  // the next call to arrive is the probe
    const SteadyTime now = clock_.Now();
    if (limiter_.FullyInFlight()) return;  // a finishing request calls Dispatch again
    if (!limiter_.TryStart(now)) return ArmDispatchTimer(limiter_.NextStartTime(now));
    probe_due_ = false;
    probe_in_flight_ = true;
    const uint64_t id = ready_.front();
    ready_.pop_front();
    Call& call = *calls_.at(id);
    call.probe = true;
    Send(call);
  }

  void Requeue(Call& call, bool front = false) {
    if (shutdown_) return Report(call.id, std::nullopt);
    if (front)
      ready_.push_front(call.id);
    else
      ready_.push_back(call.id);
    Dispatch();
  }

  void Backoff(Call& call, Duration wait) {
    if (shutdown_) return Report(call.id, std::nullopt);
    if (!call.backoff) call.backoff = clock_.NewTimer(io_);
    const uint64_t id = call.id;
    call.backoff->WaitUntil(clock_.Now() + wait, [this, id] {
      if (!calls_.count(id)) return;
      ready_.push_back(id);
      Dispatch();
    });
  }

  // --- reporting ---

  // Ends a call with the outcome for its kind; nullopt means cut short by Shutdown()/Cancel().
  void Report(uint64_t id, std::optional<SubmitResult::Outcome> outcome,
              std::optional<PollResult::Outcome> poll_outcome = std::nullopt) {
    auto node = calls_.extract(id);
    PAYOUTD_CHECK(!node.empty());
    std::unique_ptr<Call> call = std::move(node.mapped());
    Deliver(*call, outcome, poll_outcome);
  }

  // Reports later, from the io_context (never from inside Submit/Poll/Shutdown).
  void PostReport(std::unique_ptr<Call> call, std::optional<SubmitResult::Outcome> outcome) {
    ++posted_reports_;
    std::shared_ptr<Call> shared(std::move(call));
    asio::post(io_, [this, shared, outcome, alive = alive_.token()] {
      if (!alive) return;
      --posted_reports_;
      Deliver(*shared, outcome, std::nullopt);
    });
  }

  void Deliver(Call& call, std::optional<SubmitResult::Outcome> outcome,
               std::optional<PollResult::Outcome> poll_outcome) {
    tokens_.erase(call.payout_id);
    if (call.kind == Call::Kind::kSubmit) {
      SubmitResult result;
      if (outcome) {
        result.outcome = *outcome;
      } else {
        // Cut short: if a POST may have landed, say so; otherwise nothing is known.
        result.outcome = call.maybe_created ? SubmitResult::Outcome::kUnknown
                                            : SubmitResult::Outcome::kCancelled;
      }
      result.http_status = call.http_status;
      result.message = std::move(call.message);
      result.post_attempts = call.post_attempts;
      result.payout = std::move(call.view);
      auto done = std::move(call.submit_done);
      done(std::move(result));
    } else {
      PollResult result;
      result.http_status = call.http_status;
      result.outcome = poll_outcome.value_or(PollResult::Outcome::kCancelled);
      if (result.outcome == PollResult::Outcome::kFound) result.payout = std::move(*call.view);
      result.message = std::move(call.message);
      auto done = std::move(call.poll_done);
      done(std::move(result));
    }
  }

  class NullObserver final : public GatewayObserver {};

  asio::io_context& io_;
  GatewayOptions options_;
  CurrencyTable currencies_;
  Clock& clock_;
  Random& random_;
  NullObserver null_observer_;
  GatewayObserver* observer_;
  std::unique_ptr<HttpTransport> http_;
  RateLimiter limiter_;
  RetryPolicy policy_;
  CircuitBreaker breaker_;
  std::function<void(const CircuitEvent&)> circuit_listener_;
  std::function<bool(SteadyTime now)> send_gate_;  // may requests start? (null: always)

  std::unordered_map<uint64_t, std::unique_ptr<Call>> calls_;
  std::deque<uint64_t> ready_;  // calls waiting for a start from the limiter
  std::unordered_map<std::string, CachedToken> tokens_;
  uint64_t next_call_id_ = 1;
  size_t posted_reports_ = 0;

  std::unique_ptr<Timer> dispatch_timer_;
  bool dispatch_armed_ = false;
  SteadyTime dispatch_at_{};
  std::unique_ptr<Timer> probe_timer_;
  bool probe_armed_ = false;  // the probe timer runs
  bool probe_due_ = false;    // its wait is over: the next call to start is the probe
  bool probe_in_flight_ = false;
  bool auth_paused_ = false;
  bool shutdown_ = false;
  int throttle_streak_ = 0;
  ThreadChecker io_thread_;  // binds to the io thread at the first call
  Liveness alive_;           // last: ends first
};

}  // namespace

Result<std::unique_ptr<GatewayClient>> GatewayClient::Create(
    asio::io_context& io, GatewayOptions options, Clock& clock, Random& random,
    GatewayObserver* observer, std::unique_ptr<HttpTransport> transport) {
  if (options.base_url.rfind("http://", 0) != 0 && options.base_url.rfind("https://", 0) != 0)
    return Status::InvalidArgument("gateway.base_url must start with http:// or https://");
  if (options.secret.empty()) return Status::InvalidArgument("auth: the secret is empty");
  if (options.auth_mode == GatewayOptions::AuthMode::kJwtHs256 && options.merchant_code.empty())
    return Status::InvalidArgument("auth.merchant_code is required for jwt-hs256");
  if (options.limits.requests_per_second < 0)
    return Status::InvalidArgument("limits.requests_per_second must be >= 0");
  if (options.limits.burst < 0) return Status::InvalidArgument("limits.burst must be >= 0");
  if (options.limits.max_in_flight < 1)
    return Status::InvalidArgument("limits.max_in_flight must be >= 1");
  if (options.retry.max_attempts < 1)
    return Status::InvalidArgument("retry.max_attempts must be >= 1");
  CurrencyTable currencies = CurrencyTable::Iso4217().WithOverrides(options.currency_minor_units);
  return std::unique_ptr<GatewayClient>(new GatewayClientImpl(io, std::move(options),
                                                              std::move(currencies), clock, random,
                                                              observer, std::move(transport)));
}

}  // namespace payoutd
