// The payment gateway client (docs/gateway.md). Submits payouts and polls their status over HTTP
// with libcurl multi driven by a Boost.Asio io_context: no thread per request, no polling loop.
//
// Guarantees:
// - Every POST for a payout id carries the same body: the body is built from the Payout alone.
// - All requests (POST and GET together) pass one token-bucket limiter (requests_per_second,
//   burst: at most rps + burst starts in any one-second window) and at most max_in_flight run at
//   once. A 429 (and its Retry-After, seconds or HTTP-date) slows the whole client.
// - Transient failures (5xx, timeout, reset, malformed JSON, a 200 lacking the fields we use) are
//   retried with capped exponential backoff and full jitter, up to retry.max_attempts. An
//   ambiguous POST failure (the request may have reached the gateway) is resolved with GET before
//   any re-send; a re-send uses the same id and body.
// - 401/403: one retry with a fresh token; if refused again, sending pauses for the whole client
//   (paused() is true, the observer is told) and queued work waits; a probe request is retried
//   every retry.max_backoff and sending resumes when a token is accepted. Payouts are never
//   failed for it.
// - A gateway outage opens the circuit (core/gateway/circuit_breaker.h): no request starts but one
// probe
//   at a time, at a wait that doubles from retry.initial_backoff to retry.max_backoff, and the
//   first healthy answer closes it. A payout's retry budget (retry.max_attempts) is spent only on
//   failures that can be its own: never on a request that certainly did not reach the gateway,
//   never while the circuit is open, and the failures that led up to an opening are given back.
//   What may have reached the gateway is still resolved with GET before any re-send.
//
// Threading: every method must be called on the io_context's thread (asserted in debug and
// sanitizer builds), and every callback is run there. The client must outlive the callbacks it
// has not yet delivered (call Shutdown() and run the io_context until idle() before destroying it).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "core/base/clock.h"
#include "core/base/status.h"
#include "core/batch/payout.h"
#include "core/gateway/gateway_payout.h"
#include "core/gateway/http_client.h"
#include "core/gateway/options.h"

namespace payoutd {

struct SubmitResult {
  enum class Outcome {
    kCreated,   // the gateway has this payout with our body (200/201, or 409 + GET that matches)
    kRejected,  // 400/422: the gateway refused it; final REJECTED
    kConflict,  // 409 and the gateway's payout differs in amount, currency or account; final ERROR
    kUnknown,   // retries exhausted and the payout may exist at the gateway: resolve later by Poll
    kNotCreated,  // retries exhausted and the payout certainly does not exist at the gateway
    kCancelled,   // Shutdown() came first; nothing more is known than before the call
  };
  Outcome outcome = Outcome::kUnknown;
  int http_status = 0;    // last HTTP status, 0 when none
  std::string message;    // the gateway's error text or our reason; no secrets
  int post_attempts = 0;  // POSTs that may have reached the gateway (not refused ones)
  std::optional<GatewayPayout> payout;  // when a GET was made along the way
};

struct PollResult {
  enum class Outcome {
    kFound,      // payout holds the gateway's view
    kNotFound,   // 404: the gateway has no such payout
    kFailed,     // transient failures until retries ran out; try again later
    kCancelled,  // Shutdown() came first
  };
  Outcome outcome = Outcome::kFailed;
  int http_status = 0;
  std::string message;
  GatewayPayout payout;
};

// The circuit opening, closing, or arming its next probe.
struct CircuitEvent {
  enum class Kind { kOpened, kProbeScheduled, kClosed };
  Kind kind = Kind::kOpened;
  WallTime since{};       // when the outage began
  std::string cause;      // the failure that opened it: an HTTP status or the transport error
  WallTime next_probe{};  // kOpened, kProbeScheduled: when the next probe may start
  Duration lasted{};      // kClosed: how long the circuit was open in this process
};

struct CircuitState {
  bool open = false;
  WallTime since{};
  std::string cause;
  int probes = 0;  // probes sent and failed since it opened
};

// Told about every request, for metrics. Called on the io_context thread.
class GatewayObserver {
 public:
  virtual ~GatewayObserver() = default;
  // method "POST" | "GET"; code = HTTP status, or 0 for a transport failure.
  virtual void OnResponse(std::string_view /*method*/, int /*code*/, double /*seconds*/) {}
  // reason: "5xx", "timeout", "network", "bad_json", "throttled", "auth", "unknown_outcome"
  virtual void OnRetry(std::string_view /*method*/, std::string_view /*reason*/) {}
  virtual void OnThrottled() {}
  virtual void OnPaused(bool /*paused*/) {}
  virtual void OnInFlight(int /*in_flight*/) {}
  virtual void OnCircuit(const CircuitEvent& /*event*/) {}
};

class GatewayClient {
 public:
  // `clock`, `random` and `observer` (may be null) must outlive the client. `transport` null
  // means HTTP with libcurl (HttpClient); tests pass a simulated gateway.
  static Result<std::unique_ptr<GatewayClient>> Create(
      boost::asio::io_context& io, GatewayOptions options, Clock& clock, Random& random,
      GatewayObserver* observer, std::unique_ptr<HttpTransport> transport = nullptr);
  virtual ~GatewayClient() = default;

  // Creates `payout` at the gateway (POST, with the retries described above) and reports once.
  virtual void Submit(const Payout& payout, std::function<void(SubmitResult)> done) = 0;
  // Reads the gateway's view of `id` (GET, transient failures retried) and reports once.
  virtual void Poll(const std::string& id, std::function<void(PollResult)> done) = 0;

  // New limits and retry settings, from SIGHUP; take effect for requests not yet started.
  virtual void Reconfigure(const LimitOptions& limits, const RetryOptions& retry) = 0;

  // A condition every request start must meet besides the limits: on a shared PostgreSQL state,
  // "this instance holds the leader's lease" (LeaderLease::MaySend). It is asked at `now` on the
  // client's clock, right before each request (probes included) would start; while it is false
  // nothing starts, the calls wait in the queue, and it is asked again every kSendGateRecheck.
  // Requests already on the wire go on and report as usual. Null: no gate (the default).
  virtual void SetSendGate(std::function<bool(SteadyTime now)> gate) = 0;
  static constexpr Duration kSendGateRecheck = std::chrono::milliseconds(50);

  // Takes back the Submit calls for which `which(payout_id)` holds and that have no request on the
  // wire now (queued, or waiting to retry): each reports kCancelled, or kUnknown when an earlier
  // POST of the call may have reached the gateway. Requests on the wire are not touched. Reports
  // are posted, never run inside this call. Returns how many were taken back.
  virtual size_t WithdrawSubmissions(
      const std::function<bool(const std::string& payout_id)>& which) = 0;

  // Stops starting requests. Queued calls report kCancelled; requests in flight finish (or time
  // out) and report normally. Cancel() also aborts requests in flight (they report kCancelled).
  virtual void Shutdown() = 0;
  virtual void Cancel() = 0;

  // Calls accepted and not yet reported (queued + waiting for backoff + in flight).
  virtual size_t outstanding() const = 0;
  virtual int in_flight() const = 0;
  virtual bool paused() const = 0;
  bool idle() const { return outstanding() == 0; }

  // The circuit: its state now, a listener for its events (one; the engine, which keeps the
  // outage durable), and a start in the open state (a restart during an outage: the first request
  // is a probe).
  virtual CircuitState circuit() const = 0;
  virtual void SetCircuitListener(std::function<void(const CircuitEvent&)> listener) = 0;
  virtual void OpenCircuit(WallTime since, const std::string& cause) = 0;
};

}  // namespace payoutd
