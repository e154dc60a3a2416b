#include "daemon/control_command.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

#include "core/store/open_store.h"
#include "core/store/payout_store.h"
#include "core/store/pg_lease.h"
#include "core/store/pg_schema.h"
#include "daemon/approve.h"
#include "daemon/control_actions.h"
#include "daemon/remote_control.h"
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

// No leader at all: this command leads for the moment it acts on the state (a fenced store, the
// lease renewed meanwhile), then gives the lease back and leaves no trace in `instances`. nullopt
// when another instance took the lease first (the request then goes to it).
std::optional<int> LeadForAMoment(const Config& config, const ControlRequest& request,
                                  const ControlPeer& peer, std::ostream& out, std::ostream& err) {
  const std::string name = "payoutd " + request.command + " by " + peer.Describe() + " (pid " +
                           std::to_string(peer.pid) + ")";
  LeaderLease lease(PgConnectOptionsFor(config.state), name, config.state.lease);
  lease.Step();
  if (!lease.IsLeader()) {
    if (lease.last_error().empty()) return std::nullopt;
    err << "payoutd: state " << RedactUrl(config.state.url) << ": " << lease.last_error() << "\n";
    return kExitFailure;
  }
  lease.Start([](const LeaseChange&) {});  // renewals; a lost lease fences the store's writes
  int code = kExitFailure;
  StoreAccess access;
  access.fencing_token = lease.fencing();
  auto store = OpenStore(config.state, access);
  if (!store.ok()) {
    err << "payoutd: state " << RedactUrl(config.state.url) << ": " << store.error() << "\n";
  } else {
    code = Print(RunControlOnState(**store, request, peer, config.spool.dir, NowMs()), out, err);
  }
  lease.Stop();
  (void)lease.Release();
  PgConnection conn(PgConnectOptionsFor(config.state));
  (void)conn.Exec("DELETE FROM instances WHERE name = $1", PgParams().Add(name));
  return code;
}

// PostgreSQL, and no daemon answers on this host's control.socket: through the state to the
// leader wherever it runs; with no leader, on the state itself.
int OnSharedState(const Config& config, const ControlRequest& request, Duration timeout,
                  std::ostream& out, std::ostream& err) {
  PgConnection conn(PgConnectOptionsFor(config.state));
  int version = 0;
  PgResult r = ReadPgSchemaVersion(conn, &version);
  if (r.ok() && version == 0) {
    err << "payoutd: unknown batch '" << request.batch << "': the state " << conn.where()
        << " holds no payoutd state yet\n";
    return kExitUsage;
  }
  if (r.ok()) r = EnsurePgSchema(conn, /*create=*/false);  // a version this payoutd can use
  if (!r.ok()) {
    err << "payoutd: state " << conn.where() << ": " << r.message() << "\n";
    return kExitFailure;
  }
  const ControlPeer peer = ControlPeer::Self(/*with_host=*/true);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto instances = ReadServiceInstances(conn);
    if (!instances.ok()) {
      err << "payoutd: state " << conn.where() << ": " << instances.error() << "\n";
      return kExitFailure;
    }
    if (!instances->leader.empty()) {
      return Print(SendControlThroughState(conn, request, peer, timeout), out, err);
    }
    if (std::optional<int> code = LeadForAMoment(config, request, peer, out, err)) return *code;
  }
  err << "payoutd: the lease changed hands three times while this command tried to reach the "
         "leader; nothing was done, try again\n";
  return kExitFailure;
}

// No daemon listens: the command acts on the state, holding the lock `payoutd run` takes.
int OnState(const Config& config, const ControlRequest& request, Duration timeout,
            std::ostream& out, std::ostream& err) {
  if (config.state.backend != StateOptions::Backend::kSqlite) {
    return OnSharedState(config, request, timeout, out, err);
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

int ControlCommand(const Config& config, const ControlRequest& request, Duration timeout,
                   std::ostream& out, std::ostream& err) {
  if (!config.control.socket.empty()) {
    auto sent = SendControl(config.control.socket, request,
                            std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
    if (!sent.ok()) {
      err << "payoutd: control.socket " << config.control.socket << ": " << sent.error() << "\n";
      return kExitFailure;
    }
    if (sent->has_value()) return Print(**sent, out, err);
  }
  return OnState(config, request, timeout, out, err);
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
  // What the state says of the batch, when it can be read (a running daemon does not mind; with
  // a PostgreSQL state, from any host).
  if (config.state.backend != StateOptions::Backend::kSqlite || Exists(config.state.path)) {
    StoreAccess access;
    access.read_only = true;
    auto store = OpenStore(config.state, access);
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
