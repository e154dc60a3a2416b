#include "daemon/control_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace payoutd {

ControlMetrics::ControlMetrics(prometheus::Registry& registry)
    : awaiting_(&prometheus::BuildGauge()
                     .Name("payoutd_batches_awaiting_approval")
                     .Help("Batches accepted and waiting for enough approvals before they are paid")
                     .Register(registry)
                     .Add({})),
      oldest_awaiting_age_(
          &prometheus::BuildGauge()
               .Name("payoutd_oldest_awaiting_approval_age_seconds")
               .Help("How long the oldest batch awaiting approval has waited; 0 when none")
               .Register(registry)
               .Add({})),
      held_(&prometheus::BuildGauge()
                 .Name("payoutd_batches_held")
                 .Help("Batches an operator holds (payoutd hold): no new payment starts for them")
                 .Register(registry)
                 .Add({})),
      invalid_(&prometheus::BuildCounter()
                    .Name("payoutd_approvals_invalid_total")
                    .Help("Signature files that counted for nothing (renamed .sig.invalid)")
                    .Register(registry)
                    .Add({})) {}

void ControlMetrics::SetAwaitingApproval(int64_t batches, double oldest_age_seconds) {
  awaiting_->Set(static_cast<double>(batches));
  oldest_awaiting_age_->Set(oldest_age_seconds);
}

void ControlMetrics::SetHeld(int64_t batches) {
  held_->Set(static_cast<double>(batches));
}

void ControlMetrics::OnInvalidApproval() {
  invalid_->Increment();
}

}  // namespace payoutd
