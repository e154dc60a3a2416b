#include "daemon/leadership.h"

#include <pthread.h>

#include <boost/asio/post.hpp>

#include "core/base/log.h"
#include "core/store/open_store.h"

namespace payoutd {
namespace {

std::string Ms(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
}

}  // namespace

std::unique_ptr<Leadership> Leadership::ForState(const StateOptions& state, StateMetrics* metrics) {
  std::unique_ptr<LeaderLease> lease = MakeLeaderLease(state);
  if (!lease) return nullptr;
  return std::make_unique<Leadership>(std::move(lease), metrics);
}

Leadership::Leadership(std::unique_ptr<LeaderLease> lease, StateMetrics* metrics)
    : lease_(std::move(lease)), metrics_(metrics) {
  if (metrics_) metrics_->SetLeader(false);
}

Leadership::~Leadership() {
  Stop(/*release=*/true);
}

void Leadership::Start(boost::asio::io_context& io, std::function<void()> on_lead,
                       std::function<void()> on_lost) {
  PAYOUTD_CHECK(!keeper_.joinable());
  log::Info("leadership.standby", {{"instance", lease_->instance()},
                                   {"lease", Ms(lease_->lease())},
                                   {"action", "waiting for the lease; nothing is sent"}});
  keeper_ = std::thread([this, &io, on_lead = std::move(on_lead), on_lost = std::move(on_lost)] {
    Run(io, on_lead, on_lost);
  });
}

void Leadership::Stop(bool release) {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (keeper_.joinable()) keeper_.join();
  if (!release || !lease_->IsLeader()) return;
  const int64_t term = lease_->fencing();
  PgResult r = lease_->Release();
  if (metrics_) metrics_->SetLeader(false);
  if (r.ok()) {
    log::Info("leadership.released",
              {{"instance", lease_->instance()}, {"term", std::to_string(term)}});
  } else {
    // The lease then runs out by itself: a standby takes over after it.
    log::Warn("leadership.release_failed", {{"error", r.message()}});
  }
}

bool Leadership::MaySend(SteadyTime now) {
  const bool may = lease_->MaySend(now);
  if (sending_.exchange(may) != may && lease_->IsLeader()) {
    if (may) {
      log::Info("leadership.sending", {{"term", std::to_string(lease_->fencing())}});
    } else {
      log::Warn("leadership.sending_stopped",
                {{"term", std::to_string(lease_->fencing())},
                 {"error", lease_->last_error()},
                 {"action", "the lease could not be renewed: no request starts until it is"}});
    }
  }
  return may;
}

void Leadership::Run(boost::asio::io_context& io, const std::function<void()>& on_lead,
                     const std::function<void()>& on_lost) {
  pthread_setname_np(pthread_self(), "payoutd-lease");
  for (;;) {
    const bool was_leader = lease_->IsLeader();
    const int64_t was_term = lease_->fencing();
    const SteadyTime next = lease_->Step();
    NoteStep(was_leader);
    const bool leader = lease_->IsLeader();
    if (!was_leader && leader) {
      log::Info("leadership.acquired",
                {{"instance", lease_->instance()}, {"term", std::to_string(lease_->fencing())}});
      if (metrics_) metrics_->SetLeader(true);
      boost::asio::post(io, on_lead);
    } else if (was_leader && !leader) {
      log::Error("leadership.lost", {{"instance", lease_->instance()},
                                     {"term", std::to_string(was_term)},
                                     {"action", "another instance leads now; stopping"}});
      if (metrics_) metrics_->SetLeader(false);
      boost::asio::post(io, on_lost);
    }
    MutexLock lock(&mu_);
    while (!stopping_ && std::chrono::steady_clock::now() < next) cv_.WaitUntil(mu_, next);
    if (stopping_) return;
  }
}

// A failing step is logged once, and again when the steps work again; each counts as an error.
void Leadership::NoteStep(bool was_leader) {
  const std::string error = lease_->last_error();
  if (error.empty()) {
    if (step_failing_) log::Info("leadership.step_ok", {{"instance", lease_->instance()}});
    step_failing_ = false;
    return;
  }
  if (metrics_) metrics_->OnError(StateMetrics::Error::kLease);
  if (!step_failing_) {
    log::Warn("leadership.step_failed", {{"instance", lease_->instance()},
                                         {"role", was_leader ? "leader" : "standby"},
                                         {"error", error}});
  }
  step_failing_ = true;
}

}  // namespace payoutd
