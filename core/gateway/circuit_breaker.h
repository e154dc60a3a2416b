// Tells a gateway outage from a payout's own failure, so that an outage pauses sending instead of
// spending every payout's retries (docs/gateway.md, "When the gateway is down").
//
// Terms:
// - A *systemic failure* is an outcome that says nothing about the payout it was for: the gateway
//   could not be reached or did not answer (connection refused or reset, name not resolved, TLS,
//   timeout), it answered 5xx or 429, or it answered 2xx with a body we cannot use. Every other
//   answer (a usable 2xx, and any 4xx but 429: 401/403/404/409/422...) is *healthy*: the gateway
//   is there and did its job, whatever it said.
// - A *transport failure* is a systemic failure without an HTTP answer; a transport failure that
//   certainly never reached the gateway (refused, DNS, connect timeout) is *not sent*.
//
// The circuit opens when the last `kOpenAfter` (5) finished requests were all systemic failures
// and they are not one payout's own: they concern at least two payouts, or one of them is a
// transport failure (a connection cannot fail because of the payout it would have carried). Why a
// run of consecutive failures and not a rate over a time window: Envoy's outlier detection ejects
// a host after 5 consecutive gateway failures, resilience4j opens on a failure rate over a window
// of calls with a minimum count. payoutd's traffic ranges from one payout to thousands a second,
// and a count of consecutive failures detects a full outage after 5 requests at any rate, without
// a window to tune; a gateway that still answers most requests keeps the circuit closed, and
// its failures are retried within each payout's budget as before.
//
// While open, the client starts one probe at a time, each after a wait that doubles from
// retry.initial_backoff up to retry.max_backoff; the first healthy answer (a probe's, or one that
// was already in flight) closes the circuit.
//
// Pure logic: times are passed in, nothing is read from a clock. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "core/base/clock.h"

namespace payoutd {

class CircuitBreaker {
 public:
  static constexpr int kOpenAfter = 5;

  enum class Outcome {
    kHealthy,
    kServerFailure,     // 5xx, 429, unusable 2xx body: the gateway answered, badly
    kTransportFailure,  // no HTTP answer
  };

  // Records a finished request for `payout_id`; `cause` describes a failure for the log (no
  // secrets: a status or curl's error text). Returns true when this outcome opens the circuit
  // (then open() is true and cause() says why).
  bool Record(SteadyTime now, WallTime wall_now, const std::string& payout_id, Outcome outcome,
              const std::string& cause);
  // A restart during an outage: start open, as the state remembers it.
  void OpenSince(SteadyTime now, WallTime since, const std::string& cause);

  bool open() const { return open_; }
  // While open: when it opened (wall clock), the failure that opened it, and the probes so far.
  WallTime opened_at() const { return opened_wall_; }
  SteadyTime opened_steady() const { return opened_steady_; }
  const std::string& cause() const { return cause_; }
  int probes() const { return probes_; }
  // A probe was sent and failed: the next one waits longer.
  void ProbeFailed() { ++probes_; }

 private:
  struct Failure {
    std::string payout_id;
    bool transport = false;
  };
  bool ShouldOpen() const;

  std::deque<Failure> run_;  // the current run of consecutive systemic failures, at most kOpenAfter
  bool open_ = false;
  WallTime opened_wall_{};
  SteadyTime opened_steady_{};
  std::string cause_;
  int probes_ = 0;
};

}  // namespace payoutd
