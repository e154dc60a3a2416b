// AppendCsvField (core/base/csv_text.h): the one field writer of results.csv and errors.csv.
#include "core/base/csv_text.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace payoutd {
namespace {

std::string Field(std::string_view s, CsvQuoting q = CsvQuoting::kWhenRequired) {
  std::string out = "x,";  // appends, never replaces
  AppendCsvField(out, s, q);
  return out.substr(2);
}

TEST(CsvText, AppendCsvField_QuotesOnlyWhatRfc4180Requires) {
  EXPECT_EQ(Field("plain text; semicolons too"), "plain text; semicolons too");
  EXPECT_EQ(Field("a,b"), "\"a,b\"");
  EXPECT_EQ(Field("say \"x\""), "\"say \"\"x\"\"\"");
  EXPECT_EQ(Field("a\rb"), "\"a\rb\"");
  EXPECT_EQ(Field("a\nb"), "\"a\nb\"");
  EXPECT_EQ(Field(""), "");
  EXPECT_EQ(Field(" edge spaces "), " edge spaces ");
}

TEST(CsvText, AppendCsvField_AlsoEdgeSpacesQuotesALeadingOrTrailingSpace) {
  constexpr CsvQuoting kEdge = CsvQuoting::kAlsoEdgeSpaces;
  EXPECT_EQ(Field(" lead", kEdge), "\" lead\"");
  EXPECT_EQ(Field("trail ", kEdge), "\"trail \"");
  EXPECT_EQ(Field(" ", kEdge), "\" \"");
  EXPECT_EQ(Field("in between", kEdge), "in between");
  EXPECT_EQ(Field("", kEdge), "");
  EXPECT_EQ(Field("a,b", kEdge), "\"a,b\"");
  EXPECT_EQ(Field("\ttab\t", kEdge), "\ttab\t");  // only the space character counts
}

}  // namespace
}  // namespace payoutd
