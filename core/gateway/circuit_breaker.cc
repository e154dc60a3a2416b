#include "core/gateway/circuit_breaker.h"

namespace payoutd {

bool CircuitBreaker::Record(SteadyTime now, WallTime wall_now, const std::string& payout_id,
                            Outcome outcome, const std::string& cause) {
  if (outcome == Outcome::kHealthy) {
    run_.clear();
    open_ = false;
    probes_ = 0;
    return false;
  }
  run_.push_back(Failure{payout_id, outcome == Outcome::kTransportFailure});
  if (run_.size() > static_cast<size_t>(kOpenAfter)) run_.pop_front();
  if (open_ || !ShouldOpen()) return false;
  OpenSince(now, wall_now, cause);
  return true;
}

void CircuitBreaker::OpenSince(SteadyTime now, WallTime since, const std::string& cause) {
  open_ = true;
  // The steady clock does not survive a restart: the outage's length on this run counts from now.
  opened_steady_ = now;
  opened_wall_ = since;
  cause_ = cause;
  probes_ = 0;
}

bool CircuitBreaker::ShouldOpen() const {
  if (run_.size() < static_cast<size_t>(kOpenAfter)) return false;
  for (const Failure& f : run_) {
    if (f.transport) return true;
    if (f.payout_id != run_.front().payout_id) return true;
  }
  return false;  // one payout's own failures, repeated
}

}  // namespace payoutd
