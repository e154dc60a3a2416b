#include "config/text.h"

#include <algorithm>

namespace payoutd {
namespace {

// Values echoed back in errors are cut to this many characters, so one error stays one line.
constexpr size_t kMaxEcho = 60;

bool IsControl(unsigned char ch) {
  return ch < 0x20 || ch == 0x7f;
}

}  // namespace

std::string Quote(std::string_view text) {
  std::string out = "'";
  size_t shown = 0;
  for (unsigned char ch : text) {
    if (shown == kMaxEcho) {
      out += "...";
      break;
    }
    if (IsControl(ch)) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
    ++shown;
  }
  return out + "'";
}

bool HasControlChars(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return IsControl(static_cast<unsigned char>(c)); });
}

}  // namespace payoutd
