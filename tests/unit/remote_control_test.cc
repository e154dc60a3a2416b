// Operator commands through the shared PostgreSQL state (daemon/remote_control.h), against a real
// server (tests/support/postgres_server.h): the leader's inbox answers with its handler's reply
// and the caller's host; a request nobody takes in time is withdrawn and never taken later; an
// inbox whose term is no longer the current one takes nothing; a stopping inbox answers what it
// took; a database restart does not deafen the inbox.
#include "daemon/remote_control.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>

#include "core/base/mutex.h"
#include "core/store/pg_schema.h"
#include "tests/support/daemon_process.h"
#include "tests/support/postgres_server.h"

namespace payoutd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::WaitFor;

// A leader's side without the rest of payoutd: an io_context on its own thread, an inbox for
// `term`, and a handler that records what it was asked and replies as told.
class Leader {
 public:
  enum class Answer { kReply, kNever };

  Leader(const std::string& url, int64_t term, Answer answer, bool run_io = true)
      : work_(io_.get_executor()), answer_(answer) {
    if (run_io) io_thread_ = std::thread([this] { io_.run(); });
    PgConnectOptions db;
    db.url = url;
    inbox_ = ControlInbox::Start(
        io_, db, "alpha", term,
        [this](const ControlRequest& r, const ControlPeer& peer, ControlServer::Reply reply) {
          {
            MutexLock lock(&mu_);
            seen_.push_back(r.command + " " + r.batch + " by " + peer.Describe() + ": " + r.reason);
          }
          if (answer_ == Answer::kReply) reply(ControlReply{0, "held batch " + r.batch});
        });
  }
  ~Leader() { Stop(); }

  // As the service does: the loop ends first, then the inbox stops.
  void Stop() {
    work_.reset();
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
    if (inbox_) inbox_->Stop();
  }

  std::vector<std::string> seen() {
    MutexLock lock(&mu_);
    return seen_;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  Answer answer_;
  std::thread io_thread_;
  Mutex mu_;
  std::vector<std::string> seen_ GUARDED_BY(mu_);
  std::unique_ptr<ControlInbox> inbox_;
};

class RemoteControlTest : public ::testing::Test {
 protected:
  // A database with payoutd's schema whose current term is `term`.
  std::string Database(testing::PostgresServer& server, int64_t term) {
    std::string url = server.CreateDatabase();
    PgConnection conn(Options(url));
    PgResult r = EnsurePgSchema(conn, /*create=*/true);
    EXPECT_TRUE(r.ok()) << r.message();
    r = conn.Exec("UPDATE fencing SET term = $1", PgParams().Add(term));
    EXPECT_TRUE(r.ok()) << r.message();
    return url;
  }

  static PgConnectOptions Options(const std::string& url) {
    PgConnectOptions o;
    o.url = url;
    return o;
  }

  static ControlPeer Alice() {
    ControlPeer p;
    p.user = "alice";
    p.uid = 1001;
    p.host = "ops-laptop";
    return p;
  }

  static ControlRequest Hold(const std::string& batch) {
    ControlRequest r;
    r.command = "hold";
    r.batch = batch;
    r.reason = "wrong IBANs";
    return r;
  }

  // The stored state of every request, in id order.
  static std::vector<std::string> States(const std::string& url) {
    PgConnection conn(Options(url));
    PgResult r = conn.Exec(
        "SELECT state || ' ' || batch || ' term ' || term::text"
        " FROM control_requests ORDER BY id");
    std::vector<std::string> out;
    if (!r.ok()) {
      ADD_FAILURE() << r.message();
      return out;
    }
    for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Text(i, 0));
    return out;
  }
};

TEST_F(RemoteControlTest, LeaderAnswersWithItsHandlersReplyAndTheCallersHost) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  const std::string url = Database(*server, 7);
  Leader leader(url, 7, Leader::Answer::kReply);
  PgConnection conn(Options(url));
  ControlReply reply = SendControlThroughState(conn, Hold("payroll-11"), Alice(), seconds(20));
  EXPECT_EQ(reply.exit_code, 0) << reply.message;
  EXPECT_EQ(reply.message, "held batch payroll-11");
  EXPECT_EQ(leader.seen(), std::vector<std::string>{
                               "hold payroll-11 by alice (uid 1001) on ops-laptop: wrong IBANs"});
  EXPECT_EQ(States(url), std::vector<std::string>{"done payroll-11 term 7"});
}

TEST_F(RemoteControlTest, RequestNobodyTookIsWithdrawnAndNeverTakenLater) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  const std::string url = Database(*server, 7);
  PgConnection conn(Options(url));
  ControlReply lost = SendControlThroughState(conn, Hold("first"), Alice(), seconds(1));
  EXPECT_EQ(lost.exit_code, 1);
  EXPECT_NE(lost.message.find("no payoutd leader took the request within 1 s"), std::string::npos)
      << lost.message;
  EXPECT_NE(lost.message.find("nothing was done"), std::string::npos) << lost.message;

  // A leader arriving later takes the next request, never the withdrawn one (requests are taken
  // oldest first, so it would have come first).
  Leader leader(url, 7, Leader::Answer::kReply);
  ControlReply reply = SendControlThroughState(conn, Hold("second"), Alice(), seconds(20));
  EXPECT_EQ(reply.exit_code, 0) << reply.message;
  EXPECT_EQ(leader.seen(),
            std::vector<std::string>{"hold second by alice (uid 1001) on ops-laptop: wrong IBANs"});
  EXPECT_EQ(States(url), (std::vector<std::string>{"expired first term 0", "done second term 7"}));
}

TEST_F(RemoteControlTest, InboxOfATermNoLongerCurrentTakesNothing) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  const std::string url = Database(*server, 8);  // another instance took over with term 8
  Leader old_leader(url, 7, Leader::Answer::kReply);
  PgConnection conn(Options(url));
  // The inbox is woken by the request's notification and looks every second besides: two seconds
  // give it every chance to take the request if it would.
  ControlReply reply = SendControlThroughState(conn, Hold("payroll-11"), Alice(), seconds(2));
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_NE(reply.message.find("nothing was done"), std::string::npos) << reply.message;
  EXPECT_TRUE(old_leader.seen().empty());
  EXPECT_EQ(States(url), std::vector<std::string>{"expired payroll-11 term 0"});
}

TEST_F(RemoteControlTest, StoppingInboxAnswersWhatItTookWithoutAReply) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  const std::string url = Database(*server, 7);
  for (bool handler_ran : {false, true}) {
    SCOPED_TRACE(handler_ran ? "the handler ran and never replied" : "the handler never ran");
    // Without a running loop, the request is taken but its handler never runs.
    Leader leader(url, 7, Leader::Answer::kNever, /*run_io=*/handler_ran);
    ControlReply reply;
    std::thread caller([&] {
      PgConnection conn(Options(url));
      reply = SendControlThroughState(conn, Hold("payroll-11"), Alice(), seconds(30));
    });
    ASSERT_TRUE(WaitFor(
        [&] {
          auto states = States(url);
          return !states.empty() && states.back().rfind("taken", 0) == 0 &&
                 (!handler_ran || !leader.seen().empty());
        },
        seconds(20)));
    leader.Stop();
    caller.join();
    EXPECT_EQ(reply.exit_code, 1);
    EXPECT_NE(reply.message.find(handler_ran ? "it may have taken effect" : "nothing was done"),
              std::string::npos)
        << reply.message;
    EXPECT_EQ(States(url).back(), "done payroll-11 term 7");
  }
}

TEST_F(RemoteControlTest, InboxListensAgainAfterTheDatabaseRestarts) {
  PAYOUTD_REQUIRE_POSTGRES(server);
  const std::string url = Database(*server, 7);
  Leader leader(url, 7, Leader::Answer::kReply);
  PgConnection conn(Options(url));
  ASSERT_EQ(SendControlThroughState(conn, Hold("before"), Alice(), seconds(20)).exit_code, 0);
  ASSERT_TRUE(server->Restart()) << server->Log();
  PgConnection fresh(Options(url));  // as a new command line would
  ControlReply reply = SendControlThroughState(fresh, Hold("after"), Alice(), seconds(20));
  EXPECT_EQ(reply.exit_code, 0) << reply.message;
  EXPECT_EQ(leader.seen().size(), 2u);
  EXPECT_EQ(States(url), (std::vector<std::string>{"done before term 7", "done after term 7"}));
}

}  // namespace
}  // namespace payoutd
