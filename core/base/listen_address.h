// A local address to listen on, written "host:port" as the configuration has it
// (`metrics.listen`, `callbacks.listen`; see docs/configuration.md): an IPv4 address or a name
// ("127.0.0.1:9464", "localhost:9464"), or an IPv6 address in brackets ("[::1]:9464",
// "[::]:9464"). Port 0 asks the system for any free port. One parser for everyone who reads such
// an address, so that what the configuration accepts is what the servers bind.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/status.h"

namespace payoutd {

struct ListenAddress {
  std::string host;   // without brackets: "127.0.0.1", "localhost", "::1"
  uint16_t port = 0;  // 0: any free port

  // "host:port" again, brackets around an IPv6 host; the port in plain decimal.
  std::string ToString() const;
};

// Fails with the reason alone (e.g. "expected host:port, e.g. 127.0.0.1:9464"); the caller adds
// which key and value it was about. Spaces and control characters are refused; a name is not
// resolved here.
Result<ListenAddress> ParseListenAddress(std::string_view text);

}  // namespace payoutd
