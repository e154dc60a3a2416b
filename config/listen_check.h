// What `payoutd check` adds to parsing for the listen addresses (`metrics.listen`,
// `callbacks.listen`): whether this host could ever listen there. The configuration only says the
// text is "host:port"; this asks the system whether the host resolves, whether it is an address
// of this machine (bound with port 0: the port itself may be in use by the running daemon, which
// is no fault of the configuration), and whether the port is one an unprivileged service may
// take (the systemd unit gives payoutd no capabilities).
//
// Threading: blocking (name resolution); for the command line.
#pragma once

#include <string>

#include "config/config.h"
#include "core/base/status.h"

namespace payoutd {

// kInvalidArgument naming the key, the address and why it can never work, one line per address
// at fault; OK when every listener configured could be served (or none is).
Status CheckListenAddresses(const Config& config);

// The same for one address; `key` names it in the message ("metrics.listen").
Status CheckListenAddress(const std::string& key, const std::string& listen);

}  // namespace payoutd
