#include "core/money/money.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace payoutd {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(Money_Iso4217, KnowsTheMinorUnitsOfWellKnownCurrencies) {
  const auto& t = CurrencyTable::Iso4217();
  EXPECT_EQ(t.MinorUnits("JPY"), 0);
  EXPECT_EQ(t.MinorUnits("USD"), 2);
  EXPECT_EQ(t.MinorUnits("EUR"), 2);
  EXPECT_EQ(t.MinorUnits("KWD"), 3);
  EXPECT_EQ(t.MinorUnits("BHD"), 3);
  EXPECT_EQ(t.MinorUnits("CLF"), 4);
  EXPECT_EQ(t.MinorUnits("UYW"), 4);
  EXPECT_EQ(t.MinorUnits("KRW"), 0);
  EXPECT_EQ(t.MinorUnits("XOF"), 0);
}

TEST(Money_Iso4217, HoldsEveryActiveCodeAndNoUnpayableOnes) {
  const auto& t = CurrencyTable::Iso4217();
  EXPECT_GE(t.entries().size(), 165u);
  EXPECT_EQ(t.MinorUnits("XAU"), std::nullopt);  // gold: no minor unit
  EXPECT_EQ(t.MinorUnits("XDR"), std::nullopt);
  EXPECT_EQ(t.MinorUnits("HRK"), std::nullopt);  // withdrawn 2023
  EXPECT_EQ(t.MinorUnits("usd"), std::nullopt);  // codes are upper case
  for (const auto& [code, digits] : t.entries()) {
    ASSERT_EQ(code.size(), 3u) << code;
    for (char c : code) ASSERT_TRUE(c >= 'A' && c <= 'Z') << code;
    ASSERT_TRUE(digits >= 0 && digits <= 4) << code;
  }
}

TEST(Money_Iso4217, EveryEntryRoundTripsThroughParseAndFormat) {
  for (const auto& [code, digits] : CurrencyTable::Iso4217().entries()) {
    // 123456789 minor units, written with the currency's own digits.
    const int64_t minor = 123456789;
    std::string fixed = FormatFixedAmount(minor, digits);
    auto parsed = ParseAmount(fixed, digits, code);
    ASSERT_TRUE(parsed.ok()) << code << " " << fixed << ": " << parsed.error();
    EXPECT_EQ(*parsed, minor) << code;
    std::string json = FormatJsonAmount(minor, digits);
    auto reparsed = ParseAmount(json, digits, code);
    ASSERT_TRUE(reparsed.ok()) << code << " " << json;
    EXPECT_EQ(*reparsed, minor) << code;
    // The smallest amount too.
    auto one = ParseAmount(FormatFixedAmount(1, digits), digits, code);
    ASSERT_TRUE(one.ok()) << code;
    EXPECT_EQ(*one, 1) << code;
  }
}

TEST(Money_WithOverrides, AddsAndReplacesEntriesWithoutTouchingTheOriginal) {
  auto t = CurrencyTable::Iso4217().WithOverrides({{"USD", 3}, {"ABC", 1}});
  EXPECT_EQ(t.MinorUnits("USD"), 3);
  EXPECT_EQ(t.MinorUnits("ABC"), 1);
  EXPECT_EQ(t.MinorUnits("EUR"), 2);
  EXPECT_EQ(CurrencyTable::Iso4217().MinorUnits("USD"), 2);
  EXPECT_EQ(CurrencyTable::Iso4217().MinorUnits("ABC"), std::nullopt);
}

TEST(Money_ParseAmount, ParsesExactMinorUnits) {
  EXPECT_EQ(*ParseAmount("42.05", 2), 4205);
  EXPECT_EQ(*ParseAmount("42.5", 2), 4250);
  EXPECT_EQ(*ParseAmount("42", 2), 4200);
  EXPECT_EQ(*ParseAmount("0.01", 2), 1);
  EXPECT_EQ(*ParseAmount("007.50", 2), 750);
  EXPECT_EQ(*ParseAmount("1000", 0), 1000);
  EXPECT_EQ(*ParseAmount("1.250", 3), 1250);
  EXPECT_EQ(*ParseAmount("0.0001", 4), 1);
  // A value a double cannot hold exactly.
  EXPECT_EQ(*ParseAmount("90071992547409.93", 2), 9007199254740993);
}

TEST(Money_ParseAmount, AcceptsTheLargestInt64) {
  EXPECT_EQ(*ParseAmount("9223372036854775807", 0), kMax);
  EXPECT_EQ(*ParseAmount("92233720368547758.07", 2), kMax);
  EXPECT_EQ(*ParseAmount("9223372036.854775807", 9), kMax);
}

TEST(Money_ParseAmount, RejectsOneBeyondInt64) {
  for (auto [text, digits] :
       {std::pair{"9223372036854775808", 0}, std::pair{"92233720368547758.08", 2},
        std::pair{"92233720368547759", 2}, std::pair{"99999999999999999999999", 0}}) {
    auto r = ParseAmount(text, digits);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().find("too large"), std::string::npos) << r.error();
  }
}

void ExpectRejected(std::string_view text, int digits, std::string_view needle) {
  auto r = ParseAmount(text, digits, "USD");
  ASSERT_FALSE(r.ok()) << "accepted '" << text << "'";
  EXPECT_NE(r.error().find(needle), std::string::npos) << "'" << text << "' -> " << r.error();
}

TEST(Money_ParseAmount, RejectsEmpty) {
  ExpectRejected("", 2, "empty");
}
TEST(Money_ParseAmount, RejectsSign) {
  ExpectRejected("-1.00", 2, "sign");
  ExpectRejected("+1.00", 2, "sign");
}
TEST(Money_ParseAmount, RejectsExponent) {
  ExpectRejected("1e3", 2, "exponent");
  ExpectRejected("1.5E+3", 2, "exponent");
}
TEST(Money_ParseAmount, RejectsThousandsSeparator) {
  ExpectRejected("1,000.00", 2, "thousands separator");
  ExpectRejected("1 000", 2, "thousands separator");
  ExpectRejected("1'000", 2, "thousands separator");
  ExpectRejected("1.000.000", 2, "more than one '.'");
}
TEST(Money_ParseAmount, RejectsOtherCharacters) {
  ExpectRejected("12a", 2, "invalid character 'a'");
  ExpectRejected("$12", 2, "invalid character '$'");
  ExpectRejected("12\xC2\xA0", 2, "non-ASCII");
  ExpectRejected("1\t2", 2, "control character");
}
TEST(Money_ParseAmount, RejectsMissingDigitsAroundThePoint) {
  ExpectRejected(".5", 2, "digit before");
  ExpectRejected("5.", 2, "digit after");
}
TEST(Money_ParseAmount, RejectsMoreDecimalsThanTheCurrencyHas) {
  ExpectRejected("42.055", 2, "amount has 3 decimal places but USD allows 2");
  ExpectRejected("42.000", 2, "3 decimal places");  // trailing zeros are not silently dropped
  auto r = ParseAmount("100.5", 0, "JPY");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(),
            "amount has 1 decimal place but JPY has no minor unit; write a whole number");
  auto anon = ParseAmount("1.234", 2);
  ASSERT_FALSE(anon.ok());
  EXPECT_EQ(anon.error(), "amount has 3 decimal places but the currency allows 2");
}
TEST(Money_ParseAmount, RejectsZero) {
  ExpectRejected("0", 2, "greater than zero");
  ExpectRejected("0.00", 2, "greater than zero");
  ExpectRejected("000", 0, "greater than zero");
}

TEST(Money_FormatJsonAmount, WritesTheShortestExactForm) {
  EXPECT_EQ(FormatJsonAmount(1000000, 2), "10000");
  EXPECT_EQ(FormatJsonAmount(4205, 2), "42.05");
  EXPECT_EQ(FormatJsonAmount(4250, 2), "42.5");
  EXPECT_EQ(FormatJsonAmount(5, 2), "0.05");
  EXPECT_EQ(FormatJsonAmount(0, 2), "0");
  EXPECT_EQ(FormatJsonAmount(1000, 0), "1000");
  EXPECT_EQ(FormatJsonAmount(1250, 3), "1.25");
  EXPECT_EQ(FormatJsonAmount(1, 4), "0.0001");
  EXPECT_EQ(FormatJsonAmount(kMax, 2), "92233720368547758.07");
  EXPECT_EQ(FormatJsonAmount(kMax, 0), "9223372036854775807");
}

TEST(Money_FormatFixedAmount, WritesTheCurrencysDigits) {
  EXPECT_EQ(FormatFixedAmount(4250, 2), "42.50");
  EXPECT_EQ(FormatFixedAmount(1000, 0), "1000");
  EXPECT_EQ(FormatFixedAmount(1250, 3), "1.250");
  EXPECT_EQ(FormatFixedAmount(5, 2), "0.05");
  EXPECT_EQ(FormatFixedAmount(0, 2), "0.00");
  EXPECT_EQ(FormatFixedAmount(-4250, 2), "-42.50");
  EXPECT_EQ(FormatFixedAmount(kMax, 2), "92233720368547758.07");
  EXPECT_EQ(FormatFixedAmount(std::numeric_limits<int64_t>::min(), 2), "-92233720368547758.08");
}

TEST(Money_AddMinor, DetectsOverflowAndLeavesTheOutputUnchanged) {
  int64_t out = 7;
  EXPECT_TRUE(AddMinor(kMax - 1, 1, &out));
  EXPECT_EQ(out, kMax);
  out = 7;
  EXPECT_FALSE(AddMinor(kMax, 1, &out));
  EXPECT_EQ(out, 7);
  EXPECT_FALSE(AddMinor(std::numeric_limits<int64_t>::min(), -1, &out));
  EXPECT_EQ(out, 7);
}

}  // namespace
}  // namespace payoutd
