// `payoutd run` on a shared PostgreSQL state (docs/several-hosts.md): one instance leads, the
// others stand by. This is the daemon's side of the leader's lease (core/store/pg_lease.h):
// the keeper thread, the send gate, and what the service is told.
//
// The life of an instance:
// - Standby: the keeper tries to take the lease each time the current one may have expired.
//   Nothing else runs: no spool, no engine, no gateway request; metrics are served
//   (payoutd_leader 0) and systemd is told READY.
// - Leader: on_lead runs. The service opens its stores with the lease's term (term(), every
//   write fenced with it) and recovers exactly as after a crash: the engine resumes the state
//   (GET before any re-send), the spool its folders. Every gateway request start asks
//   MaySend(now), which turns false lease*2/3 after the last renewal was sent: a leader that
//   cannot renew stops starting requests while its lease still holds, before a standby may take
//   over. Requests already on the wire finish and their answers are committed while the lease
//   holds.
// - Lost: a renewal found another term (or a write was fenced): on_lost runs, and the service
//   exits at once with code 1, like a crash: whatever it holds could not be committed anyway,
//   and the new leader recovers it. systemd (Restart=on-failure) starts it again, as a standby.
//   (Going back to standby in-process would mean tearing down the engine, the client and the
//   spool with calls in flight; a fresh process is the path that is tested every day.)
// - Orderly stop (SIGTERM): after the last commit the lease is released, so a standby takes
//   over at once instead of after the lease.
//
// Threading: Start and Stop from the io thread; on_lead and on_lost run on the io thread;
// MaySend, IsLeader and term from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "core/base/clock.h"
#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"
#include "core/store/pg_lease.h"
#include "core/store/state_options.h"
#include "daemon/state_metrics.h"

namespace payoutd {

class Leadership {
 public:
  // nullptr unless state.backend is postgresql. `metrics` may be null; it must outlive this.
  static std::unique_ptr<Leadership> ForState(const StateOptions& state, StateMetrics* metrics);
  Leadership(std::unique_ptr<LeaderLease> lease, StateMetrics* metrics);
  // Stops the keeper and releases the lease if this instance still holds it.
  ~Leadership();
  Leadership(const Leadership&) = delete;
  Leadership& operator=(const Leadership&) = delete;

  // Starts the keeper thread. on_lead runs (on `io`'s thread) when this instance takes the
  // lease, on_lost when it is known lost afterwards. `io` must outlive this object.
  void Start(boost::asio::io_context& io, std::function<void()> on_lead,
             std::function<void()> on_lost);
  // Stops the keeper; with `release`, gives the lease up if this instance holds it (call after
  // the last request and the last commit).
  void Stop(bool release) EXCLUDES(mu_);

  // May a gateway request start at `now` (steady clock)? Logs when the answer changes.
  bool MaySend(SteadyTime now);
  bool IsLeader() const { return lease_->IsLeader(); }
  int64_t term() const { return lease_->fencing(); }
  const std::string& instance() const { return lease_->instance(); }
  Duration lease() const { return lease_->lease(); }

 private:
  void Run(boost::asio::io_context& io, const std::function<void()>& on_lead,
           const std::function<void()>& on_lost) EXCLUDES(mu_);
  void NoteStep(bool was_leader);

  std::unique_ptr<LeaderLease> lease_;
  StateMetrics* metrics_;
  Mutex mu_;
  CondVar cv_;  // stopping_ was set
  bool stopping_ GUARDED_BY(mu_) = false;
  bool step_failing_ = false;         // keeper thread only: the last step failed (logged once)
  std::atomic<bool> sending_{false};  // MaySend's last answer, to log its changes
  std::thread keeper_;
};

}  // namespace payoutd
