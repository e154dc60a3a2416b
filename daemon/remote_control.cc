#include "daemon/remote_control.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>

#include "core/base/log.h"
#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"

namespace payoutd {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr const char* kChannel = "payoutd_control";
// Where the leader says that a reply was written (its payload: the request's id).
constexpr const char* kReplyChannel = "payoutd_control_reply";
// How often the inbox looks for requests, and the command line for its reply, when no
// notification came (one lost with a session).
constexpr auto kLookEvery = std::chrono::seconds(1);
constexpr auto kReplyLookEvery = milliseconds(250);

constexpr const char* kInsert = R"sql(
WITH req AS (
  INSERT INTO control_requests (command, batch, all_batches, reason, user_name, uid, host,
                                requested_at, expires_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp(),
          clock_timestamp() + $8 * interval '1 millisecond')
  RETURNING id)
SELECT id, pg_notify('payoutd_control', id::text) FROM req)sql";

constexpr const char* kReadReply =
    "SELECT state, coalesce(exit_code, 1), message, taken_by FROM control_requests WHERE id = $1";

constexpr const char* kExpire =
    "UPDATE control_requests SET state = 'expired' WHERE id = $1 AND state = 'pending'";

// The oldest pending, unexpired request, claimed for this term while it is the current one.
constexpr const char* kClaim = R"sql(
UPDATE control_requests c SET state = 'taken', taken_by = $2, term = $1
WHERE c.id = (SELECT id FROM control_requests
              WHERE state = 'pending' AND expires_at > clock_timestamp()
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
  AND EXISTS (SELECT 1 FROM fencing WHERE id = 1 AND term = $1)
RETURNING c.id, c.command, c.batch, c.all_batches, c.reason, c.user_name, c.uid, c.host)sql";

constexpr const char* kAnswer = R"sql(
WITH answered AS (
  UPDATE control_requests SET state = 'done', exit_code = $2, message = $3,
                              answered_at = clock_timestamp()
  WHERE id = $1 AND term = $4 AND state = 'taken'
  RETURNING id)
SELECT pg_notify('payoutd_control_reply', id::text) FROM answered)sql";

std::string Seconds(Duration d) {
  return std::to_string(std::max<int64_t>(1, duration_cast<std::chrono::seconds>(d).count())) +
         " s";
}

}  // namespace

ControlReply SendControlThroughState(PgConnection& conn, const ControlRequest& request,
                                     const ControlPeer& peer, Duration wait) {
  const SteadyTime deadline = steady_clock::now() + wait;
  // The leader NOTIFYs when it has answered; without the notification (LISTEN failed, or it was
  // lost with the connection) the reply is looked for every kReplyLookEvery.
  bool listening = conn.ExecScript(std::string("LISTEN ") + kReplyChannel).ok();
  PgResult inserted =
      conn.Run(kInsert, PgParams()
                            .Add(request.command)
                            .Add(request.batch)
                            .Add(request.all)
                            .Add(request.reason)
                            .Add(peer.user)
                            .Add(static_cast<int64_t>(peer.uid))
                            .Add(peer.host)
                            .Add(static_cast<int64_t>(duration_cast<milliseconds>(wait).count())));
  if (!inserted.ok()) {
    return ControlReply{1, "cannot send the request through the state (" + conn.where() +
                               "): " + inserted.message() + "; nothing was done"};
  }
  const int64_t id = inserted.Int(0, 0);
  std::string taken_by;
  for (;;) {
    PgResult r = conn.Run(kReadReply, PgParams().Add(id), deadline);
    if (r.ok() && r.rows() == 1) {
      taken_by = std::string(r.Text(0, 3));
      if (r.Text(0, 0) == "done")
        return ControlReply{static_cast<int>(r.Int(0, 1)), std::string(r.Text(0, 2))};
    }
    const SteadyTime now = steady_clock::now();
    if (now >= deadline) break;
    const SteadyTime look = std::min<SteadyTime>(deadline, now + kReplyLookEvery);
    int notified = 0;
    if (listening && conn.WaitForNotifications(look, -1, &notified).ok()) continue;
    listening = false;  // the session broke: look for the reply on schedule from now on
    std::this_thread::sleep_for(look - steady_clock::now());
  }
  // No reply in time: a request nobody took is withdrawn, so that it can never take effect.
  PgResult expired = conn.Run(kExpire, PgParams().Add(id), steady_clock::now() + wait);
  if (expired.ok() && expired.affected() == 1) {
    return ControlReply{1, "no payoutd leader took the request within " + Seconds(wait) +
                               " ('payoutd status' names the leader); nothing was done"};
  }
  PgResult last = conn.Run(kReadReply, PgParams().Add(id), steady_clock::now() + wait);
  if (last.ok() && last.rows() == 1) {
    if (last.Text(0, 0) == "done")
      return ControlReply{static_cast<int>(last.Int(0, 1)), std::string(last.Text(0, 2))};
    taken_by = std::string(last.Text(0, 3));
  }
  if (!expired.ok() && taken_by.empty()) {
    return ControlReply{1, "no answer within " + Seconds(wait) +
                               ", and the state cannot be reached to withdraw the request (" +
                               expired.message() + "): it may still take effect; check " +
                               "'payoutd status' before trying again"};
  }
  return ControlReply{1, "payoutd on " + (taken_by.empty() ? "the leader" : taken_by) +
                             " took the request but gave no answer within " + Seconds(wait) +
                             ": it may still take effect; check 'payoutd status' before trying "
                             "again"};
}

// ---------------------------------------------------------------------------------------------
// ControlInbox

struct ControlInbox::Shared {
  Mutex mu;
  std::vector<std::pair<int64_t, ControlReply>> replies GUARDED_BY(mu);  // given, to be written
  // Requests taken and not yet answered: true once their handler ran.
  std::map<int64_t, bool> taken GUARDED_BY(mu);
  bool stopping GUARDED_BY(mu) = false;
  int wake_fd = -1;  // eventfd: a reply was given, or Stop()

  void Wake() const {
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof one);
  }
  void Drain() const {
    uint64_t n = 0;
    (void)!::read(wake_fd, &n, sizeof n);
  }
};

std::unique_ptr<ControlInbox> ControlInbox::Start(boost::asio::io_context& io, PgConnectOptions db,
                                                  std::string instance, int64_t term,
                                                  ControlServer::Handler handler) {
  std::unique_ptr<ControlInbox> inbox(
      new ControlInbox(io, std::move(db), std::move(instance), term, std::move(handler)));
  inbox->thread_ = std::thread([p = inbox.get()] { p->Run(); });
  return inbox;
}

ControlInbox::ControlInbox(boost::asio::io_context& io, PgConnectOptions db, std::string instance,
                           int64_t term, ControlServer::Handler handler)
    : io_(io),
      conn_(std::move(db)),
      instance_(std::move(instance)),
      term_(term),
      handler_(std::move(handler)),
      shared_(std::make_shared<Shared>()) {
  shared_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  PAYOUTD_CHECK(shared_->wake_fd >= 0);
}

ControlInbox::~ControlInbox() {
  Stop();
  ::close(shared_->wake_fd);
}

void ControlInbox::Stop() {
  {
    MutexLock lock(&shared_->mu);
    shared_->stopping = true;
  }
  shared_->Wake();
  if (thread_.joinable()) thread_.join();
}

void ControlInbox::Run() {
  pthread_setname_np(pthread_self(), "payoutd-control");
  for (;;) {
    {
      MutexLock lock(&shared_->mu);
      if (shared_->stopping) break;
    }
    // Replies first: a request is answered as soon as its handler gave the reply.
    const bool ok = Listen() && WriteReplies() && TakeRequests();
    if (ok && failing_) log::Info("control.inbox_ok", {{"instance", instance_}});
    failing_ = !ok;
    int notified = 0;
    if (ok) {
      PgResult r =
          conn_.WaitForNotifications(steady_clock::now() + kLookEvery, shared_->wake_fd, &notified);
      if (!r.ok()) listening_ = false;
    } else {
      // The database is away: look again in a second (or at once when woken).
      pollfd p{shared_->wake_fd, POLLIN, 0};
      (void)::poll(&p, 1, static_cast<int>(duration_cast<milliseconds>(kLookEvery).count()));
    }
    shared_->Drain();
  }
  AnswerLeftovers();
}

bool ControlInbox::Listen() {
  if (listening_ && conn_.connected()) return true;
  listening_ = false;
  PgResult r = conn_.ExecScript(std::string("LISTEN ") + kChannel);
  if (!r.ok()) {
    if (!failing_) {
      log::Warn("control.inbox_failed",
                {{"instance", instance_},
                 {"error", r.message()},
                 {"action", "operator commands from other hosts wait until the state answers"}});
    }
    return false;
  }
  listening_ = true;
  return true;
}

bool ControlInbox::TakeRequests() {
  for (;;) {
    {
      MutexLock lock(&shared_->mu);
      if (shared_->stopping) return true;
    }
    PgResult r = conn_.Run(kClaim, PgParams().Add(term_).Add(instance_));
    if (!r.ok()) {
      if (!failing_) {
        log::Warn("control.inbox_failed", {{"instance", instance_}, {"error", r.message()}});
      }
      return false;
    }
    if (r.rows() == 0) return true;
    const int64_t id = r.Int(0, 0);
    ControlRequest request;
    request.command = std::string(r.Text(0, 1));
    request.batch = std::string(r.Text(0, 2));
    request.all = r.Bool(0, 3);
    request.reason = std::string(r.Text(0, 4));
    ControlPeer peer;
    peer.user = std::string(r.Text(0, 5));
    peer.uid = static_cast<uid_t>(r.Int(0, 6));
    peer.host = std::string(r.Text(0, 7));
    {
      MutexLock lock(&shared_->mu);
      shared_->taken[id] = false;
    }
    boost::asio::post(io_, [this, shared = shared_, id, request, peer] {
      {
        MutexLock lock(&shared->mu);
        shared->taken[id] = true;
      }
      handler_(request, peer, [shared, id](ControlReply reply) {
        {
          MutexLock lock(&shared->mu);
          shared->replies.emplace_back(id, std::move(reply));
        }
        shared->Wake();
      });
    });
  }
}

bool ControlInbox::WriteReplies() {
  std::vector<std::pair<int64_t, ControlReply>> replies;
  {
    MutexLock lock(&shared_->mu);
    replies.swap(shared_->replies);
  }
  for (size_t i = 0; i < replies.size(); ++i) {
    const auto& [id, reply] = replies[i];
    PgResult r =
        conn_.Run(kAnswer, PgParams().Add(id).Add(reply.exit_code).Add(reply.message).Add(term_));
    if (!r.ok()) {
      // Kept, in order, for the next round.
      MutexLock lock(&shared_->mu);
      shared_->replies.insert(shared_->replies.begin(), replies.begin() + i, replies.end());
      if (!failing_) {
        log::Warn("control.inbox_failed", {{"instance", instance_}, {"error", r.message()}});
      }
      return false;
    }
    MutexLock lock(&shared_->mu);
    shared_->taken.erase(id);
  }
  return true;
}

// At the end: the replies given are written; a request taken without one is answered so that its
// command line need not wait out its deadline.
void ControlInbox::AnswerLeftovers() {
  {
    MutexLock lock(&shared_->mu);
    for (const auto& [id, handled] : shared_->taken) {
      bool replied = false;
      for (const auto& r : shared_->replies) replied = replied || r.first == id;
      if (replied) continue;
      shared_->replies.emplace_back(
          id, handled ? ControlReply{1, "payoutd on " + instance_ +
                                            " stopped before it could confirm the change: it "
                                            "may have taken effect; check 'payoutd status'"}
                      : ControlReply{1, "payoutd on " + instance_ +
                                            " stopped before acting on the request; nothing was "
                                            "done"});
    }
  }
  if (!WriteReplies()) {
    log::Warn("control.replies_lost",
              {{"instance", instance_}, {"action", "the commands' callers see no answer in time"}});
  }
}

}  // namespace payoutd
