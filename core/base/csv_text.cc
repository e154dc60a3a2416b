#include "core/base/csv_text.h"

namespace payoutd {

void AppendCsvField(std::string& out, std::string_view field, CsvQuoting quoting) {
  bool quote = field.find_first_of(",\"\r\n") != std::string_view::npos;
  if (quoting == CsvQuoting::kAlsoEdgeSpaces && !field.empty())
    quote = quote || field.front() == ' ' || field.back() == ' ';
  if (!quote) {
    out.append(field);
    return;
  }
  out.push_back('"');
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace payoutd
