// The http(s) URLs of the configuration: `gateway.base_url` and `callbacks.url`
// (docs/configuration.md#gateway, #callbacks).
#pragma once

#include <string>
#include <string_view>

#include "core/base/status.h"

namespace payoutd {

struct UrlParts {
  std::string scheme;     // "http" or "https", lower case
  std::string authority;  // host and port as written
  std::string rest;       // path, query and fragment
};

// Checks an http:// or https:// URL: a host, a port from 1 to 65535 if any, no spaces or control
// characters, no user:password part; no query or fragment unless `allow_query`. Fails with the
// reason alone, which never repeats a user:password part.
Result<UrlParts> ParseHttpUrl(std::string_view url, bool allow_query);

// A URL for display: any query or fragment (which may carry a token) becomes "?...";
// "(invalid)" for what ParseHttpUrl refuses, "" for "".
std::string RedactUrl(const std::string& url);

}  // namespace payoutd
