// BatchValidator: the checks of batch.h, in one pass over the CSV. Validate() reads the header,
// then every row (each row checked even after errors, so one pass reports every bad row), then
// looks for repeated ids; the content hash runs beside it (content_hash.h).
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <istream>
#include <memory>
#include <optional>

#include "core/batch/batch.h"
#include "core/batch/content_hash.h"
#include "core/batch/csv_reader.h"
#include "core/batch/dedupe.h"

namespace payoutd {
namespace {

enum Column {
  kColId = 0,
  kColAmount,
  kColCurrency,
  kColAccountNumber,
  kColAccountName,
  kColOperatorCode,
  kColMethod,
  kColEmail,
  kColumns
};
constexpr const char* kColumnNames[kColumns] = {
    "id",           "amount",        "currency", "account_number",
    "account_name", "operator_code", "method",   "email"};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// User text quoted into a message: control characters shown as '?', long values cut, so that one
// bad cell cannot make an unreadable errors file. `ascii_only` is for text that was never checked
// as UTF-8 (the batch id comes from a file name): its other bytes are shown as '?' too.
std::string Shown(std::string_view s, bool ascii_only = false) {
  constexpr size_t kMax = 70;
  std::string out = "'";
  size_t n = s.size();
  if (n > kMax) {
    n = kMax;  // cut on a character boundary so the message stays valid UTF-8
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  }
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f || (ascii_only && c >= 0x80)) ? '?' : s[i];
  }
  if (n < s.size()) out += "...";
  out += "'";
  return out;
}

// Code points in valid UTF-8 (the reader has checked it).
size_t CharCount(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// C0 controls, DEL, and C1 controls (U+0080..U+009F, encoded C2 80..C2 9F).
bool HasControl(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F) return true;
  }
  return false;
}

bool PrintableAscii(std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

// A sanity check, not RFC 5322: one '@', something before it, a dotted domain after it, no spaces.
bool LooksLikeEmail(std::string_view s) {
  if (s.size() > 254) return false;
  size_t at = s.find('@');
  if (at == std::string_view::npos || at == 0 || s.find('@', at + 1) != std::string_view::npos)
    return false;
  std::string_view domain = s.substr(at + 1);
  size_t dot = domain.find('.');
  if (dot == std::string_view::npos || dot == 0 || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos)
    return false;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == ',' || c == ';' || c == '<' || c == '>' || c == '"')
      return false;
  }
  return true;
}

std::string IdRule() {
  return "1 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit";
}

// What the validator needs of one currency, looked up once per batch instead of once per row.
struct CurrencyState {
  std::string code;
  int minor_units = 0;
  std::optional<int64_t> max_amount;  // batches.max_amount, if set for this currency
  std::optional<int64_t> max_total;   // batches.max_total, if set for this currency
  int64_t* total = nullptr;           // into ValidatedBatch::totals, once a valid amount is seen
  bool total_reported = false;        // the total's error is reported once per batch
};

// Counts every error and keeps the first kMaxErrors, in the order they are found.
class ErrorSink {
 public:
  explicit ErrorSink(ValidatedBatch* out) : out_(out) {}
  void Add(uint32_t line, std::string_view column, std::string message) {
    ++out_->error_count;
    if (out_->errors.size() < BatchValidator::kMaxErrors)
      out_->errors.push_back(BatchError{line, std::string(column), std::move(message)});
  }

 private:
  ValidatedBatch* out_;
};

// Reserves the payout index once from the stream's size (a row takes well over 32 bytes), so it
// is never copied while growing. Reserved but untouched pages cost no memory.
void ReserveForStream(std::istream& in, int64_t max_rows, PayoutList* payouts) {
  if (std::streamoff here = in.tellg(); here >= 0 && in.seekg(0, std::ios::end)) {
    std::streamoff size = in.tellg();
    in.seekg(here);
    if (size > here) {
      const uint64_t hint = static_cast<uint64_t>(size - here) / 32 + 1;
      const uint64_t cap = static_cast<uint64_t>(std::max<int64_t>(max_rows, 0));
      payouts->reserve(static_cast<size_t>(std::min(hint, cap)));
    }
  }
  in.clear();  // a stream that cannot seek only loses the hint
}

// One Validate call: the header's column map, the rows' running state, and the result it fills.
// The order in which errors are found is part of the output (the first kMaxErrors are kept, and
// the sort by line is stable), so each step adds them in the order of the columns it checks.
class BatchPass {
 public:
  BatchPass(const BatchRules& rules, ValidatedBatch* out)
      : rules_(rules),
        out_(out),
        errors_(out),
        max_rows_(rules.max_rows > 0 ? static_cast<uint64_t>(rules.max_rows) : 0) {
    col_.fill(-1);
  }

  void CheckBatchId();
  void ReadHeader(CsvReader& reader);
  void ReadRows(CsvReader& reader);
  // The checks that need the whole file: repeated ids, a cut-off read, no payouts, too many rows.
  void CheckWholeFile(const CsvReader& reader);

 private:
  bool MapHeader(const std::vector<std::string_view>& names);
  void CheckRow(const std::vector<std::string_view>& fields, uint32_t line, uint64_t data_row);
  std::string_view Cell(const std::vector<std::string_view>& fields, int c) const {
    return col_[c] < 0 ? std::string_view() : Trim(fields[static_cast<size_t>(col_[c])]);
  }
  std::string_view ColumnOfField(uint32_t field) const;
  bool CheckId(uint32_t line, uint64_t data_row, std::string_view* id);
  CurrencyState* FindCurrency();
  int64_t CheckAmount(uint32_t line, std::string_view text, CurrencyState* cs);
  void CheckAccount(uint32_t line, std::string_view number, std::string_view name);
  void CheckRouting(uint32_t line, std::string_view* operator_code, std::string_view* method,
                    std::string_view email);

  const BatchRules& rules_;
  ValidatedBatch* out_;
  ErrorSink errors_;
  const uint64_t max_rows_;
  bool batch_id_ok_ = false;
  bool header_ok_ = false;
  std::array<int, kColumns> col_;    // column -> field index in a record, -1 when absent
  std::vector<uint64_t> id_hashes_;  // IdHash of each kept payout's id, for ForEachDuplicateId
  std::string default_id_;           // buffers reused from row to row
  std::string currency_;
  std::vector<std::unique_ptr<CurrencyState>> currencies_;  // known codes met in this batch
  CurrencyState* last_currency_ = nullptr;
  uint32_t first_excess_line_ = 0;
};

void BatchPass::CheckBatchId() {
  batch_id_ok_ = IsValidId(out_->batch_id);
  if (!batch_id_ok_)
    errors_.Add(0, "",
                "the batch id " + Shown(out_->batch_id, true) +
                    " (the file name without .csv) is not valid: use " + IdRule());
}

void BatchPass::ReadHeader(CsvReader& reader) {
  switch (reader.Read()) {
    case CsvReader::Next::kEnd:
      errors_.Add(0, "",
                  "the file is empty; expected a header row (id,amount,currency,"
                  "account_number,account_name,operator_code,...) and at least one payout");
      break;
    case CsvReader::Next::kError:
      errors_.Add(reader.error().line, "", "header row: " + reader.error().message);
      break;
    case CsvReader::Next::kRecord: header_ok_ = MapHeader(reader.fields()); break;
  }
}

// Names are trimmed and case-insensitive; unknown columns are ignored. False when the header is
// unusable: a column named twice, no known name at all, or a required column missing.
bool BatchPass::MapHeader(const std::vector<std::string_view>& names) {
  bool ok = true;
  for (size_t i = 0; i < names.size(); ++i) {
    std::string name = Lower(Trim(names[i]));
    for (int c = 0; c < kColumns; ++c) {
      if (name != kColumnNames[c]) continue;
      if (col_[c] >= 0) {
        errors_.Add(1, kColumnNames[c], "the header names the " + name + " column twice");
        ok = false;
      }
      col_[c] = static_cast<int>(i);
    }
  }
  if (std::all_of(col_.begin(), col_.end(), [](int i) { return i < 0; })) {
    // Not one known name: most likely the header row is missing and this is the first payout.
    errors_.Add(1, "",
                "the first line is not a header row; it must name the columns, e.g. "
                "id,amount,currency,account_number,account_name,operator_code");
    return false;
  }
  for (int c : {kColAmount, kColCurrency, kColAccountNumber, kColAccountName, kColOperatorCode}) {
    if (col_[c] >= 0) continue;
    if (c == kColOperatorCode && !rules_.default_operator_code.empty()) continue;
    std::string message =
        std::string("the header has no ") + kColumnNames[c] + " column, which is required";
    if (c == kColOperatorCode) message += " (no batches.default_operator_code is configured)";
    errors_.Add(1, kColumnNames[c], std::move(message));
    ok = false;
  }
  return ok;
}

std::string_view BatchPass::ColumnOfField(uint32_t field) const {
  for (int c = 0; c < kColumns; ++c)
    if (field > 0 && col_[c] == static_cast<int>(field - 1)) return kColumnNames[c];
  return "";
}

void BatchPass::ReadRows(CsvReader& reader) {
  id_hashes_.reserve(out_->payouts.capacity());
  for (;;) {
    CsvReader::Next next = reader.Read();
    if (next == CsvReader::Next::kEnd) break;
    const uint64_t data_row = ++out_->rows;
    if (!header_ok_) continue;  // columns unknown: only count rows (and hash the file)
    if (next == CsvReader::Next::kError) {
      const CsvError& e = reader.error();
      errors_.Add(e.line, ColumnOfField(e.field), e.message);
      continue;
    }
    const uint32_t line = reader.record_line();
    if (data_row > max_rows_) {
      // The batch is rejected for its size; stop keeping payouts so memory stays bounded.
      if (first_excess_line_ == 0) first_excess_line_ = line;
      continue;
    }
    CheckRow(reader.fields(), line, data_row);
  }
}

void BatchPass::CheckRow(const std::vector<std::string_view>& f, uint32_t line, uint64_t data_row) {
  const uint64_t errors_before = out_->error_count;
  std::string_view id = Cell(f, kColId);
  const bool id_ok = CheckId(line, data_row, &id);

  currency_.assign(Cell(f, kColCurrency));
  for (char& c : currency_)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  CurrencyState* cs = FindCurrency();
  if (currency_.empty()) {
    errors_.Add(line, "currency", "currency is empty");
  } else if (cs == nullptr) {
    errors_.Add(line, "currency",
                "currency " + Shown(currency_) + " is not a known ISO 4217 currency code");
  }
  const int64_t amount = cs != nullptr ? CheckAmount(line, Cell(f, kColAmount), cs) : 0;

  const std::string_view account_number = Cell(f, kColAccountNumber);
  const std::string_view account_name = Cell(f, kColAccountName);
  CheckAccount(line, account_number, account_name);
  std::string_view operator_code = Cell(f, kColOperatorCode);
  std::string_view method = Cell(f, kColMethod);
  const std::string_view email = Cell(f, kColEmail);
  CheckRouting(line, &operator_code, &method, email);

  // Every row with a usable id is kept until the end, so that duplicates can be found and name
  // the line of the first; the list is dropped if the batch has any error.
  if (!id_ok) return;
  id_hashes_.push_back(IdHash(id));
  if (out_->error_count == errors_before)
    out_->payouts.emplace_back(line, amount, id, currency_, account_number, account_name,
                               operator_code, method, email);
  else  // the batch is rejected anyway: keep only what duplicate detection needs
    out_->payouts.emplace_back(line, 0, id, {}, {}, {}, {}, {}, {});
}

// An empty id becomes `<batch id>-<data row number>` (*id then points into default_id_).
bool BatchPass::CheckId(uint32_t line, uint64_t data_row, std::string_view* id) {
  if (!id->empty()) {
    if (IsValidId(*id)) return true;
    errors_.Add(line, "id", "id " + Shown(*id) + " is not valid: use " + IdRule());
    return false;
  }
  default_id_.assign(out_->batch_id);
  default_id_ += '-';
  default_id_ += std::to_string(data_row);
  *id = default_id_;
  if (IsValidId(*id)) return true;
  if (batch_id_ok_)  // an invalid batch id is reported once, not on every row
    errors_.Add(line, "id",
                "the default id " + Shown(*id) +
                    " (batch id + row number) is too long; give this row an id (" + IdRule() + ")");
  return false;
}

// currency_'s state, or nullptr when it is empty or not a known code. Only known codes are
// cached, so garbage in the column cannot grow the cache.
CurrencyState* BatchPass::FindCurrency() {
  if (last_currency_ != nullptr && last_currency_->code == currency_) return last_currency_;
  CurrencyState* cs = nullptr;
  for (auto& known : currencies_) {
    if (known->code == currency_) cs = known.get();
  }
  if (cs == nullptr && !currency_.empty()) {
    if (std::optional<int> digits = rules_.currencies.MinorUnits(currency_)) {
      auto state = std::make_unique<CurrencyState>();
      state->code = currency_;
      state->minor_units = *digits;
      if (auto cap = rules_.max_amount.find(currency_); cap != rules_.max_amount.end())
        state->max_amount = cap->second;
      if (auto cap = rules_.max_total.find(currency_); cap != rules_.max_total.end())
        state->max_total = cap->second;
      currencies_.push_back(std::move(state));
      cs = currencies_.back().get();
    }
  }
  if (cs != nullptr) last_currency_ = cs;
  return cs;
}

// The amount in minor units (0 when it is not valid), added to the currency's total; checks
// batches.max_amount and, once per batch and currency, batches.max_total and int64.
int64_t BatchPass::CheckAmount(uint32_t line, std::string_view text, CurrencyState* cs) {
  const int digits = cs->minor_units;
  auto parsed = ParseAmount(text, digits, currency_);
  if (!parsed.ok()) {
    errors_.Add(line, "amount", parsed.error());
    return 0;
  }
  const int64_t amount = *parsed;
  if (cs->max_amount && amount > *cs->max_amount)
    errors_.Add(line, "amount",
                "amount " + FormatFixedAmount(amount, digits) + " " + currency_ +
                    " is above the limit of " + FormatFixedAmount(*cs->max_amount, digits) + " " +
                    currency_ + " per payout (batches.max_amount)");
  if (cs->total == nullptr) cs->total = &out_->totals[currency_];  // map nodes never move
  int64_t& total = *cs->total;
  if (!AddMinor(total, amount, &total)) {
    if (!cs->total_reported)
      errors_.Add(line, "amount",
                  "the " + currency_ + " total of this batch is too large to add up exactly");
    cs->total_reported = true;
  } else if (cs->max_total && total > *cs->max_total && !cs->total_reported) {
    cs->total_reported = true;
    errors_.Add(line, "amount",
                "the " + currency_ + " total reaches " + FormatFixedAmount(total, digits) +
                    " at this row, above the batch limit of " +
                    FormatFixedAmount(*cs->max_total, digits) + " " + currency_ +
                    " (batches.max_total)");
  }
  return amount;
}

void BatchPass::CheckAccount(uint32_t line, std::string_view number, std::string_view name) {
  if (number.empty()) {
    errors_.Add(line, "account_number", "account_number is empty");
  } else if (!PrintableAscii(number)) {
    // Never echo the account number: it is not to appear in files or logs in full.
    errors_.Add(line, "account_number",
                "account_number may only hold printable ASCII characters (letters, digits, "
                "spaces, punctuation)");
  } else if (number.size() > 34) {
    errors_.Add(line, "account_number",
                "account_number has " + std::to_string(number.size()) +
                    " characters; at most 34 are allowed");
  }
  if (name.empty()) {
    errors_.Add(line, "account_name", "account_name is empty");
  } else if (HasControl(name)) {
    errors_.Add(line, "account_name",
                "account_name contains a control character (such as a line break or a tab)");
  } else if (size_t n = CharCount(name); n > 140) {
    errors_.Add(line, "account_name",
                "account_name has " + std::to_string(n) + " characters; at most 140 are allowed");
  }
}

// Operator code and method fall back to the configured defaults; the e-mail is optional.
void BatchPass::CheckRouting(uint32_t line, std::string_view* operator_code,
                             std::string_view* method, std::string_view email) {
  if (operator_code->empty()) *operator_code = rules_.default_operator_code;
  if (operator_code->empty())
    errors_.Add(line, "operator_code",
                "operator_code is empty (no batches.default_operator_code is configured)");
  else if (HasControl(*operator_code))
    errors_.Add(line, "operator_code", "operator_code contains a control character");
  if (method->empty()) *method = rules_.default_method;
  if (method->empty())
    errors_.Add(line, "method", "method is empty (no batches.default_method is configured)");
  else if (HasControl(*method))
    errors_.Add(line, "method", "method contains a control character");
  if (!email.empty() && !LooksLikeEmail(email))
    errors_.Add(line, "email",
                "email does not look like an e-mail address (expected name@example.com)");
}

void BatchPass::CheckWholeFile(const CsvReader& reader) {
  const PayoutList& payouts = out_->payouts;
  ForEachDuplicateId(payouts, std::move(id_hashes_), [&](size_t later, size_t first) {
    errors_.Add(payouts.line(later), "id",
                "id " + Shown(payouts.id(later)) + " appears twice in this batch; first on line " +
                    std::to_string(payouts.line(first)));
  });
  if (reader.stream_failed())
    errors_.Add(0, "", "the batch file could not be read to its end (read error)");
  if (header_ok_ && out_->rows == 0) errors_.Add(0, "", "the file has a header but no payouts");
  if (first_excess_line_ != 0)
    errors_.Add(first_excess_line_, "",
                "the batch has " + std::to_string(out_->rows) + " rows; at most " +
                    std::to_string(max_rows_) +
                    " are allowed (batches.max_rows); this is the first row over the limit");
}

}  // namespace

BatchValidator::BatchValidator(BatchRules rules) : rules_(std::move(rules)) {}

ValidatedBatch BatchValidator::ValidateFile(std::string_view batch_id,
                                            const std::string& path) const {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ValidatedBatch out;
    out.batch_id = std::string(batch_id);
    ErrorSink(&out).Add(0, "", "cannot open the batch file: " + std::string(std::strerror(errno)));
    return out;
  }
  return Validate(batch_id, in);
}

ValidatedBatch BatchValidator::Validate(std::string_view batch_id, std::istream& in) const {
  ValidatedBatch out;
  out.batch_id = std::string(batch_id);
  ContentHasher sha;
  BatchPass pass(rules_, &out);
  pass.CheckBatchId();
  ReserveForStream(in, rules_.max_rows, &out.payouts);

  CsvOptions csv_options;
  csv_options.delimiter = rules_.delimiter;
  CsvReader reader(in, csv_options);
  reader.OnBytes([&sha](std::string_view b) { sha.Update(b); });
  pass.ReadHeader(reader);
  pass.ReadRows(reader);
  pass.CheckWholeFile(reader);

  out.sha256 = sha.Finish();
  std::stable_sort(out.errors.begin(), out.errors.end(),
                   [](const BatchError& a, const BatchError& b) { return a.line < b.line; });
  if (!out.ok()) out.payouts.clear();  // nothing of a rejected batch may be sent
  return out;
}

}  // namespace payoutd
