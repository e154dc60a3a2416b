// Writing JSON text by hand (requests, tokens, logs, summaries): one escaping rule for all of them.
// Pure, thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace payoutd {

// Appends `s` as a JSON string literal, quotes included. Control characters and DEL are escaped;
// other bytes (UTF-8) pass through unchanged.
void AppendJsonString(std::string& out, std::string_view s);

}  // namespace payoutd
