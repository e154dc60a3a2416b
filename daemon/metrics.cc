#include "daemon/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "daemon/metrics_server.h"

namespace payoutd {
namespace {

// From a fast loopback answer to a gateway that is slow but within the default 30s timeout.
const prometheus::Histogram::BucketBoundaries kLatencyBuckets{
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30};

constexpr FinalState kFinalStates[] = {FinalState::kSuccess, FinalState::kFailed,
                                       FinalState::kRejected, FinalState::kError,
                                       FinalState::kCancelled};
constexpr Stage kPendingStages[] = {Stage::kNew, Stage::kSubmitting, Stage::kUnknown,
                                    Stage::kPolling};

std::string_view BatchResultName(Metrics::BatchResult r) {
  switch (r) {
    case Metrics::BatchResult::kAccepted: return "accepted";
    case Metrics::BatchResult::kRejected: return "rejected";
    case Metrics::BatchResult::kDone: return "done";
  }
  return "?";
}

std::string_view CallbackResultName(Metrics::CallbackResult r) {
  switch (r) {
    case Metrics::CallbackResult::kAccepted: return "accepted";
    case Metrics::CallbackResult::kUnknownId: return "unknown_id";
    case Metrics::CallbackResult::kBadRequest: return "bad_request";
    case Metrics::CallbackResult::kTooLarge: return "too_large";
  }
  return "?";
}

double Pow10(int n) {
  double p = 1;
  for (int i = 0; i < n; ++i) p *= 10;
  return p;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  http_requests_ =
      &prometheus::BuildCounter()
           .Name("payoutd_http_requests_total")
           .Help("Gateway HTTP responses by method and status code (0 = transport failure).")
           .Register(r);
  http_duration_ = &prometheus::BuildHistogram()
                        .Name("payoutd_http_request_duration_seconds")
                        .Help("Gateway HTTP request duration in seconds, by method.")
                        .Register(r);
  http_retries_ = &prometheus::BuildCounter()
                       .Name("payoutd_http_retries_total")
                       .Help("Gateway requests retried, by method and reason.")
                       .Register(r);
  in_flight_ = &prometheus::BuildGauge()
                    .Name("payoutd_in_flight_requests")
                    .Help("Gateway HTTP requests in flight.")
                    .Register(r)
                    .Add({});
  throttled_ = &prometheus::BuildCounter()
                    .Name("payoutd_throttled_total")
                    .Help("Times the gateway throttled us (HTTP 429).")
                    .Register(r)
                    .Add({});
  sending_paused_ =
      &prometheus::BuildGauge()
           .Name("payoutd_sending_paused")
           .Help("1 while sending is paused because the gateway refuses our token, else 0.")
           .Register(r)
           .Add({});
  circuit_open_ =
      &prometheus::BuildGauge()
           .Name("payoutd_gateway_circuit_open")
           .Help(
               "1 while the gateway circuit is open (the gateway as a whole is failing and "
               "only probes are sent), else 0.")
           .Register(r)
           .Add({});
  outage_seconds_ = &prometheus::BuildCounter()
                         .Name("payoutd_gateway_outage_seconds_total")
                         .Help("Seconds the gateway circuit has been open.")
                         .Register(r)
                         .Add({});
  payouts_ = &prometheus::BuildCounter()
                  .Name("payoutd_payouts_total")
                  .Help("Payouts that reached a final state, by state.")
                  .Register(r);
  amount_ =
      &prometheus::BuildCounter()
           .Name("payoutd_amount_total")
           .Help(
               "Amount of final payouts in major currency units (approximate; exact totals are in "
               "the summary files), by currency and state.")
           .Register(r);
  pending_ = &prometheus::BuildGauge()
                  .Name("payoutd_payouts_pending")
                  .Help("Payouts not yet final, by stage.")
                  .Register(r);
  oldest_pending_age_ =
      &prometheus::BuildGauge()
           .Name("payoutd_oldest_pending_payout_age_seconds")
           .Help("Age of the oldest submitted payout that is not final yet; 0 when none.")
           .Register(r)
           .Add({});
  batches_ = &prometheus::BuildCounter()
                  .Name("payoutd_batches_total")
                  .Help("Batches by result: accepted, rejected, done.")
                  .Register(r);
  unknown_status_ =
      &prometheus::BuildCounter()
           .Name("payoutd_unknown_gateway_status_total")
           .Help("Gateway answers carrying a status that is in neither configured list.")
           .Register(r)
           .Add({});
  callbacks_ = &prometheus::BuildCounter()
                    .Name("payoutd_callbacks_total")
                    .Help("Gateway callbacks received, by result.")
                    .Register(r);

  for (FinalState s : kFinalStates) payouts_->Add({{"state", std::string(FinalStateName(s))}});
  for (Stage s : kPendingStages) pending_->Add({{"stage", std::string(StageName(s))}});
  for (auto b : {BatchResult::kAccepted, BatchResult::kRejected, BatchResult::kDone})
    batches_->Add({{"result", std::string(BatchResultName(b))}});
  for (auto c : {CallbackResult::kAccepted, CallbackResult::kUnknownId, CallbackResult::kBadRequest,
                 CallbackResult::kTooLarge})
    callbacks_->Add({{"result", std::string(CallbackResultName(c))}});
  post_duration_ = &http_duration_->Add({{"method", "POST"}}, kLatencyBuckets);
  get_duration_ = &http_duration_->Add({{"method", "GET"}}, kLatencyBuckets);
}

Metrics::~Metrics() = default;

Result<std::unique_ptr<Metrics>> Metrics::Create(const std::string& listen,
                                                 std::string_view version) {
  std::unique_ptr<Metrics> m(new Metrics());
  prometheus::BuildGauge()
      .Name("payoutd_build_info")
      .Help("Always 1; the version label says which payoutd is running.")
      .Register(*m->registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);
  if (listen.empty()) return m;
  // Scrapes run on the server's thread; the lambda holds the registry it reads.
  auto render = [registry = m->registry_] {
    return prometheus::TextSerializer().Serialize(registry->Collect());
  };
  PAYOUTD_ASSIGN_OR_RETURN(
      m->server_, MetricsServer::Start(listen, std::move(render)).WithPrefix("metrics.listen: "));
  m->port_ = m->server_->port();
  return m;
}

std::string Metrics::Render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void Metrics::OnResponse(std::string_view method, int code, double seconds) {
  std::string m(method);
  http_requests_->Add({{"method", m}, {"code", std::to_string(code)}}).Increment();
  // Family::Add() builds a histogram before finding the existing one: keep the common two at hand.
  prometheus::Histogram* h = method == "POST" ? post_duration_
                             : method == "GET"
                                 ? get_duration_
                                 : &http_duration_->Add({{"method", m}}, kLatencyBuckets);
  h->Observe(seconds < 0 ? 0 : seconds);
}

void Metrics::OnRetry(std::string_view method, std::string_view reason) {
  http_retries_->Add({{"method", std::string(method)}, {"reason", std::string(reason)}})
      .Increment();
}

void Metrics::OnThrottled() {
  throttled_->Increment();
}

void Metrics::OnPaused(bool paused) {
  sending_paused_->Set(paused ? 1 : 0);
}

void Metrics::OnInFlight(int in_flight) {
  in_flight_->Set(in_flight);
}

void Metrics::OnCircuit(const CircuitEvent& event) {
  MutexLock lock(&outage_mu_);
  const auto now = std::chrono::steady_clock::now();
  switch (event.kind) {
    case CircuitEvent::Kind::kOpened:
      if (outage_counted_to_) return;
      circuit_open_->Set(1);
      outage_counted_to_ = now;
      break;
    case CircuitEvent::Kind::kProbeScheduled: break;
    case CircuitEvent::Kind::kClosed:
      if (!outage_counted_to_) return;
      outage_seconds_->Increment(std::chrono::duration<double>(now - *outage_counted_to_).count());
      outage_counted_to_.reset();
      circuit_open_->Set(0);
      break;
  }
}

void Metrics::CountOutageSoFar() {
  MutexLock lock(&outage_mu_);
  if (!outage_counted_to_) return;
  const auto now = std::chrono::steady_clock::now();
  outage_seconds_->Increment(std::chrono::duration<double>(now - *outage_counted_to_).count());
  outage_counted_to_ = now;
}

void Metrics::OnPayoutFinal(FinalState state, std::string_view currency, int64_t amount_minor,
                            int minor_units) {
  PAYOUTD_CHECK(state != FinalState::kNone);
  PAYOUTD_CHECK(amount_minor >= 0);
  PAYOUTD_CHECK(minor_units >= 0 && minor_units <= 9);
  std::string name(FinalStateName(state));
  payouts_->Add({{"state", name}}).Increment();
  amount_->Add({{"currency", std::string(currency)}, {"state", name}})
      .Increment(static_cast<double>(amount_minor) / Pow10(minor_units));
}

void Metrics::SetPending(Stage stage, int64_t count) {
  PAYOUTD_CHECK(stage != Stage::kFinal);
  pending_->Add({{"stage", std::string(StageName(stage))}}).Set(static_cast<double>(count));
}

void Metrics::SetOldestPendingAge(double seconds) {
  oldest_pending_age_->Set(seconds < 0 ? 0 : seconds);
}

void Metrics::SetPendingFrom(const std::vector<BatchProgress>& unfinished, int64_t now_wall_ms) {
  int64_t oldest_since_ms = 0;
  for (Stage stage : kPendingStages) {
    int64_t count = 0;
    for (const BatchProgress& p : unfinished) {
      auto it = p.stages.find(stage);
      if (it != p.stages.end()) count += it->second;
    }
    SetPending(stage, count);
  }
  for (const BatchProgress& p : unfinished) {
    if (p.oldest_pending_since_ms > 0 &&
        (oldest_since_ms == 0 || p.oldest_pending_since_ms < oldest_since_ms))
      oldest_since_ms = p.oldest_pending_since_ms;
  }
  SetOldestPendingAge(
      oldest_since_ms == 0 ? 0 : static_cast<double>(now_wall_ms - oldest_since_ms) / 1000.0);
}

void Metrics::OnPayoutsCancelled(int64_t n) {
  if (n > 0) payouts_->Add({{"state", "CANCELLED"}}).Increment(static_cast<double>(n));
}

void Metrics::OnBatch(BatchResult result) {
  batches_->Add({{"result", std::string(BatchResultName(result))}}).Increment();
}

void Metrics::OnUnknownGatewayStatus() {
  unknown_status_->Increment();
}

void Metrics::OnCallback(CallbackResult result) {
  callbacks_->Add({{"result", std::string(CallbackResultName(result))}}).Increment();
}

}  // namespace payoutd
