// Operator commands (hold, resume, cancel) from any host of a PostgreSQL state
// (docs/several-hosts.md#operator-commands-from-any-host). The leader's control.socket is on the
// leader's host only; from anywhere else a command travels through the shared state:
//
// - The command line (SendControlThroughState) inserts the request into control_requests, with an
//   expiry on the database's clock, NOTIFYs payoutd_control, and waits for the reply.
// - The leader (ControlInbox) LISTENs on payoutd_control (and looks every second, in case a
//   notification was lost with a connection), claims each pending request in the name of its
//   term, hands it to the same handler as control.socket requests, and writes the reply once the
//   handler gives it: as on the socket, that is once the change is durable and in force.
//
// Guarantees:
// - A request takes effect at most once, and only through a leader whose term is the current
//   one when it claims it.
// - A request nobody claimed before its expiry never takes effect: the leader claims only
//   unexpired ones, and the waiting command line marks it expired when it gives up. Its answer
//   then says that nothing was done. A request claimed but not answered in time is reported as
//   such ("it may still take effect"), never as done or not done.
// - Who asked is what the command line says (its user, uid and host), trusted as far as the
//   database credentials are: anyone who may write the state may hold or cancel, as on the
//   leader's host anyone in the service's group may.
//
// Threading: SendControlThroughState blocks (command line). ControlInbox runs its own thread and
// connection; its handler runs on the io_context's thread; Stop() from the thread that ran the
// io_context, after the loop ended.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "core/base/clock.h"
#include "core/store/pg_connection.h"
#include "daemon/control.h"

namespace payoutd {

// Sends `request`, asked by `peer`, to the leader through the state on `conn` and waits up to
// `wait` for its reply. A reply that could not be had is one with exit code 1 that says why and
// whether the request may still take effect.
ControlReply SendControlThroughState(PgConnection& conn, const ControlRequest& request,
                                     const ControlPeer& peer, Duration wait);

class ControlInbox {
 public:
  // Starts taking the requests sent through the state, for `instance` leading with `term`.
  // `handler` runs on `io`'s thread; `io` must outlive this object.
  static std::unique_ptr<ControlInbox> Start(boost::asio::io_context& io, PgConnectOptions db,
                                             std::string instance, int64_t term,
                                             ControlServer::Handler handler);
  ~ControlInbox();
  ControlInbox(const ControlInbox&) = delete;
  ControlInbox& operator=(const ControlInbox&) = delete;

  // Stops taking requests and writes the replies given so far; a request taken whose handler
  // never ran (the io_context's loop ended first) is answered "nothing was done", one whose
  // handler ran without replying "may still take effect". Call once the io_context's loop has
  // ended, so that no handler runs afterwards.
  void Stop();

  struct Shared;  // what the replies, given on the io thread, hand to the inbox's thread

 private:
  ControlInbox(boost::asio::io_context& io, PgConnectOptions db, std::string instance, int64_t term,
               ControlServer::Handler handler);
  void Run();
  bool Listen();
  bool TakeRequests();
  bool WriteReplies();
  void AnswerLeftovers();

  boost::asio::io_context& io_;
  PgConnection conn_;
  const std::string instance_;
  const int64_t term_;
  ControlServer::Handler handler_;
  std::shared_ptr<Shared> shared_;
  bool listening_ = false;  // the inbox thread's: LISTEN issued on the current session
  bool failing_ = false;    // the inbox thread's: the last round failed (logged once)
  std::thread thread_;
};

}  // namespace payoutd
