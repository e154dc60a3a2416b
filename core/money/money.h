// Money is an integer count of minor units plus an ISO 4217 currency; never floating point.
// This module parses decimal text exactly into minor units and formats minor units back, exactly,
// in the two forms payoutd writes: the gateway's JSON number and the fixed-digit report form.
//
// Everything here is a value or a pure function: no I/O, no logging, callable from any thread.
// CurrencyTable::Iso4217() is built once and lives for the whole process.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"

namespace payoutd {

struct Money {
  int64_t minor = 0;     // > 0 for a payout amount
  std::string currency;  // ISO 4217 alphabetic code, upper case
  bool operator==(const Money&) const = default;
};

// Minor-unit digits per currency. The built-in table holds every active ISO 4217 alphabetic code
// (e.g. JPY 0, USD 2, KWD 3, CLF 4); config may override or add entries. Immutable once built;
// safe to share between threads.
class CurrencyTable {
 public:
  // The built-in ISO 4217 table.
  static const CurrencyTable& Iso4217();
  // A copy of this table with entries added or replaced. Codes must be three upper-case letters
  // and minor units 0..9 (the caller validates; config does).
  CurrencyTable WithOverrides(const std::map<std::string, int>& overrides) const;

  // Minor-unit digits of `code`, or nullopt for an unknown code.
  std::optional<int> MinorUnits(std::string_view code) const;
  const std::map<std::string, int, std::less<>>& entries() const { return entries_; }

 private:
  std::map<std::string, int, std::less<>> entries_;
};

// Parses a non-negative decimal written with '.', e.g. "42.05", into minor units for a currency
// with `minor_units` digits. Rejects (each with its own message, phrased for a finance user):
// empty text, a sign, an exponent, a thousands separator, any other character, more decimals than
// the currency has, zero, and values beyond int64. Leading zeros ("007.50") are accepted.
Result<int64_t> ParseAmount(std::string_view text, int minor_units);
// The same, naming the currency in the decimals message: "amount has 3 decimal places but USD
// allows 2". (Additive overload: the two-argument form says "the currency".)
Result<int64_t> ParseAmount(std::string_view text, int minor_units, std::string_view currency);

// Shortest exact decimal, for the gateway's JSON: 1000000 minor @2 -> "10000", 4205 -> "42.05",
// 4250 -> "42.5", 5 -> "0.05". Requires minor >= 0.
std::string FormatJsonAmount(int64_t minor, int minor_units);

// Fixed minor digits, for reports: 4250 @2 -> "42.50", 1000 @0 -> "1000", 1250 @3 -> "1.250".
// Negative values get a leading '-'.
std::string FormatFixedAmount(int64_t minor, int minor_units);

// Checked arithmetic for totals: false on int64 overflow (and *out is unchanged).
bool AddMinor(int64_t a, int64_t b, int64_t* out);

}  // namespace payoutd
