// The batch module: a batch CSV in, validated payouts or the list of what is wrong out
// (docs/batches.md). This header is its front door; the pieces behind it each do one job:
// payout.h (the Payout and the id rule), payout_list.h (the compact list that holds a batch),
// csv_reader.h (streaming RFC 4180 reading), content_hash.h (SHA-256 beside parsing), dedupe.h
// (repeated ids), validator.cc (the rules below) and errors_csv.cc (FormatErrorsCsv).
//
// Batch validation: one pass over a batch CSV turns it into payouts in input order, or into the
// list of everything wrong with it. Nothing is sent from a batch that has any error, so
// ValidatedBatch::payouts is only filled when ok().
//
// What is checked (each error names its line and column): the batch id; the header (names
// trimmed and case-insensitive, required columns present, none twice, other columns ignored); the
// CSV itself (quoting, UTF-8, same field count as the header); per row: id (given, or
// `<batch id>-<data row number>`, data row 1 being the first after the header; must fit the id
// rule; unique in the batch, reported at the later line), amount (money.h ParseAmount with the
// currency's digits; batches.max_amount), currency (known to rules.currencies; lower case is
// accepted and upper-cased), account_number (1-34 printable ASCII; never echoed in messages),
// account_name (1-140 characters, no control characters), operator_code (or the default), method
// (or the default), email (a sanity check). Per batch: at least one row, batches.max_rows, and each
// currency's total against batches.max_total and int64. Cell values are trimmed of spaces and tabs.
//
// Memory does not follow the file: the CSV is read as a stream and payouts are kept in a compact
// arena (about the size of their text), never as the raw file.
//
// Ownership and threads: a ValidatedBatch owns its payouts and is a plain value. A BatchValidator
// holds only its rules and is immutable, so Validate may run on several threads at once; each call
// computes SHA-256 of a big file on one worker thread of its own, joined before it returns.
// Nothing here does I/O but reading the batch file, and nothing here logs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/batch/payout.h"
#include "core/batch/payout_list.h"
#include "core/money/money.h"

namespace payoutd {

// What a batch must satisfy. Mirrors config's BatchOptions; core does not depend on config/.
struct BatchRules {
  char delimiter = ',';
  std::string default_method = "BANK_TRANSFER";
  std::string default_operator_code;  // empty = the operator_code column is required
  int64_t max_rows = 1'000'000;
  std::map<std::string, int64_t> max_amount;  // currency -> minor units, cap per payout
  std::map<std::string, int64_t> max_total;   // currency -> minor units, cap per batch total
  CurrencyTable currencies = CurrencyTable::Iso4217();
};

// One problem found in a batch. line: physical CSV line where the record starts (header = 1), 0 for
// the file as a whole. column: the batch file's column name (`amount`, `id`, ...), or empty when
// the problem is not about one column.
struct BatchError {
  uint32_t line = 0;
  std::string column;
  std::string message;
  bool operator==(const BatchError&) const = default;
};

struct ValidatedBatch {
  std::string batch_id;
  std::string sha256;                     // lower-case hex of every byte of the file
  uint64_t rows = 0;                      // data records read (header not counted), good or bad
  PayoutList payouts;                     // in input order; empty unless ok()
  std::map<std::string, int64_t> totals;  // currency -> sum of amounts (minor units) of the rows
                                          // whose amount and currency are valid
  std::vector<BatchError> errors;         // the first kMaxErrors found, sorted by line
  uint64_t error_count = 0;               // all errors found, including those not kept
  bool ok() const { return error_count == 0; }
};

// Immutable once built: Validate may run on several threads at once.
class BatchValidator {
 public:
  static constexpr size_t kMaxErrors = 1000;

  explicit BatchValidator(BatchRules rules);

  // Reads `in` to its end. Never throws on bad input; everything wrong is in the result's errors.
  // The batch id itself is checked against the id rule (an error with line 0).
  ValidatedBatch Validate(std::string_view batch_id, std::istream& in) const;
  // The same over a file; a file that cannot be opened or read is an error with line 0.
  ValidatedBatch ValidateFile(std::string_view batch_id, const std::string& path) const;

  const BatchRules& rules() const { return rules_; }

 private:
  BatchRules rules_;
};

// The `<batch>.errors.csv` text (docs/batches.md#errorscsv): header `line,column,error`, then one
// row per kept error, LF line ends, at most 1000 lines in all. Fields are quoted as RFC 4180 wants
// and also when they begin or end with a space (CsvQuoting::kAlsoEdgeSpaces). The line is `0` for
// an error about the file as a whole. When errors were dropped (error_count > errors kept), the
// last row (line `0`) says how many more there were.
std::string FormatErrorsCsv(const ValidatedBatch& batch);

}  // namespace payoutd
