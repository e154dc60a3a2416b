// Operator commands (hold, resume, cancel) reach a running daemon through a Unix socket
// (`control.socket`, mode 0660: the service's user and group), one request and one reply per
// connection, each a line of JSON (docs/operator-control.md):
//
//   -> {"command":"cancel","batch":"payroll-2026-11","all":false,"reason":"wrong file"}
//   <- {"exit":0,"message":"cancelled 8230 unsent payouts; 1770 already sent will finish"}
//
// The caller is known by the socket's peer credentials (SO_PEERCRED), never by what it says. A
// reply is sent only once the handler says the change is durable and in force. A request that is
// malformed, larger than kMaxRequest, or does not arrive within the read deadline gets a reply
// (or a close) saying so; the daemon is unharmed.
//
// Threading: ControlServer lives on the io_context's thread, as does its handler. SendControl is
// blocking, for the command line.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "core/base/status.h"

namespace payoutd {

struct ControlRequest {
  std::string command;  // "hold" | "resume" | "cancel"
  std::string batch;    // empty when `all`
  bool all = false;
  std::string reason;
};

struct ControlReply {
  int exit_code = 0;    // 0 done; 2 usage, unknown batch, batch already reported; 1 anything else
  std::string message;  // one line for the operator
};

// Who asked: from the socket's peer credentials, or the command line's own user. A request that
// came through the shared state from another host (daemon/remote_control.h) names that host; the
// user and uid are then those the command line there ran as.
struct ControlPeer {
  uid_t uid = 0;
  pid_t pid = 0;
  std::string user;  // the account name, or the uid when it has none
  std::string host;  // empty: this host
  // "alice (uid 1001)", or "alice (uid 1001) on host-b", as the audit list and the log show it.
  std::string Describe() const;
  // The command line's own user (and, with `with_host`, this host's name).
  static ControlPeer Self(bool with_host = false);
};

inline constexpr size_t kMaxControlRequest = 64 * 1024;

std::string EncodeControlRequest(const ControlRequest& request);
Result<ControlRequest> DecodeControlRequest(std::string_view line);
std::string EncodeControlReply(const ControlReply& reply);
Result<ControlReply> DecodeControlReply(std::string_view line);

class ControlServer {
 public:
  using Reply = std::function<void(ControlReply)>;
  // Called once per well-formed request; calls `reply` exactly once, possibly later.
  using Handler = std::function<void(const ControlRequest&, const ControlPeer&, Reply)>;

  // Listens on `path` (a stale socket file there is replaced; its folder is created) with mode
  // 0660. `read_timeout` bounds how long a client may take to send its request.
  static Result<std::unique_ptr<ControlServer>> Create(
      boost::asio::io_context& io, const std::string& path, Handler handler,
      std::chrono::milliseconds read_timeout = std::chrono::seconds(5));
  virtual ~ControlServer() = default;
  // Stops accepting and removes the socket file; connections under way finish.
  virtual void Stop() = 0;
};

// Sends `request` to the daemon listening on `path` and waits for its reply. nullopt when no
// daemon listens there (no socket file, or nobody accepts); an error when one listens but the
// exchange fails.
Result<std::optional<ControlReply>> SendControl(
    const std::string& path, const ControlRequest& request,
    std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace payoutd
