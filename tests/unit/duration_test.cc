// Durations as the configuration writes them (config/duration.h).
#include "config/duration.h"

#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

namespace payoutd {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(ParseDuration, AcceptsEachUnit) {
  EXPECT_EQ(ParseDuration("250ms"), Duration(milliseconds(250)));
  EXPECT_EQ(ParseDuration("2s"), Duration(seconds(2)));
  EXPECT_EQ(ParseDuration("5m"), Duration(minutes(5)));
  EXPECT_EQ(ParseDuration("72h"), Duration(hours(72)));
  EXPECT_EQ(ParseDuration("15us"), Duration(std::chrono::microseconds(15)));
  EXPECT_EQ(ParseDuration("7ns"), Duration(7));
  EXPECT_EQ(ParseDuration("0s"), Duration(0));
}

TEST(ParseDuration, AcceptsCompoundDurations) {
  EXPECT_EQ(ParseDuration("1h30m"), Duration(minutes(90)));
  EXPECT_EQ(ParseDuration("1m30s500ms"), Duration(milliseconds(90'500)));
}

TEST(ParseDuration, RejectsMalformedText) {
  for (const char* bad : {"", "5", "s", "5x", "1.5s", "-1s", "+1s", " 5s", "5s ", "5 s", "1h30",
                          "ms5", "5S", "5sec", "99999999999999999999s", "9999999h"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
}

TEST(FormatDuration, WritesTheShortestCompoundForm) {
  EXPECT_EQ(FormatDuration(Duration(0)), "0s");
  EXPECT_EQ(FormatDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(FormatDuration(seconds(2)), "2s");
  EXPECT_EQ(FormatDuration(minutes(90)), "1h30m");
  EXPECT_EQ(FormatDuration(hours(72)), "72h");
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1s500ms");
  EXPECT_EQ(FormatDuration(-seconds(3)), "-3s");
}

TEST(FormatDuration, RoundTripsThroughParseDuration) {
  for (int64_t n : {int64_t{1}, int64_t{999}, int64_t{1'000'001}, int64_t{3'723'004'005'006},
                    std::numeric_limits<int64_t>::max()}) {
    EXPECT_EQ(ParseDuration(FormatDuration(Duration(n))), Duration(n)) << n;
  }
}

}  // namespace
}  // namespace payoutd
