// Several payoutd instances on one PostgreSQL state and one spool (docs/several-hosts.md), end to
// end with real processes: the sandbox gateway, a throwaway PostgreSQL 15
// (tests/support/postgres_server.h) and `payoutd run` twice. What must hold (invariant 9): every
// payout reported exactly once, created once with one body, and at no moment two instances
// starting requests. The latter is read from the sandbox's arrival log: each instance sends
// "User-Agent: payoutd/V (INSTANCE; term N)", and the terms of the requests, in the order they
// arrived, never go down.
//
// Each test takes from 20 s to 2 minutes (ctest label "hosts"); they skip only when PostgreSQL
// is not installed (never under CI).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/support/daemon_process.h"
#include "tests/support/postgres_server.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using ::testing::HasSubstr;

constexpr const char* kLease = "2s";
constexpr auto kLeaseDuration = seconds(2);

std::string HostName() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

std::string Tail(const std::string& text, size_t n = 4000) {
  return text.substr(text.size() > n ? text.size() - n : 0);
}

std::string Csv(const std::string& prefix, int rows) {
  std::string s = "id,amount,currency,account_number,account_name,operator_code\n";
  for (int i = 1; i <= rows; ++i) {
    s += prefix + "-" + std::to_string(i) + "," + std::to_string(1 + i % 700) + "." +
         std::to_string(10 + i % 90) + ",USD,DE" + std::to_string(300000 + i) + "44,Payee " +
         std::to_string(i) + ",BNK_000\n";
  }
  return s;
}

// The term in a User-Agent "payoutd/V (NAME; term N)"; -1 when there is none.
int64_t TermOf(const std::string& agent) {
  size_t at = agent.find("; term ");
  if (at == std::string::npos) return -1;
  return std::atoll(agent.c_str() + at + 7);
}

// One payoutd host: its own folder (config, secret, logs), the shared spool and database.
struct Host {
  std::string name;
  std::unique_ptr<TempDir> dir;
  std::string config;  // its configuration file
  std::unique_ptr<DaemonProcess> daemon;
  bool Leads() { return daemon->running() && Contains(daemon->log(), "leadership.acquired"); }
  static bool Contains(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
  }
};

class SeveralHostsTest : public ::testing::Test {
 protected:
  void StartSandbox(std::vector<std::string> args) {
    if (std::find(args.begin(), args.end(), "--final-after-ms") == args.end())
      args.insert(args.end(), {"--final-after-ms", "0"});
    args.push_back("--no-callbacks");
    sandbox_ = std::make_unique<SandboxProcess>(args);
  }

  // A host on the shared spool and `url`, sending at most `rps` requests a second.
  Host MakeHost(const std::string& name, const std::string& url, int rps) {
    Host h;
    h.name = name;
    h.dir = std::make_unique<TempDir>();
    DaemonConfig cfg = DaemonConfig::For(*sandbox_);
    cfg.requests_per_second = rps;
    cfg.burst = rps / 10 + 1;
    cfg.spool = spool_dir_.path();
    cfg.shutdown_grace = "3s";
    cfg.state_extra = "  backend: postgresql\n  url: \"" + url + "\"\n  instance: " + name +
                      "\n  lease: " + kLease + "\n";
    // Each host its own control.socket, as on separate machines.
    cfg.control_socket = h.dir->path() + "/control.sock";
    h.config = cfg.Write(h.dir->path());
    h.daemon = std::make_unique<DaemonProcess>(h.config);
    return h;
  }

  // `payoutd ARGS --config` of `host`, run on that host whether its daemon runs or not.
  static CommandResult On(const Host& host, std::vector<std::string> args) {
    args.insert(args.end(), {"--config", host.config});
    return RunPayoutd(args);
  }

  std::string Done(const std::string& file) const { return spool_dir_.path() + "/done/" + file; }

  // Every payout of the batch reported SUCCESS once, created at the gateway once with one body.
  void ExpectPaidOnce(const std::string& batch, int rows) {
    auto results = ReadResultsCsv(Done(batch + ".results.csv"));
    ASSERT_EQ(results.size(), static_cast<size_t>(rows));
    std::set<std::string> ids;
    for (const ResultRow& r : results) {
      EXPECT_EQ(r.state, "SUCCESS") << r.id << ": " << r.error;
      EXPECT_TRUE(ids.insert(r.id).second) << r.id << " reported twice";
    }
    Summary summary = ReadSummary(Done(batch + ".summary.json"));
    EXPECT_EQ(summary.rows, rows);
    EXPECT_EQ(summary.StateCount("SUCCESS"), rows);
    auto ledger = sandbox_->Ledger();
    for (const std::string& id : ids) {
      auto it = ledger.find(id);
      ASSERT_NE(it, ledger.end()) << id << " never reached the gateway";
      EXPECT_TRUE(it->second.created) << id;
      EXPECT_EQ(it->second.distinct_bodies, 1) << id << " was sent with two bodies";
    }
  }

  // The requests' terms in arrival order never go down: no two instances sent at once. Returns
  // the distinct terms seen.
  std::set<int64_t> ExpectOneSenderAtATime() {
    auto arrivals = sandbox_->Arrivals();
    std::stable_sort(
        arrivals.begin(), arrivals.end(),
        [](const SandboxArrival& a, const SandboxArrival& b) { return a.t_us < b.t_us; });
    std::set<int64_t> terms;
    int64_t last = 0;
    int64_t backwards = 0;
    for (const SandboxArrival& a : arrivals) {
      const int64_t term = TermOf(a.agent);
      EXPECT_GT(term, 0) << "a request without a term: '" << a.agent << "'";
      if (term < last) ++backwards;
      last = std::max(last, term);
      terms.insert(term);
    }
    EXPECT_EQ(backwards, 0) << "requests of an old term arrived after a newer term's";
    return terms;
  }

  std::unique_ptr<SandboxProcess> sandbox_;
  TempDir spool_dir_;
};

// The leader SIGKILLed five times at random moments of a 5,000-payout batch, with 8% gateway
// faults; each killed instance is started again and comes back as a standby.
TEST_F(SeveralHostsTest, LeaderKilledFiveTimes_EveryPayoutOnceAndOneSenderAtATime) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  StartSandbox({"--500-share", "0.03", "--503-share", "0.02", "--drop-share", "0.03"});
  const std::string url = server->CreateDatabase();
  constexpr int kRows = 5000;
  std::vector<Host> hosts;
  hosts.push_back(MakeHost("alpha", url, 300));
  hosts.push_back(MakeHost("beta", url, 300));
  hosts[0].daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return hosts[0].Leads(); }, seconds(30))) << hosts[0].daemon->log();
  hosts[1].daemon->Start();
  ASSERT_TRUE(hosts[1].daemon->WaitReady()) << hosts[1].daemon->log();
  EXPECT_TRUE(Host::Contains(hosts[1].daemon->log(), "leadership.standby"));
  DropBatch(spool_dir_.path(), "hosts", Csv("H", kRows));

  const unsigned seed = static_cast<unsigned>(steady_clock::now().time_since_epoch().count());
  std::cout << "random seed " << seed << "\n";
  std::mt19937 rng(seed);
  const std::string summary = Done("hosts.summary.json");
  for (int kill = 0; kill < 5; ++kill) {
    Host* leader = nullptr;
    ASSERT_TRUE(WaitFor(
        [&] {
          for (Host& h : hosts)
            if (h.Leads()) leader = &h;
          return leader != nullptr;
        },
        seconds(30)))
        << "no leader after kill " << kill;
    // A random moment: after the leader started another 50 to 400 requests.
    const int64_t sent = sandbox_->Stat("posts") + sandbox_->Stat("gets");
    const int64_t more = std::uniform_int_distribution<int64_t>(50, 400)(rng);
    ASSERT_TRUE(
        WaitFor([&] { return sandbox_->Stat("posts") + sandbox_->Stat("gets") >= sent + more; },
                seconds(60)))
        << Tail(leader->daemon->log());
    ASSERT_FALSE(FileExists(summary)) << "the batch finished before kill " << kill + 1;
    std::cout << "kill " << kill + 1 << ": " << leader->name << " after " << more
              << " more requests\n";
    EXPECT_EQ(leader->daemon->Kill(), 128 + SIGKILL);
    leader->daemon->Start();
    ASSERT_TRUE(leader->daemon->WaitReady()) << leader->daemon->log();
  }
  ASSERT_TRUE(WaitForFile(summary, seconds(240))) << Tail(hosts[0].daemon->log()) << "\n---\n"
                                                  << Tail(hosts[1].daemon->log());

  ExpectPaidOnce("hosts", kRows);
  EXPECT_EQ(ListDir(spool_dir_.path() + "/done"),
            (std::vector<std::string>{"hosts.csv", "hosts.results.csv", "hosts.summary.json"}));
  EXPECT_TRUE(ListDir(spool_dir_.path() + "/work").empty());
  std::set<int64_t> terms = ExpectOneSenderAtATime();
  EXPECT_GE(terms.size(), 6u) << "each kill hands over to a new term";
  for (Host& h : hosts) {
    EXPECT_EQ(h.daemon->Terminate(seconds(20)), 0) << h.name << "\n" << Tail(h.daemon->log());
    EXPECT_FALSE(Host::Contains(h.daemon->all_logs(), "state.write_failed")) << h.name;
  }
}

// pg_ctl restart -m fast twice in the middle of a batch: the daemon carries on in the same
// process, and nothing is lost.
TEST_F(SeveralHostsTest, DatabaseRestartedTwice_NothingLost) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  StartSandbox({});
  const std::string url = server->CreateDatabase();
  constexpr int kRows = 1500;
  Host host = MakeHost("alpha", url, 200);
  host.daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return host.Leads(); }, seconds(30))) << host.daemon->log();
  DropBatch(spool_dir_.path(), "restart", Csv("R", kRows));
  for (int64_t posts : {300, 900}) {
    ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= posts; }, seconds(60)))
        << Tail(host.daemon->log());
    ASSERT_FALSE(FileExists(Done("restart.summary.json")));
    ASSERT_TRUE(server->Restart()) << server->Log();
  }
  ASSERT_TRUE(WaitForFile(Done("restart.summary.json"), seconds(120))) << Tail(host.daemon->log());
  ExpectPaidOnce("restart", kRows);
  ExpectOneSenderAtATime();
  EXPECT_TRUE(host.daemon->running()) << Tail(host.daemon->log());
  EXPECT_EQ(host.daemon->starts(), 1);
  EXPECT_EQ(host.daemon->Terminate(seconds(20)), 0) << Tail(host.daemon->log());
}

// The database goes away under the leader: it stops starting requests within the lease (its
// last renewal is at most lease/3 old, sending stops lease*2/3 after it), and carries on in the
// same process once the database is back, losing nothing.
TEST_F(SeveralHostsTest, LeaderCutOffFromDatabase_StopsSendingWithinLease) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  StartSandbox({});
  const std::string url = server->CreateDatabase();
  constexpr int kRows = 2000;
  Host host = MakeHost("alpha", url, 150);
  host.daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return host.Leads(); }, seconds(30))) << host.daemon->log();
  DropBatch(spool_dir_.path(), "cutoff", Csv("C", kRows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= 200; }, seconds(60)))
      << Tail(host.daemon->log());

  const steady_clock::time_point cut = steady_clock::now();
  ASSERT_TRUE(server->Stop()) << server->Log();
  ASSERT_TRUE(WaitFor([&] { return Host::Contains(host.daemon->log(), "sending_stopped"); },
                      kLeaseDuration + seconds(5)))
      << Tail(host.daemon->log());
  // Watch one more second past the lease: nothing may start while the database is away.
  const steady_clock::time_point watched = cut + kLeaseDuration + seconds(1);
  WaitFor([&] { return steady_clock::now() >= watched; }, kLeaseDuration + seconds(2));
  const int64_t lease_end_us = sandbox_->ArrivalTimeUs(cut + kLeaseDuration);
  int64_t late = 0;
  for (const SandboxArrival& a : sandbox_->Arrivals())
    if (a.t_us > lease_end_us) ++late;
  EXPECT_EQ(late, 0) << "requests started after the lease ran out without a renewal";
  ASSERT_FALSE(FileExists(Done("cutoff.summary.json")));

  ASSERT_TRUE(server->Start()) << server->Log();
  ASSERT_TRUE(WaitForFile(Done("cutoff.summary.json"), seconds(120))) << Tail(host.daemon->log());
  ExpectPaidOnce("cutoff", kRows);
  EXPECT_TRUE(host.daemon->running());
  EXPECT_EQ(host.daemon->starts(), 1);
  EXPECT_EQ(host.daemon->Terminate(seconds(20)), 0) << Tail(host.daemon->log());
}

// SIGTERM to a leader whose database is away: after shutdown_grace it stops like a crash (exit 1)
// instead of waiting for the database without end; the next leader finishes the batch, every
// payout paid once.
TEST_F(SeveralHostsTest, SigtermWhileTheDatabaseIsAway_StopsAfterTheGrace) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  StartSandbox({});
  const std::string url = server->CreateDatabase();
  constexpr int kRows = 1500;
  Host host = MakeHost("alpha", url, 150);  // shutdown_grace 3s
  host.daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return host.Leads(); }, seconds(30))) << host.daemon->log();
  DropBatch(spool_dir_.path(), "away", Csv("A", kRows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= 100; }, seconds(60)))
      << Tail(host.daemon->log());
  ASSERT_TRUE(server->Stop()) << server->Log();
  ASSERT_TRUE(WaitFor(
      [&] { return Host::Contains(host.daemon->log(), "engine.store_unavailable"); }, seconds(20)))
      << Tail(host.daemon->log());
  const steady_clock::time_point asked = steady_clock::now();
  EXPECT_EQ(host.daemon->Terminate(seconds(30)), 1) << Tail(host.daemon->log());
  EXPECT_LT(steady_clock::now() - asked, seconds(3) + seconds(5)) << "waited past the grace";
  EXPECT_TRUE(Host::Contains(host.daemon->log(), "stopping while the state is unreachable"))
      << Tail(host.daemon->log());

  ASSERT_TRUE(server->Start()) << server->Log();
  host.daemon->Start();
  ASSERT_TRUE(WaitForFile(Done("away.summary.json"), seconds(120))) << Tail(host.daemon->log());
  ExpectPaidOnce("away", kRows);
  EXPECT_EQ(host.daemon->Terminate(seconds(20)), 0) << Tail(host.daemon->log());
}

// hold, resume and cancel from a host whose payoutd is a standby: they travel through the state to
// the leader (docs/several-hosts.md#operator-commands-from-any-host), take effect before they
// return, a refusal comes back as it would on the leader's host, and the audit names the host
// the command came from. The leader keeps its lease throughout.
TEST_F(SeveralHostsTest, CommandsFromAStandbysHostReachTheLeader) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  // Each payout is polled for 300 ms before it is final: polls after a hold show time passing.
  StartSandbox({"--final-after-ms", "300"});
  const std::string url = server->CreateDatabase();
  Host alpha = MakeHost("alpha", url, 200);
  Host beta = MakeHost("beta", url, 200);
  alpha.daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return alpha.Leads(); }, seconds(30))) << alpha.daemon->log();
  beta.daemon->Start();
  ASSERT_TRUE(beta.daemon->WaitReady()) << beta.daemon->log();
  DropBatch(spool_dir_.path(), "remote", Csv("R", 4000));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= 200; }, seconds(60)))
      << Tail(alpha.daemon->log());

  CommandResult hold = On(beta, {"hold", "remote", "--reason", "check the amounts"});
  const int64_t held_us = sandbox_->ArrivalTimeUs(steady_clock::now());
  ASSERT_EQ(hold.exit_code, 0) << hold.out << hold.err;
  EXPECT_THAT(hold.out, HasSubstr("remote"));
  // The payouts already sent are polled on; once 20 polls came, no POST may have.
  ASSERT_TRUE(WaitFor([&] { return sandbox_->RequestsAfter(held_us).gets >= 20; }, seconds(30)));
  EXPECT_EQ(sandbox_->RequestsAfter(held_us).posts, 0) << "a POST started after hold returned";
  CommandResult status = On(beta, {"status", "remote"});
  EXPECT_THAT(status.out, HasSubstr("held since")) << status.out;
  EXPECT_THAT(status.out, HasSubstr(" on " + HostName())) << status.out;

  CommandResult unknown = On(beta, {"hold", "nosuch"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.out << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("nosuch"));

  CommandResult resume = On(beta, {"resume", "remote"});
  ASSERT_EQ(resume.exit_code, 0) << resume.out << resume.err;
  const int64_t resumed_us = sandbox_->ArrivalTimeUs(steady_clock::now());
  ASSERT_TRUE(
      WaitFor([&] { return sandbox_->RequestsAfter(resumed_us).posts >= 100; }, seconds(30)))
      << "resume from another host did not start the batch again";
  CommandResult cancel = On(beta, {"cancel", "remote", "--reason", "wrong file"});
  const int64_t cancelled_us = sandbox_->ArrivalTimeUs(steady_clock::now());
  ASSERT_EQ(cancel.exit_code, 0) << cancel.out << cancel.err;
  EXPECT_THAT(cancel.out, HasSubstr("unsent payouts"));
  ASSERT_TRUE(WaitForFile(Done("remote.summary.json"), seconds(60))) << Tail(alpha.daemon->log());

  auto ledger = sandbox_->Ledger();
  const std::set<std::string> posted_after = sandbox_->PostedAfter(cancelled_us);
  int64_t cancelled = 0;
  for (const ResultRow& r : ReadResultsCsv(Done("remote.results.csv"))) {
    if (r.state == "CANCELLED") {
      ++cancelled;
      EXPECT_EQ(ledger.count(r.id), 0u)
          << r.id << " was reported CANCELLED but reached the gateway";
    } else {
      EXPECT_EQ(r.state, "SUCCESS") << r.id;
      EXPECT_EQ(posted_after.count(r.id), 0u) << r.id << ": a first POST after cancel returned";
    }
  }
  EXPECT_GT(cancelled, 1000);
  const std::string summary = ReadFile(Done("remote.summary.json"));
  for (const char* action : {"hold", "resume", "cancel"})
    EXPECT_THAT(summary, HasSubstr(std::string("\"action\": \"") + action + "\"")) << summary;
  EXPECT_THAT(summary, HasSubstr(" on " + HostName())) << summary;
  EXPECT_THAT(alpha.daemon->log(), HasSubstr("control.request"));
  // Had a command acted on the state itself, it would have taken the lease from alpha.
  EXPECT_TRUE(alpha.daemon->running());
  EXPECT_EQ(alpha.daemon->starts(), 1);
  EXPECT_EQ(alpha.daemon->Terminate(seconds(20)), 0) << Tail(alpha.daemon->log());
  EXPECT_EQ(beta.daemon->Terminate(seconds(20)), 0) << Tail(beta.daemon->log());
}

// With no payoutd running anywhere, a hold acts on the shared state itself (leading for the
// moment it does, and leaving no trace among the instances); the next leader honours it, and a
// resume from the host where none runs reaches that leader.
TEST_F(SeveralHostsTest, CommandWithNoInstanceRunningActsOnTheStateAndTheNextLeaderHonoursIt) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  StartSandbox({});
  const std::string url = server->CreateDatabase();
  constexpr int kRows = 2000;
  Host alpha = MakeHost("alpha", url, 300);
  Host beta = MakeHost("beta", url, 300);
  // A database no payoutd has used yet holds no batch at all.
  CommandResult empty = On(beta, {"hold", "quiet"});
  EXPECT_EQ(empty.exit_code, 2) << empty.out << empty.err;
  EXPECT_THAT(empty.err, HasSubstr("holds no payoutd state yet"));
  alpha.daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return alpha.Leads(); }, seconds(30))) << alpha.daemon->log();
  DropBatch(spool_dir_.path(), "quiet", Csv("Q", kRows));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= 100; }, seconds(60)))
      << Tail(alpha.daemon->log());
  ASSERT_EQ(alpha.daemon->Terminate(seconds(20)), 0) << Tail(alpha.daemon->log());

  CommandResult hold = On(beta, {"hold", "quiet", "--reason", "audit first"});
  ASSERT_EQ(hold.exit_code, 0) << hold.out << hold.err;
  CommandResult status = On(beta, {"status", "--json"});
  EXPECT_THAT(status.out, HasSubstr("\"alpha\"")) << status.out;
  EXPECT_THAT(status.out, ::testing::Not(HasSubstr("payoutd hold by"))) << status.out;

  beta.daemon->Start();
  // Ready twice: as a standby, then as the leader, its engine started.
  auto ready_as_leader = [&] {
    const std::string log = beta.daemon->log();
    size_t first = log.find("payoutd.ready");
    return first != std::string::npos && log.find("payoutd.ready", first + 1) != std::string::npos;
  };
  ASSERT_TRUE(WaitFor(ready_as_leader, seconds(30))) << beta.daemon->log();
  const int64_t led_us = sandbox_->ArrivalTimeUs(steady_clock::now());
  ASSERT_THAT(On(alpha, {"status", "quiet"}).out, HasSubstr("held since"));
  // Until the resume is asked for: once the leader has applied it, POSTs may start before the
  // command hears the answer.
  const int64_t resume_asked_us = sandbox_->ArrivalTimeUs(steady_clock::now());
  CommandResult resume = On(alpha, {"resume", "quiet"});
  ASSERT_EQ(resume.exit_code, 0) << resume.out << resume.err;
  int64_t posted_while_held = 0;
  for (const SandboxArrival& a : sandbox_->Arrivals())
    if (a.method == "POST" && a.t_us > led_us && a.t_us < resume_asked_us) ++posted_while_held;
  EXPECT_EQ(posted_while_held, 0) << "the new leader sent a held batch";
  ASSERT_TRUE(WaitForFile(Done("quiet.summary.json"), seconds(60))) << Tail(beta.daemon->log());
  ExpectPaidOnce("quiet", kRows);
  const std::string summary = ReadFile(Done("quiet.summary.json"));
  EXPECT_THAT(summary, HasSubstr("\"reason\": \"audit first\""));
  EXPECT_THAT(summary, HasSubstr(" on " + HostName()));
  EXPECT_EQ(beta.daemon->starts(), 1);
  EXPECT_EQ(beta.daemon->Terminate(seconds(20)), 0) << Tail(beta.daemon->log());
}

// A single-host SQLite state with a finished and an unfinished batch moves to PostgreSQL; the
// unfinished one completes from there, and the finished one dropped again is refused.
TEST_F(SeveralHostsTest, MigrateState_UnfinishedCompleteOnPostgresAndRedropRefused) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  StartSandbox({});
  TempDir sqlite_dir;
  DaemonConfig sqlite_cfg = DaemonConfig::For(*sandbox_);
  sqlite_cfg.spool = spool_dir_.path();
  sqlite_cfg.requests_per_second = 100;
  sqlite_cfg.burst = 10;
  DaemonProcess sqlite_daemon(sqlite_cfg.Write(sqlite_dir.path()));
  sqlite_daemon.Start();
  ASSERT_TRUE(sqlite_daemon.WaitReady()) << sqlite_daemon.log();
  const std::string finished_csv = Csv("F", 40);
  DropBatch(spool_dir_.path(), "finished", finished_csv);
  ASSERT_TRUE(WaitForFile(Done("finished.summary.json"), seconds(60))) << sqlite_daemon.log();
  DropBatch(spool_dir_.path(), "unfinished", Csv("U", 600));
  ASSERT_TRUE(WaitFor([&] { return sandbox_->Stat("posts") >= 40 + 100; }, seconds(60)));
  sqlite_daemon.Kill();  // mid-batch: payouts new, submitting, polling and final
  ASSERT_FALSE(FileExists(Done("unfinished.summary.json")));

  const std::string url = server->CreateDatabase();
  CommandResult migrated =
      RunPayoutd({"migrate-state", "--from", "sqlite:" + sqlite_cfg.state_path(sqlite_dir.path()),
                  "--to", url});
  ASSERT_EQ(migrated.exit_code, 0) << migrated.out << migrated.err;
  // A second time into the same database: refused, the target is not empty.
  CommandResult again =
      RunPayoutd({"migrate-state", "--from", "sqlite:" + sqlite_cfg.state_path(sqlite_dir.path()),
                  "--to", url});
  EXPECT_NE(again.exit_code, 0) << again.out;

  Host host = MakeHost("alpha", url, 300);
  host.daemon->Start();
  ASSERT_TRUE(WaitFor([&] { return host.Leads(); }, seconds(30))) << host.daemon->log();
  ASSERT_TRUE(WaitForFile(Done("unfinished.summary.json"), seconds(120)))
      << Tail(host.daemon->log());
  ExpectPaidOnce("unfinished", 600);
  ExpectPaidOnce("finished", 40);
  // status from any host reads the shared state: the leader, and the migrated batches.
  CommandResult status = RunPayoutd({"status", "--config", host.daemon->config_path()});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("leader: alpha"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("batch unfinished"), std::string::npos) << status.out;

  DropBatch(spool_dir_.path(), "finished", finished_csv);
  const std::string errors = spool_dir_.path() + "/rejected/finished.errors.csv";
  ASSERT_TRUE(WaitForFile(errors, seconds(30))) << Tail(host.daemon->log());
  auto rows = ReadErrorsCsv(errors);
  ASSERT_FALSE(rows.empty());
  EXPECT_NE(rows[0].error.find("finished"), std::string::npos) << rows[0].error;
  EXPECT_EQ(host.daemon->Terminate(seconds(20)), 0) << Tail(host.daemon->log());
}

}  // namespace
}  // namespace payoutd::testing
