// Durations as the configuration writes them (docs/configuration.md#rules): a number and a unit,
// several in a row if you like: "250ms", "2s", "5m", "72h", "1h30m". Units: h, m, s, ms, us, ns.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/base/clock.h"

namespace payoutd {

// Parses "250ms", "2s", "5m", "72h" (also "1h30m"); nullopt when malformed or too large for
// int64 nanoseconds. No sign, no fraction, no spaces; "0s" is 0.
std::optional<Duration> ParseDuration(std::string_view text);

// The shortest compound form ("1h30m", "1s500ms", "0s"; "-3s" for a negative one), which
// ParseDuration reads back to the same value when it is not negative.
std::string FormatDuration(Duration d);

}  // namespace payoutd
