#include "config/url.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "config/text.h"

namespace payoutd {
namespace {

// The port after the host, if any, in [host]:port or host:port; fails when there is no host.
Result<std::string_view> PortOf(std::string_view authority) {
  std::string_view host = authority;
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos || close == 1) {
      return Status::InvalidArgument("expected a host in the URL");
    }
    std::string_view tail = host.substr(close + 1);
    if (tail.empty()) return port;
    if (tail.front() != ':') return Status::InvalidArgument("expected a host in the URL");
    port = tail.substr(1);
    if (port.empty()) return Status::InvalidArgument("expected a port number after ':'");
    return port;
  }
  size_t colon = host.rfind(':');
  if (colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (port.empty()) return Status::InvalidArgument("expected a port number after ':'");
  }
  if (host.empty()) return Status::InvalidArgument("expected a host in the URL");
  return port;
}

bool IsPort(std::string_view port) {
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && p == port.data() + port.size() && value != 0 && value <= 65535;
}

}  // namespace

Result<UrlParts> ParseHttpUrl(std::string_view url, bool allow_query) {
  if (url.empty()) {
    return Status::InvalidArgument("expected an http:// or https:// URL, got nothing");
  }
  if (HasControlChars(url) || url.find(' ') != std::string_view::npos) {
    return Status::InvalidArgument("a URL must not contain spaces or control characters");
  }
  size_t sep = url.find("://");
  std::string scheme(url.substr(0, sep == std::string_view::npos ? 0 : sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (sep == std::string_view::npos || (scheme != "http" && scheme != "https")) {
    return Status::InvalidArgument("expected an http:// or https:// URL");
  }
  std::string_view after = url.substr(sep + 3);
  size_t end = after.find_first_of("/?#");
  std::string_view authority = after.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument(
        "a URL must not carry credentials (user:password@); the secret belongs in "
        "auth.secret_file");
  }
  PAYOUTD_ASSIGN_OR_RETURN(std::string_view port, PortOf(authority));
  if (!port.empty() && !IsPort(port)) {
    return Status::InvalidArgument("expected a port from 1 to 65535 in the URL");
  }
  if (!allow_query && rest.find_first_of("?#") != std::string_view::npos) {
    return Status::InvalidArgument("the base URL must not have a query or fragment");
  }
  return UrlParts{scheme, std::string(authority), std::string(rest)};
}

std::string RedactUrl(const std::string& url) {
  if (url.empty()) return "";
  Result<UrlParts> parts = ParseHttpUrl(url, /*allow_query=*/true);
  if (!parts.ok()) return "(invalid)";
  size_t q = parts->rest.find_first_of("?#");
  std::string shown = parts->scheme + "://" + parts->authority + parts->rest.substr(0, q);
  if (q != std::string::npos) shown += "?...";
  return shown;
}

}  // namespace payoutd
