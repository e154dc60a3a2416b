// Leadership of several payoutd instances sharing one PostgreSQL state (docs/several-hosts.md): one
// leader, standbys waiting. The leader holds a lease row in the database that it renews every
// lease/3; each takeover raises a fencing term, and every write of a leader's store checks its term
// (payoutd_fence, see pg_schema.cc), so a leader that lost the lease cannot commit anything: its
// writes fail with PgErrorKind::kFenced.
//
// Guarantees:
// - At most one instance holds a given term, and the terms only grow. A takeover happens only
//   after the lease has expired on the database's clock, and it waits for the writes of the old
//   term still running; after it, none of the old term can commit.
// - MaySend(now) turns false at the latest lease*2/3 after the last successful renewal was sent
//   (monotonic clock), so a leader that cannot renew stops starting requests at once, while its
//   lease is still valid on the database — lease/3 before any standby may take over. The
//   renewal's send time bounds the database's own expiry from below whatever the network delay.
// - A leader whose renewal finds another term has lost the lease for good (on_change is told,
//   IsLeader() turns false); it must drop what it holds in memory and may only come back as a
//   new term, through a new PayoutStore opened with the new fencing token.
// - A standby tries to take the lease when it sees it expire, so a dead leader is replaced
//   within the lease plus one round trip.
// - Every step also records this instance in `instances` (name, role, last seen) for
//   `payoutd status`.
//
// Threading: Step() and Release() from one thread at a time (the keeper thread once Start()ed);
// MaySend(), IsLeader() and fencing() from any thread. on_change runs on the keeper thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/base/clock.h"
#include "core/base/status.h"
#include "core/store/pg_connection.h"

namespace payoutd {

// A change of this instance's role, as the keeper saw it.
struct LeaseChange {
  bool leader = false;  // true: this instance now leads with `fencing`; false: it lost the lease
  int64_t fencing = 0;  // the term taken (leader), or the one lost
};

class LeaderLease {
 public:
  // `instance`: this instance's name (state.instance; must not be empty). `lease`: its length,
  // at least 300ms.
  LeaderLease(PgConnectOptions db, std::string instance, Duration lease);
  ~LeaderLease();  // stops the keeper; does not release the lease (Release() does)
  LeaderLease(const LeaderLease&) = delete;
  LeaderLease& operator=(const LeaderLease&) = delete;

  // One round trip: the leader renews, a standby takes the lease if it has expired. Returns when
  // to step again (renewal every lease/3; a standby when the lease it saw expires; a failed step
  // sooner). The first step also creates or checks the schema.
  SteadyTime Step();
  // Gives the lease up at once (orderly shutdown, after the last request): a standby may take over
  // without waiting for the expiry. MaySend is false from the call on.
  PgResult Release();

  // Runs Step() on its own thread and connection, on schedule, calling on_change when this
  // instance takes or loses the lease. Call once.
  void Start(std::function<void(const LeaseChange&)> on_change);
  // Stops the keeper thread (then Release() may be called from the caller's thread).
  void Stop();

  // May this instance start a gateway request at `now` (steady clock)? False unless it leads and
  // its last renewal was sent less than lease*2/3 before `now`.
  bool MaySend(SteadyTime now) const;
  // True from a successful takeover until the lease is known lost (or released).
  bool IsLeader() const { return fencing_.load() != 0; }
  // The term this instance holds; 0 when it is no leader. Open the leader's store with it.
  int64_t fencing() const { return fencing_.load(); }
  const std::string& instance() const { return instance_; }
  Duration lease() const { return lease_; }
  // The last step's failure, if it failed (for logs); empty after a successful one.
  std::string last_error() const;

 private:
  SteadyTime Renew(SteadyTime sent);
  SteadyTime TryAcquire(SteadyTime sent);
  void SetLost();
  void Report(const LeaseChange& change);
  void SetError(std::string message);
  void Run();

  PgConnection conn_;
  const std::string instance_;
  const Duration lease_;
  bool schema_ready_ = false;
  std::atomic<int64_t> fencing_{0};
  std::atomic<int64_t> send_until_ns_{0};  // steady_clock ns since its epoch
  mutable std::mutex mu_;
  std::string last_error_;  // guarded by mu_
  std::function<void(const LeaseChange&)> on_change_;
  bool stopping_ = false;  // guarded by mu_
  std::condition_variable cv_;
  std::thread thread_;
};

// The instances of the service as the database knows them (for `payoutd status`).
struct InstanceInfo {
  std::string name;
  bool leader = false;    // holds the lease and it has not expired
  Duration since_seen{};  // time since its last step, on the database's clock
};
struct ServiceInstances {
  std::string leader;                   // empty: no instance holds a valid lease
  int64_t fencing = 0;                  // the current term
  Duration lease_left{};                // until the leader's lease expires (0 when none)
  std::vector<InstanceInfo> instances;  // by name
};
Result<ServiceInstances> ReadServiceInstances(PgConnection& conn);

}  // namespace payoutd
