#include "config/listen_check.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/base/listen_address.h"

namespace payoutd {
namespace {

// The lowest port an unprivileged process may bind (net.ipv4.ip_unprivileged_port_start, which
// also governs IPv6); 1024 when it cannot be read.
int UnprivilegedPortStart() {
  std::ifstream in("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  int port = 1024;
  if (!(in >> port)) return 1024;
  return port;
}

// 0 when a socket of `ai` binds to its address with port 0 (the address is this host's), else
// the errno of the failure.
int TryBind(const addrinfo& ai) {
  int fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC, ai.ai_protocol);
  if (fd < 0) return errno;
  int err = ::bind(fd, ai.ai_addr, ai.ai_addrlen) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

std::string Reason(int err) {
  switch (err) {
    case EADDRNOTAVAIL: return "not an address of this host";
    case EAFNOSUPPORT: return "this host has no IPv6";
    default: return std::strerror(err);
  }
}

}  // namespace

Status CheckListenAddress(const std::string& key, const std::string& listen) {
  if (listen.empty()) return Status::Ok();
  const std::string where = key + ": " + listen + " can never be listened on: ";
  Result<ListenAddress> address = ParseListenAddress(listen);
  if (!address.ok()) return Status::InvalidArgument(where + address.error());
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  // Port 0 (not the one configured): only the address is tried.
  int rc = ::getaddrinfo(address->host.c_str(), "0", &hints, &found);
  if (rc != 0) {
    return Status::InvalidArgument(where + "'" + address->host + "' does not resolve (" +
                                   ::gai_strerror(rc) + ")");
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
  int err = 0;
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    err = TryBind(*ai);
    if (err == 0) break;
  }
  if (err != 0) return Status::InvalidArgument(where + Reason(err));
  const int lowest = UnprivilegedPortStart();
  if (address->port != 0 && address->port < lowest) {
    return Status::InvalidArgument(where + "ports below " + std::to_string(lowest) +
                                   " need a privilege the payoutd service does not have");
  }
  return Status::Ok();
}

Status CheckListenAddresses(const Config& config) {
  std::string errors;
  for (const auto& [key, listen] :
       {std::pair<std::string, std::string>{"metrics.listen", config.metrics.listen},
        {"callbacks.listen", config.callbacks.listen}}) {
    Status st = CheckListenAddress(key, listen);
    if (!st.ok()) errors += (errors.empty() ? "" : "\n") + st.message();
  }
  if (errors.empty()) return Status::Ok();
  return Status::InvalidArgument(errors);
}

}  // namespace payoutd
