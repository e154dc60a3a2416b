// FormatErrorsCsv (batch.h): the `<batch>.errors.csv` of a refused batch, as docs/batches.md
// shows it.
#include <algorithm>
#include <string>

#include "core/base/csv_text.h"
#include "core/batch/batch.h"

namespace payoutd {

std::string FormatErrorsCsv(const ValidatedBatch& batch) {
  constexpr size_t kMaxRows = 999;  // with the header, at most 1000 lines (docs/batches.md)
  constexpr CsvQuoting kQuoting = CsvQuoting::kAlsoEdgeSpaces;
  std::string out = "line,column,error\n";
  const bool truncated = batch.error_count > batch.errors.size() || batch.errors.size() > kMaxRows;
  const size_t shown =
      truncated ? std::min(batch.errors.size(), kMaxRows - 1) : batch.errors.size();
  for (size_t i = 0; i < shown; ++i) {
    const BatchError& e = batch.errors[i];
    out += std::to_string(e.line);  // 0: the file as a whole
    out += ',';
    AppendCsvField(out, e.column, kQuoting);
    out += ',';
    AppendCsvField(out, e.message, kQuoting);
    out += '\n';
  }
  if (truncated) {
    std::string more = "and ";  // appended piece by piece: GCC 12's -Wrestrict misreads "a" + s
    more += std::to_string(batch.error_count - shown);
    more += " more errors not listed; fix the ones above and validate again";
    out += "0,,";
    AppendCsvField(out, more, kQuoting);
    out += '\n';
  }
  return out;
}

}  // namespace payoutd
