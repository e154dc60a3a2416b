// The sandbox gateway's network side: an HTTP/1.1 keep-alive server (Boost.Beast) that hands each
// request to SandboxGateway and carries out its reply (delay, drop, refusing connections for a
// while: the listener and every open connection closed, then the same port listened on again),
// plus the callback sender.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "tests/sandbox/sandbox_gateway.h"

namespace payoutd::sandbox {

class SandboxServer {
 public:
  // Binds and listens on options.listen ("host:port", port 0 = OS-chosen). Throws on failure.
  SandboxServer(boost::asio::io_context& io, SandboxGateway& gateway);
  ~SandboxServer();
  uint16_t port() const;
  // Stops accepting; open connections end when the io_context stops.
  void Close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace payoutd::sandbox
