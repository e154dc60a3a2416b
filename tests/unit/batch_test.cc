#include "core/batch/batch.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>

namespace payoutd {
namespace {

const char* kHeader = "id,amount,currency,account_number,account_name,operator_code,method,email\n";

ValidatedBatch Check(const std::string& csv, BatchRules rules = {},
                     std::string_view batch_id = "B1") {
  std::istringstream in(csv);
  return BatchValidator(std::move(rules)).Validate(batch_id, in);
}

// The batch has exactly one error, at `line` in `column`, whose message contains `needle`.
void ExpectOnlyError(const ValidatedBatch& b, uint32_t line, std::string_view column,
                     std::string_view needle) {
  ASSERT_EQ(b.error_count, 1u) << (b.errors.empty() ? "" : b.errors[0].message);
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_EQ(b.errors[0].line, line);
  EXPECT_EQ(b.errors[0].column, column);
  EXPECT_NE(b.errors[0].message.find(needle), std::string::npos) << b.errors[0].message;
  EXPECT_FALSE(b.ok());
  EXPECT_TRUE(b.payouts.empty());
}

TEST(BatchValidator_Accepts, AGoodBatchBecomesPayoutsInInputOrder) {
  auto b = Check(std::string(kHeader) +
                 "p1,42.05,USD,DE89370400440532013000,Jane Doe,OP1,,jane@example.com\n"
                 "p2,1000,JPY,12345678,\"Doe, John\",OP2,CARD,\n"
                 "p3,1.250,KWD,999,Ana,OP1,,\n");
  ASSERT_TRUE(b.ok()) << b.errors[0].message;
  EXPECT_EQ(b.rows, 3u);
  ASSERT_EQ(b.payouts.size(), 3u);
  Payout p = b.payouts[0];
  EXPECT_EQ(p.line, 2u);
  EXPECT_EQ(p.id, "p1");
  EXPECT_EQ(p.amount_minor, 4205);
  EXPECT_EQ(p.currency, "USD");
  EXPECT_EQ(p.account_number, "DE89370400440532013000");
  EXPECT_EQ(p.account_name, "Jane Doe");
  EXPECT_EQ(p.operator_code, "OP1");
  EXPECT_EQ(p.method, "BANK_TRANSFER");  // default_method
  EXPECT_EQ(p.email, "jane@example.com");
  EXPECT_EQ(b.payouts[1].account_name, "Doe, John");
  EXPECT_EQ(b.payouts[1].method, "CARD");
  EXPECT_EQ(b.payouts[1].amount_minor, 1000);
  EXPECT_EQ(b.payouts[2].amount_minor, 1250);
  EXPECT_EQ(b.totals,
            (std::map<std::string, int64_t>{{"USD", 4205}, {"JPY", 1000}, {"KWD", 1250}}));
}

TEST(BatchValidator_Accepts, HeaderNamesAreTrimmedAndCaseInsensitiveAndExtraColumnsIgnored) {
  auto b = Check(
      " Amount ,CURRENCY,Notes,account_Number,ACCOUNT_NAME , operator_code\n"
      "10,EUR,whatever,123,Ann,OP\n");
  ASSERT_TRUE(b.ok()) << b.errors[0].message;
  EXPECT_EQ(b.payouts[0].amount_minor, 1000);
  EXPECT_EQ(b.payouts[0].id, "B1-1");
}

TEST(BatchValidator_Accepts, DefaultIdIsBatchIdAndDataRowNumber) {
  auto b = Check(
      "id,amount,currency,account_number,account_name,operator_code\n"
      "x,1,EUR,1,A,O\n"
      ",2,EUR,1,A,O\n"
      ",3,EUR,1,A,O\n",
      {}, "payroll-2026-11");
  ASSERT_TRUE(b.ok()) << b.errors[0].message;
  EXPECT_EQ(b.payouts[1].id, "payroll-2026-11-2");
  EXPECT_EQ(b.payouts[2].id, "payroll-2026-11-3");
}

TEST(BatchValidator_Accepts, DefaultOperatorCodeMakesTheColumnOptional) {
  BatchRules rules;
  rules.default_operator_code = "DEFAULT_OP";
  auto b = Check("amount,currency,account_number,account_name\n5,USD,1,A\n", rules);
  ASSERT_TRUE(b.ok()) << b.errors[0].message;
  EXPECT_EQ(b.payouts[0].operator_code, "DEFAULT_OP");
}

TEST(BatchValidator_Accepts, BomCrlfAndSemicolonDelimiter) {
  BatchRules rules;
  rules.delimiter = ';';
  auto b = Check(
      "\xEF\xBB\xBF"
      "amount;currency;account_number;account_name;operator_code\r\n7,5;EUR;1;A;O\r\n",
      rules);
  // "7,5" with ';' as delimiter is a decimal comma, which is refused like a thousands separator.
  ExpectOnlyError(b, 2, "amount", "thousands separator");
  auto good = Check(
      "\xEF\xBB\xBF"
      "amount;currency;account_number;account_name;operator_code\r\n7.5;EUR;1;A;O\r\n",
      rules);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.payouts[0].amount_minor, 750);
}

TEST(BatchValidator_Accepts, Sha256IsOfTheFilesBytes) {
  auto b = Check("amount,currency,account_number,account_name,operator_code\n1,EUR,1,A,O\n");
  ASSERT_TRUE(b.ok());
  // printf the text above | sha256sum
  EXPECT_EQ(b.sha256, "d25f8bf5843f36b16913c7c517b824982aeddf61538d4539ad77498c5e6c9558");
}

TEST(BatchValidator_Accepts, BigBatchIsHashedWholeAndKeptInOrder) {
  // Over 1 MiB, so reading goes to big chunks and hashing to its worker thread.
  std::string csv = kHeader;
  for (int i = 1; i <= 40000; ++i)
    csv += "pay-" + std::to_string(i) +
           ",12.34,EUR,DE89370400440532013000,Jane Doe,OP1,,jane@example.com\n";
  ASSERT_GT(csv.size(), 2u << 20);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  ASSERT_EQ(EVP_Digest(csv.data(), csv.size(), md, &n, EVP_sha256(), nullptr), 1);
  std::string hex;
  for (unsigned i = 0; i < n; ++i) {
    hex += "0123456789abcdef"[md[i] >> 4];
    hex += "0123456789abcdef"[md[i] & 0xF];
  }
  auto b = Check(csv);
  ASSERT_TRUE(b.ok()) << b.errors[0].message;
  EXPECT_EQ(b.sha256, hex);
  ASSERT_EQ(b.payouts.size(), 40000u);
  EXPECT_EQ(b.payouts.back().id, "pay-40000");
  EXPECT_EQ(b.payouts.back().line, 40001u);
  EXPECT_EQ(b.totals.at("EUR"), 40000 * 1234);
}

TEST(BatchValidator_File, EmptyFileIsRejected) {
  auto b = Check("");
  ExpectOnlyError(b, 0, "", "the file is empty");
  EXPECT_EQ(b.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(BatchValidator_File, HeaderOnlyIsRejectedAsNoPayouts) {
  ExpectOnlyError(Check(kHeader), 0, "", "no payouts");
}

TEST(BatchValidator_File, MissingRequiredColumnsAreNamed) {
  auto b = Check("id,amount,account_number,account_name\n1,2,3,4\n");
  ASSERT_EQ(b.error_count, 2u);
  EXPECT_EQ(b.errors[0],
            (BatchError{1, "currency", "the header has no currency column, which is required"}));
  EXPECT_EQ(b.errors[1].column, "operator_code");
  EXPECT_EQ(b.rows, 1u);
}

TEST(BatchValidator_File, MissingHeaderRowIsSaidPlainly) {
  auto b = Check("p1,42.05,USD,DE89,Jane,OP\np2,1,USD,DE89,Jane,OP\n");
  ExpectOnlyError(b, 1, "", "the first line is not a header row");
  EXPECT_EQ(b.rows, 1u);
}

TEST(BatchValidator_File, DuplicateHeaderColumnIsAnError) {
  auto b =
      Check("amount,currency,account_number,account_name,operator_code,AMOUNT\n1,EUR,1,A,O,2\n");
  ExpectOnlyError(b, 1, "amount", "twice");
}

TEST(BatchValidator_File, InvalidBatchIdIsAFileLevelErrorReportedOnce) {
  auto b =
      Check("amount,currency,account_number,account_name,operator_code\n1,EUR,1,A,O\n2,EUR,1,A,O\n",
            {}, "bad batch!");
  ExpectOnlyError(b, 0, "", "batch id 'bad batch!'");
  auto latin1 = Check("amount,currency,account_number,account_name,operator_code\n1,EUR,1,A,O\n",
                      {}, "caf\xE9");
  ExpectOnlyError(latin1, 0, "", "batch id 'caf?'");  // the errors file stays valid UTF-8
}

TEST(BatchValidator_File, CsvErrorsCarryLineAndColumnName) {
  auto b = Check(std::string(kHeader) + "p1,1,EUR,1,\"Jo\"e\",O,,\np2,1,EUR,1,Ann,O,,\n");
  ExpectOnlyError(b, 2, "account_name", "after the closing quote");
  auto ragged = Check(std::string(kHeader) + "p1,1,EUR\n");
  ExpectOnlyError(ragged, 2, "", "row has 3 fields but the header has 8");
  auto utf8 = Check(std::string(kHeader) + "p1,1,EUR,1,Jos\xE9,O,,\n");
  ExpectOnlyError(utf8, 2, "account_name", "invalid UTF-8");
}

TEST(BatchValidator_File, MaxRowsRejectsTheBatchAtTheFirstRowOverTheLimit) {
  BatchRules rules;
  rules.max_rows = 2;
  auto b = Check(
      std::string(kHeader) + "a,1,EUR,1,A,O,,\nb,1,EUR,1,A,O,,\nc,1,EUR,1,A,O,,\nd,1,EUR,1,A,O,,\n",
      rules);
  ExpectOnlyError(b, 4, "", "the batch has 4 rows; at most 2 are allowed");
  EXPECT_EQ(b.rows, 4u);
}

TEST(BatchValidator_Id, RejectsAnInvalidId) {
  ExpectOnlyError(Check(std::string(kHeader) + "has space,1,EUR,1,A,O,,\n"), 2, "id",
                  "id 'has space' is not valid");
  ExpectOnlyError(Check(std::string(kHeader) + "-lead,1,EUR,1,A,O,,\n"), 2, "id", "is not valid");
  ExpectOnlyError(Check(std::string(kHeader) + std::string(65, 'a') + ",1,EUR,1,A,O,,\n"), 2, "id",
                  "is not valid");
}

TEST(BatchValidator_Id, RejectsADefaultIdThatNoLongerFitsTheRule) {
  std::string batch_id(63, 'b');  // valid alone; "<63 b>-1" is 65 characters
  auto b = Check("amount,currency,account_number,account_name,operator_code\n1,EUR,1,A,O\n", {},
                 batch_id);
  ExpectOnlyError(b, 2, "id", "default id");
}

TEST(BatchValidator_Id, RejectsADuplicateIdAtTheLaterLine) {
  auto b = Check(std::string(kHeader) + "p1,1,EUR,1,A,O,,\np2,1,EUR,1,A,O,,\np1,2,EUR,1,A,O,,\n");
  ExpectOnlyError(b, 4, "id", "id 'p1' appears twice in this batch; first on line 2");
}

TEST(BatchValidator_Id, DetectsDuplicatesAmongManyIds) {
  std::string csv = kHeader;
  for (int i = 0; i < 5000; ++i) csv += "id" + std::to_string(i) + ",1,EUR,1,A,O,,\n";
  csv += "id4321,1,EUR,1,A,O,,\n";
  ExpectOnlyError(Check(csv), 5002, "id", "first on line 4323");
}

TEST(BatchValidator_Id, EveryRepeatNamesTheFirstLine) {
  auto b = Check(std::string(kHeader) + "p1,1,EUR,1,A,O,,\np1,1,EUR,1,A,O,,\np1,1,EUR,1,A,O,,\n");
  ASSERT_EQ(b.error_count, 2u);
  EXPECT_EQ(b.errors[0],
            (BatchError{3, "id", "id 'p1' appears twice in this batch; first on line 2"}));
  EXPECT_EQ(b.errors[1],
            (BatchError{4, "id", "id 'p1' appears twice in this batch; first on line 2"}));
}

// Every repeat of an id is checked against the ids seen before it; comparing each with every
// earlier row would be quadratic, and a million-row batch would then take hours. Timed at two
// sizes in one test, so the machine's speed cancels out: 10x the rows must take under 30x the
// time (linear is ~10x, n log n ~13x, quadratic ~100x). Each size keeps its fastest of several
// runs, so a busy machine (CI shares two cores with the sanitizer build) does not make it fail.
TEST(BatchValidator_Id, ManyCopiesOfOneIdAreCountedInLinearTime) {
  auto batch = [](int rows) {
    std::string csv = kHeader;
    for (int i = 0; i < rows; ++i) csv += "same,1,EUR,1,A,O,,\n";
    return csv;
  };
  auto fastest = [](const std::string& csv, uint64_t expected_errors) {
    auto best = std::chrono::steady_clock::duration::max();
    for (int run = 0; run < 5; ++run) {
      const auto start = std::chrono::steady_clock::now();
      ValidatedBatch b = Check(csv);
      best = std::min(best, std::chrono::steady_clock::now() - start);
      EXPECT_EQ(b.error_count, expected_errors);
      EXPECT_EQ(b.errors.size(), BatchValidator::kMaxErrors);
      EXPECT_EQ(b.errors[0].line, 3u);
    }
    return best;
  };
  const auto small = fastest(batch(4000), 3999);
  const auto large = fastest(batch(40000), 39999);
  EXPECT_LT(large, 30 * small) << "4000 rows: " << small.count()
                               << " ns, 40000 rows: " << large.count() << " ns";
}

TEST(BatchValidator_Amount, RejectsTooManyDecimalsNamingTheCurrency) {
  ExpectOnlyError(Check(std::string(kHeader) + "p1,42.055,USD,1,A,O,,\n"), 2, "amount",
                  "amount has 3 decimal places but USD allows 2");
}

TEST(BatchValidator_Amount, RejectsEachMalformedAmountInItsColumn) {
  for (const char* amount : {"-5", "1e3", "\"1,000\"", "0", "", "abc", "99999999999999999999"}) {
    auto b = Check(std::string(kHeader) + "p1," + amount + ",USD,1,A,O,,\n");
    ASSERT_EQ(b.error_count, 1u) << amount;
    EXPECT_EQ(b.errors[0].line, 2u);
    EXPECT_EQ(b.errors[0].column, "amount") << amount;
  }
}

TEST(BatchValidator_Amount, RejectsAPayoutAboveMaxAmount) {
  BatchRules rules;
  rules.max_amount["USD"] = 100000;
  auto ok = Check(std::string(kHeader) + "p1,1000.00,USD,1,A,O,,\np2,5000,EUR,1,A,O,,\n", rules);
  EXPECT_TRUE(ok.ok());
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1000.01,USD,1,A,O,,\n", rules), 2, "amount",
                  "amount 1000.01 USD is above the limit of 1000.00 USD per payout");
}

TEST(BatchValidator_Amount, RejectsABatchWhoseCurrencyTotalExceedsMaxTotalOnce) {
  BatchRules rules;
  rules.max_total["EUR"] = 1000;  // 10.00 EUR
  auto b = Check(std::string(kHeader) +
                     "a,6,EUR,1,A,O,,\nb,4,EUR,1,A,O,,\nc,0.01,EUR,1,A,O,,\nd,5,EUR,1,A,O,,\n"
                     "e,99,USD,1,A,O,,\n",
                 rules);
  ExpectOnlyError(b, 4, "amount",
                  "the EUR total reaches 10.01 at this row, above the batch limit of 10.00 EUR");
  EXPECT_EQ(b.totals.at("EUR"), 1501);
  EXPECT_EQ(b.totals.at("USD"), 9900);
}

TEST(BatchValidator_Amount, RejectsATotalBeyondInt64) {
  auto b = Check(std::string(kHeader) + "a,9223372036854775807,JPY,1,A,O,,\nb,1,JPY,1,A,O,,\n");
  ExpectOnlyError(b, 3, "amount", "too large to add up");
  EXPECT_EQ(b.totals.at("JPY"), INT64_MAX);
}

TEST(BatchValidator_Currency, RejectsUnknownAndEmptyCurrency) {
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,XYZ,1,A,O,,\n"), 2, "currency",
                  "'XYZ' is not a known ISO 4217");
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,,1,A,O,,\n"), 2, "currency",
                  "currency is empty");
}

TEST(BatchValidator_Currency, UsesConfiguredOverridesAndAcceptsLowerCase) {
  BatchRules rules;
  rules.currencies = CurrencyTable::Iso4217().WithOverrides({{"ABC", 1}});
  auto b = Check(std::string(kHeader) + "p1,1.5,abc,1,A,O,,\n", rules);
  ASSERT_TRUE(b.ok()) << b.errors[0].message;
  EXPECT_EQ(b.payouts[0].currency, "ABC");
  EXPECT_EQ(b.payouts[0].amount_minor, 15);
}

TEST(BatchValidator_Account, RejectsAccountNumberEmptyTooLongOrNotPrintable) {
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR,,A,O,,\n"), 2, "account_number", "empty");
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR," + std::string(35, '1') + ",A,O,,\n"), 2,
                  "account_number", "35 characters; at most 34");
  EXPECT_TRUE(Check(std::string(kHeader) + "p1,1,EUR," + std::string(34, '1') + ",A,O,,\n").ok());
  auto b = Check(std::string(kHeader) + "p1,1,EUR,\"12\t345678\",A,O,,\n");
  ExpectOnlyError(b, 2, "account_number", "printable");
  EXPECT_EQ(b.errors[0].message.find("345678"), std::string::npos);  // never echoed
}

TEST(BatchValidator_Account, RejectsAccountNameEmptyTooLongOrWithControls) {
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR,1,,O,,\n"), 2, "account_name", "empty");
  std::string name140;
  for (int i = 0; i < 140; ++i) name140 += "\xC3\xA9";  // 140 characters, 280 bytes
  EXPECT_TRUE(Check(std::string(kHeader) + "p1,1,EUR,1," + name140 + ",O,,\n").ok());
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR,1," + name140 + "x,O,,\n"), 2,
                  "account_name", "141 characters; at most 140");
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR,1,\"Jane\nDoe\",O,,\n"), 2, "account_name",
                  "control character");
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR,1,Jane\xC2\x85,O,,\n"), 2, "account_name",
                  "control character");
}

TEST(BatchValidator_Operator, RejectsEmptyOperatorCodeWithoutADefault) {
  ExpectOnlyError(Check(std::string(kHeader) + "p1,1,EUR,1,A,,,\n"), 2, "operator_code",
                  "operator_code is empty");
  BatchRules rules;
  rules.default_operator_code = "OPX";
  auto b = Check(std::string(kHeader) + "p1,1,EUR,1,A,,,\n", rules);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.payouts[0].operator_code, "OPX");
}

TEST(BatchValidator_Email, RejectsSomethingThatIsNotAnEmailAddress) {
  for (const char* email : {"jane", "@example.com", "jane@", "jane@example", "ja ne@example.com",
                            "a@b@c.com", "jane@example..com"}) {
    auto b = Check(std::string(kHeader) + "p1,1,EUR,1,A,O,," + email + "\n");
    ASSERT_EQ(b.error_count, 1u) << email;
    EXPECT_EQ(b.errors[0].column, "email") << email;
  }
  EXPECT_TRUE(
      Check(std::string(kHeader) + "p1,1,EUR,1,A,O,,jane.doe+pay@mail.example.co.uk\n").ok());
}

TEST(BatchValidator_Errors, ReportsEveryBadRowSortedByLine) {
  auto b = Check(std::string(kHeader) + "p1,-1,EUR,1,A,O,,\np2,1,EUR,1,A,O,,\np3,1,ZZZ,,A,O,,\n");
  ASSERT_EQ(b.error_count, 3u);
  EXPECT_EQ(b.errors[0], (BatchError{2, "amount", "amount must not have a sign (+ or -)"}));
  EXPECT_EQ(b.errors[1].line, 4u);
  EXPECT_EQ(b.errors[1].column, "currency");
  EXPECT_EQ(b.errors[2].column, "account_number");
  EXPECT_TRUE(b.payouts.empty());
}

TEST(BatchValidator_Errors, KeepsAtMostAThousandButCountsAll) {
  std::string csv = kHeader;
  for (int i = 0; i < 1500; ++i) {
    // Appended piece by piece: GCC 12's -Wrestrict misreads "p" + std::to_string(i).
    csv += 'p';
    csv += std::to_string(i);
    csv += ",0,EUR,1,A,O,,\n";
  }
  auto b = Check(csv);
  EXPECT_EQ(b.error_count, 1500u);
  EXPECT_EQ(b.errors.size(), BatchValidator::kMaxErrors);
  std::string text = FormatErrorsCsv(b);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1000);  // header + 999 rows
  EXPECT_NE(text.find("and 502 more errors not listed"), std::string::npos);
}

TEST(BatchValidator_ErrorsCsv, QuotesFieldsAsRfc4180) {
  ValidatedBatch b;
  b.errors = {{2, "amount", "amount has 3 decimal places but USD allows 2"},
              {0, "", "say \"hi\", twice"}};
  b.error_count = 2;
  EXPECT_EQ(FormatErrorsCsv(b),
            "line,column,error\n"
            "2,amount,amount has 3 decimal places but USD allows 2\n"
            "0,,\"say \"\"hi\"\", twice\"\n");  // line 0: the file as a whole
}

TEST(BatchValidator_ErrorsCsv, QuotesAFieldThatBeginsOrEndsWithASpace) {
  ValidatedBatch b;
  b.errors = {{0, "", "cancelled: by ops "}, {0, "", " leading"}, {0, "", "in between"}};
  b.error_count = 3;
  EXPECT_EQ(FormatErrorsCsv(b),
            "line,column,error\n"
            "0,,\"cancelled: by ops \"\n"
            "0,,\" leading\"\n"
            "0,,in between\n");
}

TEST(BatchValidator_ErrorsCsv, SaysHowManyErrorsWereLeftOut) {
  ValidatedBatch b;
  b.errors = {{2, "amount", "a"}, {3, "id", "b"}};
  b.error_count = 5;
  EXPECT_EQ(FormatErrorsCsv(b),
            "line,column,error\n"
            "2,amount,a\n"
            "3,id,b\n"
            "0,,and 3 more errors not listed; fix the ones above and validate again\n");
}

}  // namespace
}  // namespace payoutd
