// The operator's commands on the command line (docs/cli.md): `payoutd hold|resume|cancel` and
// `payoutd approve`.
//
// hold, resume and cancel go to the running daemon through control.socket, which makes the change
// durable and in force before it answers; `timeout` bounds the wait for that answer. With no
// daemon listening there:
// - SQLite: the command takes the state's lock (the one `payoutd run` holds, so no daemon can
//   start meanwhile) and acts on the state itself (daemon/control_actions.h).
// - PostgreSQL: the request goes to the leader, wherever it runs, through the shared state
//   (daemon/remote_control.h). With no leader at all, the command takes the leader's lease for
//   the moment it acts on the state itself, so that no instance can start leading meanwhile, and
//   gives it back.
// Exit codes: 0 done; 2 usage, unknown batch, or a batch already finished; 1 anything else.
//
// Threading: command-line subcommands; blocking.
#pragma once

#include <iosfwd>
#include <string>

#include "config/config.h"
#include "core/base/clock.h"
#include "daemon/control.h"

namespace payoutd {

int ControlCommand(const Config& config, const ControlRequest& request, Duration timeout,
                   std::ostream& out, std::ostream& err);

int ApproveCommand(const Config& config, const std::string& batch_id, const std::string& key,
                   bool yes);

}  // namespace payoutd
