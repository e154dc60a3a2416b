// Writing CSV text (results.csv, errors.csv): one field writer, so the reports cannot drift apart.
// Comma-separated, RFC 4180 quoting: a quoted field doubles its quotes.
#pragma once

#include <string>
#include <string_view>

namespace payoutd {

// When a field is put in quotes.
enum class CsvQuoting {
  // Only when RFC 4180 requires it: the field holds a comma, a quote, CR or LF. results.csv
  // (docs/results.md says so) and whatever else carries the gateway's text as it was sent.
  kWhenRequired,
  // Also when the field begins or ends with a space, so that a reader that trims cells keeps it.
  // errors.csv has always been written so; kept to leave its bytes unchanged.
  kAlsoEdgeSpaces,
};

// Appends `field` to `out`, quoted when `quoting` says so. Pure, thread-safe.
void AppendCsvField(std::string& out, std::string_view field,
                    CsvQuoting quoting = CsvQuoting::kWhenRequired);

}  // namespace payoutd
