// Any bytes given to the CSV reader, the batch validator or ParseAmount must give records or
// errors, never a crash, hang, leak or undefined behaviour; and what they accept must be
// self-consistent (checked below with __builtin_trap so the fuzzer reports it).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "core/batch/batch.h"
#include "core/batch/csv_reader.h"
#include "core/money/money.h"
#include "tests/fuzz/fuzz_accepted.h"

namespace {

uint64_t& g_valid_batches = payoutd_fuzz::AcceptedCounter("valid batches");
uint64_t& g_amounts = payoutd_fuzz::AcceptedCounter("amounts");

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

void FuzzReader(const std::string& text) {
  std::istringstream in(text);
  payoutd::CsvOptions options;
  options.max_record_bytes = 4096;
  options.delimiter =
      text.empty() || text[0] == '"' || text[0] == '\r' || text[0] == '\n' ? ',' : text[0];
  payoutd::CsvReader reader(in, options);
  size_t seen = 0;
  reader.OnBytes([&](std::string_view b) { seen += b.size(); });
  uint32_t last_line = 0;
  for (size_t n = 0;; ++n) {
    Require(n <= text.size() + 1);  // every Read makes progress
    auto next = reader.Read();
    if (next == payoutd::CsvReader::Next::kEnd) break;
    if (next == payoutd::CsvReader::Next::kError) {
      Require(!reader.error().message.empty() && reader.error().line >= 1);
      continue;
    }
    Require(reader.record_line() >= last_line);
    last_line = reader.record_line();
    for (auto f : reader.fields()) Require(f.size() <= options.max_record_bytes);
  }
  Require(seen == text.size());  // every byte was observed exactly once
}

void FuzzValidator(const std::string& text) {
  payoutd::BatchRules rules;
  rules.max_rows = 200;
  rules.max_total["USD"] = 1000000;
  rules.max_amount["EUR"] = 50000;
  std::istringstream in(text);
  payoutd::ValidatedBatch b = payoutd::BatchValidator(rules).Validate("fuzz-batch", in);
  Require(b.sha256.size() == 64);
  Require(b.errors.size() <= payoutd::BatchValidator::kMaxErrors &&
          b.errors.size() <= b.error_count);
  if (b.ok()) {
    ++g_valid_batches;
    Require(b.payouts.size() == b.rows && b.rows > 0);
    for (const payoutd::Payout& p : b.payouts)
      Require(p.amount_minor > 0 && payoutd::IsValidId(p.id));
  } else {
    Require(b.payouts.empty());
  }
  // The errors file must itself be valid CSV of three columns.
  std::istringstream errors_csv(payoutd::FormatErrorsCsv(b));
  payoutd::CsvReader reader(errors_csv);
  size_t records = 0;
  for (;;) {
    auto next = reader.Read();
    if (next == payoutd::CsvReader::Next::kEnd) break;
    Require(next == payoutd::CsvReader::Next::kRecord && reader.fields().size() == 3);
    ++records;
  }
  // At most 1000 lines: header + 999 rows, the last one a summary when errors were left out.
  const bool truncated = b.error_count > b.errors.size() || b.errors.size() > 999;
  const size_t rows = truncated ? std::min<size_t>(b.errors.size(), 998) + 1 : b.errors.size();
  Require(records <= 1000);
  Require(records == 1 + rows);
}

void FuzzAmount(const std::string& text) {
  if (text.size() > 40) return;
  int digits = text.empty() ? 2 : static_cast<unsigned char>(text.back()) % 10;
  auto parsed = payoutd::ParseAmount(text, digits);
  if (!parsed.ok()) {
    Require(!parsed.error().empty());
    return;
  }
  ++g_amounts;
  Require(*parsed > 0);
  auto fixed = payoutd::ParseAmount(payoutd::FormatFixedAmount(*parsed, digits), digits);
  auto json = payoutd::ParseAmount(payoutd::FormatJsonAmount(*parsed, digits), digits);
  Require(fixed.ok() && *fixed == *parsed && json.ok() && *json == *parsed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  FuzzReader(text);
  FuzzValidator(text);
  FuzzAmount(text);
  return 0;
}
