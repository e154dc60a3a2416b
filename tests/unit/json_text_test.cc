// AppendJsonString (core/base/json_text.h): the one escaping rule for every JSON payoutd writes by
// hand (requests, tokens, log lines, summaries).
#include "core/base/json_text.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace payoutd {
namespace {

std::string Json(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

TEST(JsonText, AppendJsonString_QuotesPlainTextUnchanged) {
  EXPECT_EQ(Json("PAY-0001 Jane Roe"), "\"PAY-0001 Jane Roe\"");
  EXPECT_EQ(Json(""), "\"\"");
}

TEST(JsonText, AppendJsonString_AppendsWithoutTouchingWhatIsThere) {
  std::string out = "{\"id\":";
  AppendJsonString(out, "a");
  EXPECT_EQ(out, "{\"id\":\"a\"");
}

TEST(JsonText, AppendJsonString_EscapesQuoteAndBackslash) {
  EXPECT_EQ(Json("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(Json("C:\\dir\\"), "\"C:\\\\dir\\\\\"");
}

TEST(JsonText, AppendJsonString_UsesShortEscapesForCommonControlCharacters) {
  EXPECT_EQ(Json("a\nb\rc\td\be\ff"), "\"a\\nb\\rc\\td\\be\\ff\"");
}

TEST(JsonText, AppendJsonString_EscapesEveryOtherControlCharacterAndDelAsUnicode) {
  EXPECT_EQ(Json(std::string_view("\0", 1)), "\"\\u0000\"");
  EXPECT_EQ(Json("\x01"), "\"\\u0001\"");
  EXPECT_EQ(Json("\x1b[31m"), "\"\\u001b[31m\"");
  EXPECT_EQ(Json("\x1f"), "\"\\u001f\"");
  EXPECT_EQ(Json("\x7f"), "\"\\u007f\"");
  // Every byte below 0x20 comes out escaped: the output holds no raw control character.
  std::string all;
  for (int c = 0; c < 0x20; ++c) all.push_back(static_cast<char>(c));
  all.push_back('\x7f');
  for (unsigned char c : Json(all)) EXPECT_TRUE(c >= 0x20 && c != 0x7f) << int(c);
}

TEST(JsonText, AppendJsonString_KeepsUtf8AsIs) {
  const std::string text = "Zoë Müller, 東京, 💸";
  EXPECT_EQ(Json(text), "\"" + text + "\"");
}

// The header promises that bytes other than control characters pass through unchanged, valid
// UTF-8 or not: the function escapes, it does not validate or replace.
TEST(JsonText, AppendJsonString_PassesInvalidUtf8ThroughUnchanged) {
  const std::string invalid = "a\xff\xfe b\xc3 c\x80\xed\xa0\x80";  // stray, truncated, surrogate
  EXPECT_EQ(Json(invalid), "\"" + invalid + "\"");
}

}  // namespace
}  // namespace payoutd
