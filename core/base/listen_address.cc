#include "core/base/listen_address.h"

#include <algorithm>
#include <charconv>

namespace payoutd {

std::string ListenAddress::ToString() const {
  bool ipv6 = host.find(':') != std::string::npos;
  std::string h = ipv6 ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  bool blank_or_control = std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
  size_t colon = text.rfind(':');
  if (blank_or_control || colon == std::string_view::npos || colon == 0) {
    return Status::InvalidArgument("expected host:port, e.g. 127.0.0.1:9464");
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return Status::InvalidArgument("expected host:port, e.g. [::1]:9464");
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return Status::InvalidArgument("an IPv6 host must be written in brackets, e.g. [::1]:9464");
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return Status::InvalidArgument("expected a port from 0 to 65535 after ':'");
  }
  return ListenAddress{std::string(host), static_cast<uint16_t>(value)};
}

}  // namespace payoutd
