#include "core/batch/csv_reader.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace payoutd {
namespace {

using Rows = std::vector<std::vector<std::string>>;

struct Outcome {
  Rows rows;
  std::vector<uint32_t> lines;  // record_line() of each record
  std::vector<CsvError> errors;
  std::string hashed;  // what OnBytes saw
};

Outcome ReadAll(const std::string& text, CsvOptions options = {}) {
  std::istringstream in(text);
  CsvReader reader(in, options);
  Outcome out;
  reader.OnBytes([&](std::string_view b) { out.hashed.append(b); });
  for (;;) {
    auto next = reader.Read();
    if (next == CsvReader::Next::kEnd) break;
    if (next == CsvReader::Next::kError) {
      out.errors.push_back(reader.error());
      continue;
    }
    out.rows.emplace_back(reader.fields().begin(), reader.fields().end());
    out.lines.push_back(reader.record_line());
  }
  return out;
}

TEST(CsvReader_Basics, ReadsPlainRecordsWithLf) {
  auto r = ReadAll("a,b,c\n1,2,3\n");
  EXPECT_EQ(r.rows, (Rows{{"a", "b", "c"}, {"1", "2", "3"}}));
  EXPECT_EQ(r.lines, (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(r.errors.empty());
}

TEST(CsvReader_Basics, ReadsCrlfAndLoneCrLineBreaks) {
  auto r = ReadAll("a,b\r\n1,2\r3,4\r\n");
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"1", "2"}, {"3", "4"}}));
  EXPECT_EQ(r.lines, (std::vector<uint32_t>{1, 2, 3}));
}

TEST(CsvReader_Basics, ReadsTheLastRecordWithoutAFinalLineBreak) {
  auto r = ReadAll("a,b\n1,2");
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"1", "2"}}));
}

TEST(CsvReader_Basics, KeepsEmptyFieldsIncludingTrailingOnes) {
  auto r = ReadAll("a,b,c\n,,\n1,,\n");
  EXPECT_EQ(r.rows, (Rows{{"a", "b", "c"}, {"", "", ""}, {"1", "", ""}}));
}

TEST(CsvReader_Basics, SkipsEmptyLinesButCountsThem) {
  auto r = ReadAll("a,b\n\n1,2\r\n\r\n3,4\n\n");
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"1", "2"}, {"3", "4"}}));
  EXPECT_EQ(r.lines, (std::vector<uint32_t>{1, 3, 5}));
}

TEST(CsvReader_Basics, DropsAUtf8BomButHashesIt) {
  std::string text = "\xEF\xBB\xBFid,amount\nx,1\n";
  auto r = ReadAll(text);
  EXPECT_EQ(r.rows, (Rows{{"id", "amount"}, {"x", "1"}}));
  EXPECT_EQ(r.hashed, text);
}

TEST(CsvReader_Basics, UsesAConfiguredDelimiter) {
  CsvOptions o;
  o.delimiter = ';';
  auto r = ReadAll("a;b\n\"x;y\";1,5\n", o);
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"x;y", "1,5"}}));
}

TEST(CsvReader_Empty, EmptyInputHasNoRecords) {
  auto r = ReadAll("");
  EXPECT_TRUE(r.rows.empty());
  EXPECT_TRUE(r.errors.empty());
  EXPECT_TRUE(ReadAll("\xEF\xBB\xBF").rows.empty());
  EXPECT_TRUE(ReadAll("\n\r\n").rows.empty());
}

TEST(CsvReader_Empty, HeaderOnlyIsOneRecord) {
  auto r = ReadAll("id,amount\r\n");
  EXPECT_EQ(r.rows, (Rows{{"id", "amount"}}));
}

TEST(CsvReader_Quoting, QuotedFieldMayHoldTheDelimiter) {
  auto r = ReadAll("a,b\n\"Doe, Jane\",2\n");
  EXPECT_EQ(r.rows[1], (std::vector<std::string>{"Doe, Jane", "2"}));
}

TEST(CsvReader_Quoting, DoubledQuoteIsOneQuote) {
  auto r = ReadAll("a\n\"say \"\"hi\"\"\"\n\"\"\"\"\n\"\"\n");
  EXPECT_EQ(r.rows, (Rows{{"a"}, {"say \"hi\""}, {"\""}, {""}}));
}

TEST(CsvReader_Quoting, QuotedLineBreaksStayInTheFieldAndCountAsLines) {
  auto r = ReadAll("a,b\n\"line1\nline2\r\nline3\",x\nnext,y\n");
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[1][0], "line1\nline2\r\nline3");
  EXPECT_EQ(r.lines, (std::vector<uint32_t>{1, 2, 5}));
}

TEST(CsvReader_Quoting, QuotedLastFieldAtEndOfInput) {
  auto r = ReadAll("a,b\n1,\"2\"");
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"1", "2"}}));
}

TEST(CsvReader_Errors, QuoteInsideAnUnquotedFieldIsAnErrorAndReadingGoesOn) {
  auto r = ReadAll("a,b\nab\"c,1\nok,2\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2u);
  EXPECT_EQ(r.errors[0].field, 1u);
  EXPECT_NE(r.errors[0].message.find("quote"), std::string::npos);
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"ok", "2"}}));
}

TEST(CsvReader_Errors, TextAfterAClosingQuoteIsAnError) {
  auto r = ReadAll("a,b\n1,\"x\"y\n3,4\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2u);
  EXPECT_EQ(r.errors[0].field, 2u);
  EXPECT_NE(r.errors[0].message.find("after the closing quote"), std::string::npos);
  EXPECT_EQ(r.rows.back(), (std::vector<std::string>{"3", "4"}));
}

TEST(CsvReader_Errors, UnclosedQuoteIsReportedWhereItOpens) {
  auto r = ReadAll("a,b\n1,2\n3,\"never closed\n4,5\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 3u);
  EXPECT_EQ(r.errors[0].field, 2u);
  EXPECT_NE(r.errors[0].message.find("never closed"), std::string::npos);
  EXPECT_EQ(r.rows.size(), 2u);
}

TEST(CsvReader_Errors, RaggedRowsAreErrorsWithTheirLine) {
  auto r = ReadAll("a,b,c\n1,2\n1,2,3\n1,2,3,4\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].line, 2u);
  EXPECT_EQ(r.errors[0].field, 0u);
  EXPECT_NE(r.errors[0].message.find("row has 2 fields but the header has 3"), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 4u);
  EXPECT_EQ(r.rows.size(), 2u);
}

TEST(CsvReader_Errors, RaggedRowsAreAllowedWhenAskedFor) {
  CsvOptions o;
  o.uniform_width = false;
  auto r = ReadAll("a,b,c\n1,2\n", o);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.rows.size(), 2u);
}

TEST(CsvReader_Errors, InvalidUtf8IsAnErrorWithLineAndField) {
  auto r = ReadAll("a,b\n1,caf\xE9\n2,ok\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2u);
  EXPECT_EQ(r.errors[0].field, 2u);
  EXPECT_NE(r.errors[0].message.find("invalid UTF-8 (byte 0xE9)"), std::string::npos);
  EXPECT_EQ(r.rows.back(), (std::vector<std::string>{"2", "ok"}));
}

TEST(CsvReader_Errors, InvalidUtf8InsideAQuotedLineBreakNamesTheRightLine) {
  auto r = ReadAll("a,b\n1,\"ok\nbad \xC0\xAF\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 3u);  // overlong encoding, on the field's second line
}

TEST(CsvReader_Errors, RejectsSurrogatesAndOverlongButAcceptsValidMultibyte) {
  auto ok = ReadAll("a\nJos\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x92\xB8\n");
  EXPECT_TRUE(ok.errors.empty());
  EXPECT_EQ(ok.rows[1][0], "Jos\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x92\xB8");
  EXPECT_EQ(ReadAll("a\n\xED\xA0\x80\n").errors.size(), 1u);      // UTF-16 surrogate
  EXPECT_EQ(ReadAll("a\n\xE0\x80\xAF\n").errors.size(), 1u);      // overlong '/'
  EXPECT_EQ(ReadAll("a\n\xF4\x90\x80\x80\n").errors.size(), 1u);  // beyond U+10FFFF
  EXPECT_EQ(ReadAll("a\n\xE2\x82\n").errors.size(), 1u);          // truncated sequence
}

TEST(CsvReader_Errors, OverlongRecordIsAnErrorNotUnboundedMemory) {
  CsvOptions o;
  o.max_record_bytes = 64;
  auto r = ReadAll("a\n\"" + std::string(1000, 'x') + "\"\nshort\n", o);
  ASSERT_GE(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2u);
  EXPECT_NE(r.errors[0].message.find("longer than 64 bytes"), std::string::npos);
}

TEST(CsvReader_Chunks, RecordsSpanningReadChunksAreIntact) {
  // Well over one 1 MiB read chunk, with quotes and CRLFs landing on chunk edges somewhere.
  std::string text = "id,name\r\n";
  Rows expected{{"id", "name"}};
  for (int i = 0; i < 50000; ++i) {
    std::string name = "Name \"" + std::to_string(i) + "\", x";
    text += std::to_string(i) + ",\"Name \"\"" + std::to_string(i) + "\"\", x\"\r\n";
    expected.push_back({std::to_string(i), name});
  }
  ASSERT_GT(text.size(), 1u << 20);
  auto r = ReadAll(text);
  EXPECT_TRUE(r.errors.empty());
  ASSERT_EQ(r.rows.size(), expected.size());
  EXPECT_EQ(r.rows, expected);
  EXPECT_EQ(r.lines.back(), 50001u);
  EXPECT_EQ(r.hashed, text);
}

TEST(CsvReader_Chunks, UnquotedRowsOfEveryLengthSpanningChunksAreIntact) {
  // Quote-free rows take the in-place fast path; vary lengths so that CR, LF and delimiters land on
  // every offset of the 16-byte scan and of the read chunks.
  std::string text;
  Rows expected;
  for (int i = 0; i < 60000; ++i) {
    std::string a(static_cast<size_t>(i % 37), 'a');
    std::string b = std::to_string(i);
    std::string c(static_cast<size_t>(i % 19), 'c');
    text += a + "," + b + "," + c + (i % 3 == 0 ? "\r\n" : i % 3 == 1 ? "\n" : "\r");
    expected.push_back({a, b, c});
  }
  ASSERT_GT(text.size(), 1u << 20);
  auto r = ReadAll(text);
  EXPECT_TRUE(r.errors.empty());
  ASSERT_EQ(r.rows.size(), expected.size());
  EXPECT_EQ(r.rows, expected);
  EXPECT_EQ(r.lines.back(), 60000u);
}

TEST(CsvReader_Quoting, QuoteLateInALongLineFallsBackToFullParsing) {
  auto r = ReadAll("a,b\n0123456789abcdefghij,\"x,\"\"y\"\"\"\n");
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.rows, (Rows{{"a", "b"}, {"0123456789abcdefghij", "x,\"y\""}}));
}

}  // namespace
}  // namespace payoutd
