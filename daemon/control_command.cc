#include "daemon/control_command.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "core/store/payout_store.h"
#include "daemon/approve.h"
#include "daemon/control_actions.h"
#include "daemon/service.h"

namespace payoutd {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

int Print(const ControlReply& reply, std::ostream& out, std::ostream& err) {
  (reply.exit_code == 0 ? out : err)
      << (reply.exit_code == 0 ? "" : "payoutd: ") << reply.message << "\n";
  return reply.exit_code;
}

// No daemon listens: the command acts on the state, holding the lock `payoutd run` takes.
int OnState(const Config& config, const ControlRequest& request, std::ostream& out,
            std::ostream& err) {
  if (config.state.backend != StateOptions::Backend::kSqlite) {
    err << "payoutd: no payoutd answers on control.socket " << config.control.socket
        << "; with a PostgreSQL state, run the command on the leader's host "
           "('payoutd status' names it)\n";
    return kExitFailure;
  }
  if (!Exists(config.state.path)) {
    err << "payoutd: unknown batch '" << request.batch << "': no state at " << config.state.path
        << " yet\n";
    return kExitUsage;
  }
  const std::string lock_path = config.state.path + ".lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    err << "payoutd: cannot open the state's lock " << lock_path << "\n";
    return kExitFailure;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    err << "payoutd: a payoutd is using the state " << config.state.path
        << " but does not answer on control.socket " << config.control.socket
        << " (is it still starting, or is control.socket set differently?)\n";
    return kExitFailure;
  }
  int code = kExitFailure;
  auto store = PayoutStore::Open(config.state.path);
  if (!store.ok()) {
    err << "payoutd: state " << config.state.path << ": " << store.error() << "\n";
  } else {
    code =
        Print(RunControlOnState(**store, request, ControlPeer::Self(), config.spool.dir, NowMs()),
              out, err);
  }
  ::close(fd);
  return code;
}

}  // namespace

int ControlCommand(const Config& config, const ControlRequest& request, std::ostream& out,
                   std::ostream& err) {
  if (!config.control.socket.empty()) {
    auto sent = SendControl(config.control.socket, request);
    if (!sent.ok()) {
      err << "payoutd: control.socket " << config.control.socket << ": " << sent.error() << "\n";
      return kExitFailure;
    }
    if (sent->has_value()) return Print(**sent, out, err);
  }
  return OnState(config, request, out, err);
}

int ApproveCommand(const Config& config, const std::string& batch_id, const std::string& key,
                   bool yes) {
  ApproveOptions o;
  o.spool_dir = config.spool.dir;
  o.batch_id = batch_id;
  o.key = key;
  o.yes = yes;
  o.rules = config.batches;
  o.user = ControlPeer::Self().user;
  // What the state says of the batch, when it can be read (a running daemon does not mind).
  if (config.state.backend == StateOptions::Backend::kSqlite && Exists(config.state.path)) {
    auto store = PayoutStore::Open(config.state.path, /*read_only=*/true);
    if (store.ok()) {
      auto rec = (*store)->GetBatch(batch_id);
      auto approvals = (*store)->ListApprovals(batch_id);
      if (rec.ok() && rec->has_value() && approvals.ok()) {
        o.approvals_required = (*rec)->approvals_required;
        o.approvals_given = static_cast<int>(approvals->size());
        o.accepted_sha256 = (*rec)->sha256;
      }
    }
  }
  return RunApprove(o, std::cin, std::cout, std::cerr);
}

}  // namespace payoutd
