// The finance controls' metrics (docs/operations.md#metrics): batches waiting for signatures, held
// batches, signatures that counted for nothing, and how long the oldest batch has been waiting.
// They live on the daemon's registry (Metrics::registry()) beside the rest.
//
// Threading: any thread (prometheus-cpp is thread-safe).
#pragma once

#include <cstdint>
#include <memory>

namespace prometheus {
class Counter;
class Gauge;
class Registry;
}  // namespace prometheus

namespace payoutd {

class ControlMetrics {
 public:
  explicit ControlMetrics(prometheus::Registry& registry);

  void SetAwaitingApproval(int64_t batches,
                           double oldest_age_seconds);  // batches_awaiting_approval
  void SetHeld(int64_t batches);                        // batches_held
  void OnInvalidApproval();                             // approvals_invalid_total += 1

 private:
  prometheus::Gauge* awaiting_ = nullptr;
  prometheus::Gauge* oldest_awaiting_age_ = nullptr;
  prometheus::Gauge* held_ = nullptr;
  prometheus::Counter* invalid_ = nullptr;
};

}  // namespace payoutd
