// The HTTP endpoint Prometheus scrapes (docs/operations.md#metrics): payoutd's own small
// Boost.Beast server, on a thread of its own so that a slow scrape never delays a payout.
//
// What it answers:
//   GET /metrics (a query string is ignored)  200, the text of `render()`, Prometheus text format
//   any other path                            404
//   any other method on /metrics              405, with "Allow: GET"
//   a request line and headers over max_request bytes, or a body over it   413, then closes
// Connections may be kept alive (Prometheus does). A client that sends nothing, or too slowly, is
// dropped after read_timeout; at most max_connections are served at once (more are closed at
// once), so no client can hold the server or its memory.
//
// Addresses: "host:port" as core/base/listen_address.h reads it: IPv4 ("127.0.0.1:9464"), IPv6 in
// brackets ("[::1]:9464"; "[::]:9464" also takes IPv4 where the system maps it), or a name, which
// is resolved and its first address that can be bound is used. Port 0 lets the system choose.
//
// Threading: Start() and the destructor from one owner thread. render() runs on the server's
// thread, one scrape at a time; it must be safe to call from there (prometheus-cpp's registry
// is). The destructor stops promptly: it closes every connection, whatever a client is doing,
// and joins the thread before it returns.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "core/base/status.h"

namespace payoutd {

struct MetricsServerOptions {
  size_t max_request = 8 * 1024;  // request line + headers, and separately any body
  std::chrono::milliseconds read_timeout{10000};
  int max_connections = 16;
};

class MetricsServer {
 public:
  // Binds and starts serving. Fails with kInvalidArgument for an address that is malformed or
  // does not resolve, kUnavailable when it cannot be bound (in use, not an address of this host);
  // the message names the address and the reason, not the configuration key.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                      std::function<std::string()> render,
                                                      const MetricsServerOptions& options = {});
  virtual ~MetricsServer() = default;

  // The TCP port it serves on (the one the system chose for port 0).
  virtual int port() const = 0;
};

}  // namespace payoutd
