#include "core/store/pg_lease.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "core/store/pg_schema.h"

namespace payoutd {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// The leader extends its lease if it still holds its term; it records itself either way.
constexpr const char* kRenew = R"sql(
WITH renewed AS (
  UPDATE lease SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
  WHERE id = 1 AND holder = $1 AND fencing = $2
  RETURNING fencing),
seen AS (
  INSERT INTO instances (name, role, last_seen)
  VALUES ($1, CASE WHEN EXISTS (SELECT 1 FROM renewed) THEN 'leader' ELSE 'standby' END,
          clock_timestamp())
  ON CONFLICT (name) DO UPDATE SET role = excluded.role, last_seen = excluded.last_seen)
SELECT count(*) FROM renewed)sql";

// A standby takes an expired lease with the next term, and raises the fencing row to it: that
// UPDATE waits for the old term's writes still running (they hold the row FOR SHARE). Either way
// it learns how long the current lease has left, to come back when it expires.
constexpr const char* kAcquire = R"sql(
WITH won AS (
  UPDATE lease SET holder = $1, fencing = fencing + 1,
                   expires_at = clock_timestamp() + $2 * interval '1 millisecond'
  WHERE id = 1 AND expires_at <= clock_timestamp()
  RETURNING fencing),
new_term AS (
  UPDATE fencing f SET term = won.fencing FROM won WHERE f.id = 1
  RETURNING f.term),
seen AS (
  INSERT INTO instances (name, role, last_seen)
  VALUES ($1, CASE WHEN EXISTS (SELECT 1 FROM won) THEN 'leader' ELSE 'standby' END,
          clock_timestamp())
  ON CONFLICT (name) DO UPDATE SET role = excluded.role, last_seen = excluded.last_seen)
SELECT coalesce((SELECT term FROM new_term), 0),
       (extract(epoch FROM greatest(l.expires_at - clock_timestamp(), interval '0')) * 1000)::bigint
FROM lease l WHERE l.id = 1)sql";

constexpr const char* kRelease = R"sql(
WITH released AS (
  UPDATE lease SET expires_at = 'epoch' WHERE id = 1 AND holder = $1 AND fencing = $2
  RETURNING fencing)
UPDATE instances SET role = 'standby', last_seen = clock_timestamp() WHERE name = $1)sql";

int64_t Ns(SteadyTime t) {
  return duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

// The lease's own session: a takeover waits at most one lease for the writes of the old term
// (then fails cleanly and is tried again), and the server drops the session of a client that went
// away even while it waits for a lock, so no takeover is left running after its caller gave up.
PgConnectOptions LeaseSession(PgConnectOptions db, Duration lease) {
  int64_t ms = duration_cast<milliseconds>(lease).count();
  db.session_sql += "SET lock_timeout = " + std::to_string(ms) + "; ";
  db.session_sql += kPgDropVanishedClients;
  return db;
}

}  // namespace

LeaderLease::LeaderLease(PgConnectOptions db, std::string instance, Duration lease)
    : conn_(LeaseSession(std::move(db), lease)), instance_(std::move(instance)), lease_(lease) {
  PAYOUTD_CHECK(!instance_.empty());
  PAYOUTD_CHECK(lease_ >= milliseconds(300));
}

LeaderLease::~LeaderLease() {
  Stop();
}

bool LeaderLease::MaySend(SteadyTime now) const {
  return fencing_.load() != 0 && Ns(now) < send_until_ns_.load();
}

std::string LeaderLease::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void LeaderLease::SetError(std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = std::move(message);
}

SteadyTime LeaderLease::Step() {
  SteadyTime sent = std::chrono::steady_clock::now();
  if (!schema_ready_) {
    PgResult r = EnsurePgSchema(conn_, /*create=*/true);
    if (!r.ok()) {
      SetError(r.message());
      return sent + lease_ / 10;
    }
    schema_ready_ = true;
  }
  return fencing_.load() != 0 ? Renew(sent) : TryAcquire(sent);
}

SteadyTime LeaderLease::Renew(SteadyTime sent) {
  int64_t term = fencing_.load();
  int64_t lease_ms = duration_cast<milliseconds>(lease_).count();
  // No point waiting for an answer past the time this renewal would keep sending allowed.
  PgResult r =
      conn_.Run(kRenew, PgParams().Add(instance_).Add(term).Add(lease_ms), sent + lease_ * 2 / 3);
  if (!r.ok()) {
    // Still the leader as far as we know: MaySend runs out on its own; try again soon.
    SetError(r.message());
    return sent + lease_ / 10;
  }
  SetError("");
  if (r.Int(0, 0) == 0) {  // another instance took over: this term is over
    SetLost();
    Report(LeaseChange{false, term});
    return sent;  // at once, as a standby
  }
  // The database set expires_at after `sent`, so the lease holds until at least sent + lease.
  send_until_ns_.store(Ns(sent + lease_ - lease_ / 3));
  return sent + lease_ / 3;
}

SteadyTime LeaderLease::TryAcquire(SteadyTime sent) {
  int64_t lease_ms = duration_cast<milliseconds>(lease_).count();
  // A takeover may wait for a write of the old term (lock_timeout, one lease): wait longer.
  PgResult r = conn_.Run(kAcquire, PgParams().Add(instance_).Add(lease_ms), sent + lease_ * 2);
  if (!r.ok()) {
    SetError(r.message());
    return sent + lease_ / 10;
  }
  SetError("");
  int64_t term = r.Int(0, 0);
  if (term == 0) {
    // Held by another: come back just after it expires unless renewed, and look at least every
    // lease/3 (a renewal moves the expiry).
    Duration left = milliseconds(std::max<int64_t>(r.Int(0, 1), 0)) + milliseconds(5);
    return sent + std::min<Duration>(left, lease_ / 3);
  }
  send_until_ns_.store(Ns(sent + lease_ - lease_ / 3));
  fencing_.store(term);
  Report(LeaseChange{true, term});
  return sent + lease_ / 3;
}

void LeaderLease::SetLost() {
  send_until_ns_.store(0);
  fencing_.store(0);
}

PgResult LeaderLease::Release() {
  int64_t term = fencing_.load();
  SetLost();
  if (term == 0) return PgResult();
  return conn_.Run(kRelease, PgParams().Add(instance_).Add(term),
                   std::chrono::steady_clock::now() + lease_ / 3);
}

void LeaderLease::Report(const LeaseChange& change) {
  if (on_change_) on_change_(change);
}

void LeaderLease::Start(std::function<void(const LeaseChange&)> on_change) {
  PAYOUTD_CHECK(!thread_.joinable());
  on_change_ = std::move(on_change);
  thread_ = std::thread([this] { Run(); });
}

void LeaderLease::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaderLease::Run() {
  pthread_setname_np(pthread_self(), "payoutd-lease");
  for (;;) {
    SteadyTime next = Step();
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_until(lock, next, [this] { return stopping_; })) return;
  }
}

Result<ServiceInstances> ReadServiceInstances(PgConnection& conn) {
  PgResult lease = conn.Exec(
      "SELECT holder, fencing, expires_at > clock_timestamp(),"
      " (extract(epoch FROM greatest(expires_at - clock_timestamp(), interval '0')) * 1000)::bigint"
      " FROM lease WHERE id = 1");
  if (!lease.ok()) return lease.ToStatus("read the lease");
  ServiceInstances out;
  if (lease.rows() == 1) {
    out.fencing = lease.Int(0, 1);
    if (lease.Bool(0, 2)) {
      out.leader = std::string(lease.Text(0, 0));
      out.lease_left = milliseconds(lease.Int(0, 3));
    }
  }
  PgResult rows = conn.Exec(
      "SELECT name, (extract(epoch FROM greatest(clock_timestamp() - last_seen, interval '0'))"
      " * 1000)::bigint FROM instances ORDER BY name");
  if (!rows.ok()) return rows.ToStatus("read the instances");
  for (int i = 0; i < rows.rows(); ++i) {
    InstanceInfo info;
    info.name = std::string(rows.Text(i, 0));
    info.leader = !out.leader.empty() && info.name == out.leader;
    info.since_seen = milliseconds(rows.Int(i, 1));
    out.instances.push_back(std::move(info));
  }
  return out;
}

}  // namespace payoutd
