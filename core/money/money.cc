#include "core/money/money.h"

#include <cstring>
#include <limits>
#include <utility>

namespace payoutd {
namespace {

// ISO 4217 List One: every active alphabetic code that has minor units (funds and precious-metal
// codes with "N.A." minor units, e.g. XAU or XDR, cannot be paid out and are left out).
// Keep sorted; a test checks that every entry round-trips.
constexpr std::pair<const char*, int> kIso4217[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2},
    {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0},
    {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BOV", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2},
    {"BYN", 2}, {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHE", 2}, {"CHF", 2}, {"CHW", 2}, {"CLF", 4},
    {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"COU", 2}, {"CRC", 2}, {"CUC", 2}, {"CUP", 2}, {"CVE", 2},
    {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2}, {"ERN", 2}, {"ETB", 2},
    {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2}, {"GMD", 2},
    {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2}, {"HTG", 2}, {"HUF", 2}, {"IDR", 2},
    {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0}, {"JMD", 2}, {"JOD", 3}, {"JPY", 0},
    {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2},
    {"KZT", 2}, {"LAK", 2}, {"LBP", 2}, {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2},
    {"MDL", 2}, {"MGA", 2}, {"MKD", 2}, {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2},
    {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MXV", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2},
    {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2},
    {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"RUB", 2},
    {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2}, {"SHP", 2},
    {"SLE", 2}, {"SLL", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2},
    {"SZL", 2}, {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2},
    {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"USN", 2}, {"UYI", 0}, {"UYU", 2},
    {"UYW", 4}, {"UZS", 2}, {"VED", 2}, {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0},
    {"XCD", 2}, {"XCG", 2}, {"XOF", 0}, {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
    {"ZWL", 2},
};

constexpr int64_t kPow10[] = {1,      10,      100,      1000,      10000,
                              100000, 1000000, 10000000, 100000000, 1000000000};

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

std::string Plural(int n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

const CurrencyTable& CurrencyTable::Iso4217() {
  static const CurrencyTable table = [] {
    CurrencyTable t;
    for (const auto& [code, digits] : kIso4217) t.entries_.emplace(code, digits);
    return t;
  }();
  return table;
}

CurrencyTable CurrencyTable::WithOverrides(const std::map<std::string, int>& overrides) const {
  CurrencyTable t = *this;
  for (const auto& [code, digits] : overrides) t.entries_[code] = digits;
  return t;
}

std::optional<int> CurrencyTable::MinorUnits(std::string_view code) const {
  auto it = entries_.find(code);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

Result<int64_t> ParseAmount(std::string_view text, int minor_units) {
  return ParseAmount(text, minor_units, {});
}

Result<int64_t> ParseAmount(std::string_view text, int minor_units, std::string_view currency) {
  PAYOUTD_CHECK(minor_units >= 0 && minor_units <= 9);
  if (text.empty()) return Status::InvalidArgument("amount is empty");

  // Classify every character first, so that the message names the real problem (a sign or an
  // exponent) rather than "invalid character".
  size_t dot = std::string_view::npos;
  int dots = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (IsDigit(c)) continue;
    if (c == '.') {
      if (dots++ == 0) dot = i;
      continue;
    }
    if (c == '+' || c == '-')
      return Status::InvalidArgument("amount must not have a sign (+ or -)");
    if ((c == 'e' || c == 'E') && i > 0 && (IsDigit(text[i - 1]) || text[i - 1] == '.')) {
      return Status::InvalidArgument(
          "amount must not use an exponent; write it out in full, e.g. 1500 not 1.5e3");
    }
    if (c == ',' || c == '\'' || c == '_' || c == ' ') {
      return Status::InvalidArgument(
          "amount must not contain a thousands separator or spaces; write e.g. 1234567.89");
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return Status::InvalidArgument("amount contains a control character");
    if (static_cast<unsigned char>(c) >= 0x80) {
      return Status::InvalidArgument(
          "amount contains a non-ASCII character; use only digits and '.'");
    }
    return Status::InvalidArgument(std::string("amount contains an invalid character '") + c +
                                   "'; use only digits and '.'");
  }
  if (dots > 1) {
    return Status::InvalidArgument(
        "amount has more than one '.'; use '.' only as the decimal point, with no thousands "
        "separators");
  }

  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (whole.empty())
    return Status::InvalidArgument("amount must have a digit before the '.', e.g. 0.50");
  if (dot != std::string_view::npos && frac.empty())
    return Status::InvalidArgument("amount must have a digit after the '.', or no '.' at all");

  // Trailing zeros beyond the currency's digits are still too many decimals: "1.000" for USD is
  // ambiguous to the finance user who wrote it (a thousands separator?), so it is refused.
  if (frac.size() > static_cast<size_t>(minor_units)) {
    std::string what = currency.empty() ? std::string("the currency") : std::string(currency);
    std::string has =
        "amount has " + Plural(static_cast<int>(frac.size()), "decimal place", "decimal places");
    if (minor_units == 0) {
      return Status::InvalidArgument(has + " but " + what +
                                     " has no minor unit; write a whole number");
    }
    return Status::InvalidArgument(has + " but " + what + " allows " + std::to_string(minor_units));
  }

  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const char* kTooLarge =
      "amount is too large (the largest amount payoutd can handle is 9223372036854775807 minor "
      "units)";
  int64_t value = 0;
  auto push = [&](char c) {
    int d = c - '0';
    if (value > (kMax - d) / 10) return false;
    value = value * 10 + d;
    return true;
  };
  for (char c : whole)
    if (!push(c)) return Status::InvalidArgument(kTooLarge);
  for (char c : frac)
    if (!push(c)) return Status::InvalidArgument(kTooLarge);
  for (size_t i = frac.size(); i < static_cast<size_t>(minor_units); ++i)
    if (!push('0')) return Status::InvalidArgument(kTooLarge);
  if (value == 0) return Status::InvalidArgument("amount must be greater than zero");
  return value;
}

namespace {

// Splits |minor| into whole and fraction digits; uint64 so that INT64_MIN is representable.
void Split(int64_t minor, int minor_units, bool* negative, uint64_t* whole, uint64_t* frac) {
  PAYOUTD_CHECK(minor_units >= 0 && minor_units <= 9);
  *negative = minor < 0;
  uint64_t abs = *negative ? 0 - static_cast<uint64_t>(minor) : static_cast<uint64_t>(minor);
  uint64_t p = static_cast<uint64_t>(kPow10[minor_units]);
  *whole = abs / p;
  *frac = abs % p;
}

std::string FracDigits(uint64_t frac, int minor_units) {
  std::string s(static_cast<size_t>(minor_units), '0');
  for (int i = minor_units - 1; i >= 0; --i) {
    s[static_cast<size_t>(i)] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  return s;
}

}  // namespace

std::string FormatJsonAmount(int64_t minor, int minor_units) {
  PAYOUTD_CHECK(minor >= 0);
  bool negative;
  uint64_t whole, frac;
  Split(minor, minor_units, &negative, &whole, &frac);
  std::string out = std::to_string(whole);
  if (frac == 0) return out;
  std::string digits = FracDigits(frac, minor_units);
  digits.erase(digits.find_last_not_of('0') + 1);
  out += '.';
  out += digits;
  return out;
}

std::string FormatFixedAmount(int64_t minor, int minor_units) {
  bool negative;
  uint64_t whole, frac;
  Split(minor, minor_units, &negative, &whole, &frac);
  std::string out = negative ? "-" : "";
  out += std::to_string(whole);
  if (minor_units > 0) {
    out += '.';
    out += FracDigits(frac, minor_units);
  }
  return out;
}

bool AddMinor(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

}  // namespace payoutd
