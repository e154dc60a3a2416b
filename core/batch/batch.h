// Batch validation (docs/batches.md): one pass over a batch CSV turns it into payouts in input
// order, or into the list of everything wrong with it. Nothing is sent from a batch that has any
// error, so ValidatedBatch::payouts is only filled when ok().
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
// arena (about the size of their text), never as the raw file. SHA-256 of a big file is computed on
// one short-lived worker thread per Validate call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/money/money.h"
#include "core/batch/payout.h"

namespace payoutd {

// What a batch must satisfy. Mirrors config's BatchOptions; core does not depend on config/.
struct BatchRules {
  char delimiter = ',';
  std::string default_method = "BANK_TRANSFER";
  std::string default_operator_code;          // empty = the operator_code column is required
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

// Payouts of a batch in input order, stored compactly (one arena for all text). Reads like a
// std::vector<Payout>: size(), operator[], front()/back(), range-for; elements are materialised
// Payout values, so bind them as `const Payout&` or `Payout`. Copyable; not thread-safe to append.
class PayoutList {
 public:
  PayoutList();
  ~PayoutList();
  PayoutList(const PayoutList& other);
  PayoutList& operator=(const PayoutList& other);
  PayoutList(PayoutList&&) noexcept;
  PayoutList& operator=(PayoutList&&) noexcept;

  void push_back(const Payout& p);
  // The same without building a Payout first (the validator's hot path).
  void emplace_back(uint32_t line, int64_t amount_minor, std::string_view id, std::string_view currency,
                    std::string_view account_number, std::string_view account_name,
                    std::string_view operator_code, std::string_view method, std::string_view email);
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  void clear();
  void reserve(size_t n);
  size_t capacity() const { return rows_.capacity(); }
  Payout operator[](size_t i) const;
  Payout at(size_t i) const;  // throws std::out_of_range
  Payout front() const { return (*this)[0]; }
  Payout back() const { return (*this)[size() - 1]; }
  // Cheap accessors that do not materialise a Payout.
  std::string_view id(size_t i) const;
  uint32_t line(size_t i) const { return rows_[i].line; }
  std::vector<Payout> ToVector() const;

  class const_iterator {
   public:
    using value_type = Payout;
    using difference_type = std::ptrdiff_t;
    const_iterator() = default;
    const_iterator(const PayoutList* list, size_t i) : list_(list), i_(i) {}
    Payout operator*() const { return (*list_)[i_]; }
    const_iterator& operator++() { ++i_; return *this; }
    const_iterator operator++(int) { auto t = *this; ++i_; return t; }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const PayoutList* list_ = nullptr;
    size_t i_ = 0;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size()}; }

 private:
  // 32 bytes a payout plus its text. The text holds id, account_number, account_name and email,
  // each as a varint length then its bytes. Currency, method and operator_code repeat from row to
  // row, so they are kept once in shared_ and referred to by index (kInline: in the text after the
  // others, once shared_ is full).
  static constexpr uint16_t kInline = 0xFFFF;
  struct Row {
    const char* text;
    int64_t amount_minor;
    uint32_t line;
    uint16_t shared[3];     // currency, method, operator_code
  };
  enum Shared { kCurrency = 0, kMethod = 1, kOperatorCode = 2 };
  uint16_t Intern(int kind, std::string_view value);
  std::string_view SharedField(const Row& r, int kind) const;
  const char* Store(size_t n);
  std::vector<Row> rows_;
  std::vector<std::string> shared_;
  std::map<std::string, uint16_t, std::less<>> shared_index_;
  uint16_t last_shared_[3] = {kInline, kInline, kInline};
  struct FreeBlock { void operator()(char* p) const; };
  std::vector<std::unique_ptr<char, FreeBlock>> blocks_;
  size_t block_used_ = 0;
  size_t block_size_ = 0;
};

struct ValidatedBatch {
  std::string batch_id;
  std::string sha256;                      // lower-case hex of every byte of the file
  uint64_t rows = 0;                       // data records read (header not counted), good or bad
  PayoutList payouts;                      // in input order; empty unless ok()
  std::map<std::string, int64_t> totals;   // currency -> sum of amounts (minor units) of the rows
                                           // whose amount and currency are valid
  std::vector<BatchError> errors;          // the first kMaxErrors found, sorted by line
  uint64_t error_count = 0;                // all errors found, including those not kept
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
// row per kept error, RFC 4180 quoted, LF line ends, at most 1000 lines in all. The line is left
// empty for file-level errors (line 0). When errors were dropped (error_count > errors kept), the
// last row says how many more there were.
std::string FormatErrorsCsv(const ValidatedBatch& batch);

}  // namespace payoutd
