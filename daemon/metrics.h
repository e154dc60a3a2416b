// payoutd's Prometheus metrics (docs/operations.md#metrics), served at
// http://<metrics.listen>/metrics by payoutd's own HTTP server (daemon/metrics_server.h).
//
// Every metric is named with the `payoutd_` prefix exactly as docs/operations.md lists it;
// dashboards and alerts (config/grafana, config/prometheus) depend on these names and labels.
//
// Guarantees:
// - The label sets that alerts and dashboards rely on exist from the start with value 0:
//   payouts_total{state} for SUCCESS/FAILED/REJECTED/ERROR, payouts_pending{stage} for
//   new/submitting/unknown/polling, batches_total{result} for accepted/rejected/done,
//   callbacks_total{result} for accepted/unknown_id/bad_request/too_large. So `rate()` and
//   `increase()` see the first event, and "no data" means the daemon is down.
// - `payoutd_amount_total{currency,state}` is a counter in MAJOR currency units (e.g. 12.50 for
//   1250 minor units of USD) as a double. It is for dashboards only: a double cannot hold every
//   int64 minor amount exactly. The exact totals are the ones in results and summary files.
// - No account number, secret or token ever becomes a label value.
//
// Threading: every method may be called from any thread (prometheus-cpp is thread-safe). The
// GatewayObserver methods are cheap enough for the io_context thread. Scrapes are answered on the
// metrics server's own thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"
#include "core/batch/payout.h"
#include "core/gateway/gateway_client.h"
#include "core/store/payout_store.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
class Registry;
}  // namespace prometheus

namespace payoutd {

class MetricsServer;

class Metrics final : public GatewayObserver {
 public:
  enum class BatchResult { kAccepted, kRejected, kDone };
  enum class CallbackResult { kAccepted, kUnknownId, kBadRequest, kTooLarge };

  // Serves /metrics on `listen` ("host:port", "[v6addr]:port" or "name:port"; port 0 = let the
  // OS choose, see port()). An empty `listen` serves nothing, but Render() still works. Fails
  // with a message that starts "metrics.listen: " and names the address: kInvalidArgument when
  // it is malformed or does not resolve, kUnavailable when it cannot be bound (in use, not an
  // address of this host). `version` goes to build_info.
  static Result<std::unique_ptr<Metrics>> Create(const std::string& listen,
                                                 std::string_view version);
  // Stops serving at once (open connections are closed).
  ~Metrics() override;

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The TCP port /metrics is served on; 0 when not serving.
  int port() const { return port_; }

  // The current metrics in the Prometheus text exposition format (what a scrape returns).
  std::string Render() const;

  // For metrics added elsewhere; they are served and rendered with these.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // --- GatewayObserver -----------------------------------------------------------------------
  // http_requests_total{method,code} (code "0" = transport failure) and
  // http_request_duration_seconds{method}.
  void OnResponse(std::string_view method, int code, double seconds) override;
  void OnRetry(std::string_view method, std::string_view reason) override;  // http_retries_total
  void OnThrottled() override;                                              // throttled_total
  void OnPaused(bool paused) override;                                      // sending_paused 1/0
  void OnInFlight(int in_flight) override;                                  // in_flight_requests
  // gateway_circuit_open 1/0, and gateway_outage_seconds_total when it closes.
  void OnCircuit(const CircuitEvent& event) EXCLUDES(outage_mu_) override;
  // Adds the time the circuit has been open since last counted, so that the outage counter moves
  // during a long outage and not only when it ends (the daemon calls it every few seconds).
  void CountOutageSoFar() EXCLUDES(outage_mu_);

  // --- The pipeline ----------------------------------------------------------------------------
  // A payout reached its final state: payouts_total{state} += 1 and
  // amount_total{currency,state} += amount_minor / 10^minor_units. `state` must not be kNone,
  // amount_minor must be >= 0 and minor_units 0..9 (the currency's digits from the CurrencyTable).
  void OnPayoutFinal(FinalState state, std::string_view currency, int64_t amount_minor,
                     int minor_units);

  // payouts_pending{stage}: payouts now at `stage` (kNew, kSubmitting, kUnknown, kPolling; kFinal
  // is not a pending stage and must not be passed).
  void SetPending(Stage stage, int64_t count);
  // oldest_pending_payout_age_seconds: age of the oldest submitted, not yet final payout; 0 when
  // none.
  void SetOldestPendingAge(double seconds);
  // Both of the above at once from the store: `unfinished` holds PayoutStore::Progress() of every
  // batch not yet kFinished; `now_wall_ms` is the wall clock (since_ms is wall time). Stages absent
  // from every batch are set to 0.
  void SetPendingFrom(const std::vector<BatchProgress>& unfinished, int64_t now_wall_ms);

  // payouts_total{state="CANCELLED"} += n: an operator's cancel ended n unsent payouts at once.
  void OnPayoutsCancelled(int64_t n);
  void OnBatch(BatchResult result);        // batches_total{result}
  void OnUnknownGatewayStatus();           // unknown_gateway_status_total
  void OnCallback(CallbackResult result);  // callbacks_total{result}

 private:
  Metrics();

  // Declared first so the server (which reads it) goes away before it.
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsServer> server_;
  int port_ = 0;

  prometheus::Family<prometheus::Counter>* http_requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* http_duration_ = nullptr;
  prometheus::Histogram* post_duration_ = nullptr;
  prometheus::Histogram* get_duration_ = nullptr;
  prometheus::Family<prometheus::Counter>* http_retries_ = nullptr;
  prometheus::Family<prometheus::Counter>* payouts_ = nullptr;
  prometheus::Family<prometheus::Counter>* amount_ = nullptr;
  prometheus::Family<prometheus::Gauge>* pending_ = nullptr;
  prometheus::Family<prometheus::Counter>* batches_ = nullptr;
  prometheus::Family<prometheus::Counter>* callbacks_ = nullptr;
  prometheus::Gauge* in_flight_ = nullptr;
  prometheus::Counter* throttled_ = nullptr;
  prometheus::Gauge* sending_paused_ = nullptr;
  prometheus::Gauge* oldest_pending_age_ = nullptr;
  prometheus::Counter* unknown_status_ = nullptr;
  prometheus::Gauge* circuit_open_ = nullptr;
  prometheus::Counter* outage_seconds_ = nullptr;
  Mutex outage_mu_;  // OnCircuit and CountOutageSoFar, from any thread, share the open time
  std::optional<std::chrono::steady_clock::time_point> outage_counted_to_
      GUARDED_BY(outage_mu_);  // set while open
};

}  // namespace payoutd
