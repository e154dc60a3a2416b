// What `payoutd check` prints about a valid configuration (docs/cli.md): one line per section,
// "label:    value", with the defaults filled in. Never the secret, nor a URL's query (which may
// carry a token).
#pragma once

#include <string>

#include "config/config.h"

namespace payoutd {

std::string Summarize(const Config& config);

}  // namespace payoutd
