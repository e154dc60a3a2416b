#include "config/duration.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <iterator>

namespace payoutd {
namespace {

// Units of a duration, longest first; FormatDuration writes them in this order.
struct Unit {
  std::string_view name;
  int64_t nanos;
};
constexpr Unit kUnits[] = {{"h", 3'600'000'000'000}, {"m", 60'000'000'000}, {"s", 1'000'000'000},
                           {"ms", 1'000'000},        {"us", 1'000},         {"ns", 1}};

const Unit* FindUnit(std::string_view name) {
  const Unit* u = std::find_if(std::begin(kUnits), std::end(kUnits),
                               [&](const Unit& x) { return x.name == name; });
  return u == std::end(kUnits) ? nullptr : u;
}

}  // namespace

std::optional<Duration> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t digits = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == digits) return std::nullopt;
    int64_t value = 0;
    auto [p, ec] = std::from_chars(text.data() + digits, text.data() + i, value);
    if (ec != std::errc() || p != text.data() + i) return std::nullopt;
    size_t letters = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const Unit* u = FindUnit(text.substr(letters, i - letters));
    if (u == nullptr) return std::nullopt;
    int64_t part = 0;
    if (__builtin_mul_overflow(value, u->nanos, &part) ||
        __builtin_add_overflow(total, part, &total)) {
      return std::nullopt;
    }
  }
  return Duration(total);
}

std::string FormatDuration(Duration d) {
  int64_t n = d.count();
  if (n == 0) return "0s";
  std::string out;
  // Work on the magnitude as unsigned so that the most negative value has one too.
  uint64_t rest = n < 0 ? uint64_t(0) - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  if (n < 0) out += '-';
  for (const Unit& u : kUnits) {
    uint64_t count = rest / static_cast<uint64_t>(u.nanos);
    if (count == 0) continue;
    out += std::to_string(count);
    out += u.name;
    rest -= count * static_cast<uint64_t>(u.nanos);
  }
  return out;
}

}  // namespace payoutd
