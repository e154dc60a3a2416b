// The leader's lease against a real PostgreSQL server: instances competing for it, expiry,
// takeover, fencing of a deposed leader's writes, renewal every lease/3, MaySend turning false
// before the lease can expire, release, and the instances seen by `payoutd status`.
// Waits are on conditions with deadlines; leases are short (a second or less) to keep it quick.
#include "core/store/pg_lease.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/store/pg_schema.h"
#include "tests/support/postgres_server.h"

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

PgConnectOptions Options(const std::string& url) {
  PgConnectOptions o;
  o.url = url;
  return o;
}

// Calls fn every few milliseconds until it returns true or `limit` passes.
bool WaitFor(const std::function<bool()>& fn, Duration limit) {
  auto deadline = steady_clock::now() + limit;
  while (steady_clock::now() < deadline) {
    if (fn()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return fn();
}

// Steps a lease on its own schedule (as the keeper would) until it leads or `limit` passes.
bool StepUntilLeader(LeaderLease& lease, Duration limit) {
  auto deadline = steady_clock::now() + limit;
  while (steady_clock::now() < deadline) {
    SteadyTime next = lease.Step();
    if (lease.IsLeader()) return true;
    std::this_thread::sleep_until(std::min(next, deadline));
  }
  return lease.IsLeader();
}

// A write as the leader's store makes it: fenced with `term`, inside a transaction.
PgResult FencedWrite(PgConnection& conn, int64_t term) {
  PgResult r = conn.ExecScript("BEGIN");
  if (!r.ok()) return r;
  r = conn.Run("SELECT payoutd_fence($1)", PgParams().Add(term));
  if (r.ok())
    r = conn.Run("INSERT INTO gateway_outages VALUES ($1, 0, 0, 'x')",
                 PgParams().Add(term * 1000 + 7));
  if (!r.ok()) {
    if (conn.connected()) (void)conn.ExecScript("ROLLBACK");
    return r;
  }
  return conn.ExecScript("COMMIT");
}

TEST(PgLease, OneOfTwoCompetingInstancesLeadsTheOtherWaits) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  LeaderLease a(Options(uri), "pay-a", milliseconds(3000));
  LeaderLease b(Options(uri), "pay-b", milliseconds(3000));
  a.Step();
  b.Step();
  ASSERT_TRUE(a.IsLeader()) << a.last_error();
  EXPECT_FALSE(b.IsLeader()) << b.last_error();
  EXPECT_EQ(a.fencing(), 1);
  EXPECT_EQ(b.fencing(), 0);
  EXPECT_TRUE(a.MaySend(steady_clock::now()));
  EXPECT_FALSE(b.MaySend(steady_clock::now()));
  a.Step();  // a renewal keeps the term
  b.Step();
  EXPECT_EQ(a.fencing(), 1);
  EXPECT_FALSE(b.IsLeader());
}

TEST(PgLease, LeaderThatStopsRenewingLosesItAfterTheLeaseAndLearnsItWhenItComesBack) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  const Duration lease = milliseconds(800);
  LeaderLease a(Options(uri), "pay-a", lease);
  LeaderLease b(Options(uri), "pay-b", lease);
  std::vector<LeaseChange> a_changes;
  a.Start([&](const LeaseChange& c) { a_changes.push_back(c); });
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, milliseconds(5000))) << a.last_error();
  // While a keeps renewing, b never gets it.
  auto until = steady_clock::now() + lease * 2;
  while (steady_clock::now() < until) {
    SteadyTime next = b.Step();
    ASSERT_FALSE(b.IsLeader());
    std::this_thread::sleep_until(std::min(next, until));
  }
  a.Stop();  // a stops renewing (a hung process, a lost network)
  auto stopped = steady_clock::now();
  ASSERT_TRUE(StepUntilLeader(b, lease * 4)) << b.last_error();
  auto took = steady_clock::now() - stopped;
  EXPECT_GE(took, lease / 3);  // a had renewed at most lease/3 before it stopped
  EXPECT_LE(took, lease + milliseconds(500));
  EXPECT_EQ(b.fencing(), 2);
  EXPECT_TRUE(b.MaySend(steady_clock::now()));
  EXPECT_FALSE(a.MaySend(steady_clock::now()));
  // a comes back: its renewal finds another term, and it says so.
  ASSERT_TRUE(a.IsLeader());  // it cannot know before it asks
  a.Step();
  EXPECT_FALSE(a.IsLeader());
  ASSERT_EQ(a_changes.size(), 2u);  // the keeper's "took it", then this step's "lost it"
  EXPECT_TRUE(a_changes[0].leader);
  EXPECT_FALSE(a_changes[1].leader);
  EXPECT_EQ(a_changes[1].fencing, 1);
}

TEST(PgLease, LossIsReportedThroughTheCallbackOfTheKeeper) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  const Duration lease = milliseconds(600);
  LeaderLease a(Options(uri), "pay-a", lease);
  std::mutex mu;
  std::vector<LeaseChange> changes;
  a.Start([&](const LeaseChange& c) {
    std::lock_guard<std::mutex> lock(mu);
    changes.push_back(c);
  });
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, milliseconds(5000))) << a.last_error();
  // Someone else takes the lease by force (as a takeover after an expiry would).
  ASSERT_EQ(server->Admin("UPDATE lease SET holder = 'pay-b', fencing = fencing + 1; "
                          "UPDATE fencing SET term = term + 1",
                          server->DatabaseOf(uri)),
            "");
  ASSERT_TRUE(WaitFor([&] { return !a.IsLeader(); }, lease * 2));
  EXPECT_FALSE(a.MaySend(steady_clock::now()));
  a.Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_TRUE(changes[0].leader);
  EXPECT_FALSE(changes[1].leader);
  EXPECT_EQ(changes[1].fencing, 1);
}

TEST(PgLease, DeposedLeadersWritesFailAsFencedAndATakeoverWaitsForItsWriteInProgress) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  const Duration lease = milliseconds(500);
  LeaderLease a(Options(uri), "pay-a", lease);
  LeaderLease b(Options(uri), "pay-b", lease);
  a.Step();
  ASSERT_TRUE(a.IsLeader()) << a.last_error();
  PgConnection a_store(Options(uri));
  PgResult w = FencedWrite(a_store, a.fencing());
  ASSERT_TRUE(w.ok()) << w.message();

  // a opens a write and holds it while its lease runs out and b tries to take over.
  ASSERT_TRUE(a_store.ExecScript("BEGIN").ok());
  ASSERT_TRUE(a_store.Run("SELECT payoutd_fence($1)", PgParams().Add(a.fencing())).ok());
  std::this_thread::sleep_for(lease + milliseconds(50));  // let it expire on the database's clock
  std::atomic<bool> b_done{false};
  std::thread taker([&] {
    b.Step();
    b_done = true;
  });
  // b's takeover waits for a's transaction: the term cannot change under a write.
  EXPECT_FALSE(WaitFor([&] { return b_done.load(); }, milliseconds(300)));
  ASSERT_TRUE(a_store.Run("INSERT INTO gateway_outages VALUES (1, 0, 0, 'in flight')").ok());
  ASSERT_TRUE(a_store.ExecScript("COMMIT").ok());  // a's write of its own term commits
  taker.join();
  ASSERT_TRUE(b.IsLeader()) << b.last_error();
  EXPECT_EQ(b.fencing(), 2);

  // From now on every write of a's term fails, with the distinct kind.
  PgResult late = FencedWrite(a_store, 1);
  EXPECT_EQ(late.error_kind(), PgErrorKind::kFenced) << late.message();
  EXPECT_EQ(late.sqlstate(), "PD001");
  EXPECT_NE(late.message().find("lost the lease"), std::string::npos) << late.message();
  PgConnection b_store(Options(uri));
  EXPECT_TRUE(FencedWrite(b_store, b.fencing()).ok());
  PgResult rows = b_store.Exec("SELECT count(*) FROM gateway_outages");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows.Int(0, 0), 3);  // a's two, b's one; none of a's after the takeover
}

TEST(PgLease, KeeperRenewsEveryThirdOfTheLeaseAndKeepsTheTerm) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  const Duration lease = milliseconds(900);
  LeaderLease a(Options(uri), "pay-a", lease);
  a.Start([](const LeaseChange&) {});
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, milliseconds(5000))) << a.last_error();
  // Watch expires_at move: each move is one renewal.
  PgConnection watch(Options(uri));
  std::string last;
  int renewals = 0;
  auto start = steady_clock::now();
  while (steady_clock::now() - start < milliseconds(2100)) {
    PgResult r = watch.Run("SELECT expires_at::text, fencing FROM lease");
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r.Int(0, 1), 1);
    std::string now(r.Text(0, 0));
    if (!last.empty() && now != last) ++renewals;
    last = now;
    std::this_thread::sleep_for(milliseconds(10));
  }
  a.Stop();
  // 2.1 s / 300 ms = 7 renewals; a loaded machine may delay some, none may come early.
  EXPECT_GE(renewals, 4);
  EXPECT_LE(renewals, 8);
  EXPECT_EQ(a.fencing(), 1);
}

TEST(PgLease, MaySendTurnsFalseWhileTheLeaseIsStillValidOnTheDatabase) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  const Duration lease = milliseconds(900);
  LeaderLease a(Options(uri), "pay-a", lease);
  LeaderLease b(Options(uri), "pay-b", lease);
  SteadyTime before = steady_clock::now();
  a.Step();
  SteadyTime after = steady_clock::now();
  ASSERT_TRUE(a.IsLeader()) << a.last_error();
  ASSERT_LT(after - before, lease / 3) << "the machine is too slow for this test's lease";
  // The bound, in terms of what the test can observe about the send time.
  EXPECT_TRUE(a.MaySend(after));
  EXPECT_TRUE(a.MaySend(before + lease * 2 / 3 - milliseconds(1)));
  EXPECT_FALSE(a.MaySend(after + lease * 2 / 3));
  // Now in real time: no renewal; wait until a must stop sending.
  ASSERT_TRUE(WaitFor([&] { return !a.MaySend(steady_clock::now()); }, lease));
  // At that moment the lease has at least lease/3 left on the database's clock, minus the
  // network delay of the renewal's send: no standby can have it yet.
  PgConnection watch(Options(uri));
  PgResult r = watch.Exec(
      "SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint FROM lease");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_GT(r.Int(0, 0), 0);
  b.Step();
  EXPECT_FALSE(b.IsLeader());
}

TEST(PgLease, LeaderThatCannotReachTheDatabaseStopsSendingThenResumesWithTheSameTerm) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  const Duration lease = milliseconds(3000);
  LeaderLease a(Options(uri), "pay-a", lease);
  a.Start([](const LeaseChange&) {});
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, milliseconds(5000))) << a.last_error();
  ASSERT_TRUE(server->Stop());
  ASSERT_TRUE(WaitFor([&] { return !a.MaySend(steady_clock::now()); }, lease));
  EXPECT_TRUE(a.IsLeader());  // not known lost: nobody else could take it
  EXPECT_FALSE(a.last_error().empty());
  ASSERT_TRUE(server->Start());
  ASSERT_TRUE(WaitFor([&] { return a.MaySend(steady_clock::now()); }, lease * 2)) << a.last_error();
  EXPECT_EQ(a.fencing(), 1);
  a.Stop();
}

TEST(PgLease, ReleaseLetsAStandbyTakeOverAtOnce) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  LeaderLease a(Options(uri), "pay-a", milliseconds(10000));
  LeaderLease b(Options(uri), "pay-b", milliseconds(10000));
  a.Step();
  ASSERT_TRUE(a.IsLeader()) << a.last_error();
  b.Step();
  ASSERT_FALSE(b.IsLeader());
  PgResult r = a.Release();
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_FALSE(a.MaySend(steady_clock::now()));
  EXPECT_FALSE(a.IsLeader());
  b.Step();
  EXPECT_TRUE(b.IsLeader()) << b.last_error();
  EXPECT_EQ(b.fencing(), 2);
}

TEST(PgLease, ServiceInstancesNameTheLeaderAndTheStandbysWithTheirAge) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  std::string uri = server->CreateDatabase();
  LeaderLease a(Options(uri), "pay-a", milliseconds(5000));
  LeaderLease b(Options(uri), "pay-b", milliseconds(5000));
  a.Step();
  b.Step();
  PgConnection conn(Options(uri));
  auto s = ReadServiceInstances(conn);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->leader, "pay-a");
  EXPECT_EQ(s->fencing, 1);
  EXPECT_GT(s->lease_left, milliseconds(3000));
  ASSERT_EQ(s->instances.size(), 2u);
  EXPECT_EQ(s->instances[0].name, "pay-a");
  EXPECT_TRUE(s->instances[0].leader);
  EXPECT_EQ(s->instances[1].name, "pay-b");
  EXPECT_FALSE(s->instances[1].leader);
  EXPECT_LT(s->instances[1].since_seen, milliseconds(3000));
  ASSERT_TRUE(a.Release().ok());
  s = ReadServiceInstances(conn);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->leader, "");
}

}  // namespace
}  // namespace payoutd
