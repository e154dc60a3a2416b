// Generates a realistic batch CSV (default 1,000,000 rows, ~100 MB) and times parsing plus full
// validation of it, as the daemon does for a batch in its inbox. Prints rows/s, MB/s and the
// process's peak RSS, which must stay far below the file's size times a small factor.
//
//   bench_validate [--rows N] [--file PATH] [--keep]
// With --file and an existing file, that file is validated as is (no generation). The generated
// file is removed at exit unless --keep is given.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/batch/batch.h"
#include "core/batch/csv_reader.h"

namespace {

// Rows look like a payroll export: unique ids, IBAN-like accounts, names with an occasional comma
// (so quoted), four currencies with 0, 2 and 3 minor digits, an e-mail on most rows.
void Generate(const std::string& path, long rows) {
  std::ofstream out(path, std::ios::binary);
  out << "id,amount,currency,account_number,account_name,operator_code,method,email\r\n";
  static const char* kFirst[] = {"Maria", "John", "Aiko", "Olu", "Sven", "Priya", "Jose", "Chen"};
  static const char* kLast[] = {"Schneider", "Okafor", "Tanaka", "Garcia",
                                "Johansson", "Patel",  "Smith",  "Li"};
  static const char* kCur[] = {"EUR", "USD", "JPY", "KWD"};
  char line[512];
  unsigned seed = 12345;
  for (long i = 1; i <= rows; ++i) {
    seed = seed * 1103515245u + 12345u;
    const char* cur = kCur[(seed >> 8) % 4];
    unsigned long minor = 100 + (seed >> 4) % 500000;
    char amount[32];
    if (std::strcmp(cur, "JPY") == 0)
      std::snprintf(amount, sizeof amount, "%lu", minor);
    else if (std::strcmp(cur, "KWD") == 0)
      std::snprintf(amount, sizeof amount, "%lu.%03lu", minor / 1000, minor % 1000);
    else
      std::snprintf(amount, sizeof amount, "%lu.%02lu", minor / 100, minor % 100);
    const char* first = kFirst[(seed >> 12) % 8];
    const char* last = kLast[(seed >> 16) % 8];
    bool quoted = (i % 10) == 0;
    char name[96];
    if (quoted)
      std::snprintf(name, sizeof name, "\"%s, %s %ld\"", last, first, i % 1000);
    else
      std::snprintf(name, sizeof name, "%s %s %ld", first, last, i % 1000);
    char email[96] = "";
    if (i % 5 != 0)
      std::snprintf(email, sizeof email, "%s.%s%ld@example.com", first, last, i % 10000);
    int n = std::snprintf(
        line, sizeof line,
        "PAY-2026-11-%07ld,%s,%s,DE%02ld3704004405320%05ld,%s,OP%ld,BANK_TRANSFER,%s\r\n", i,
        amount, cur, i % 97, i % 100000, name, i % 7, email);
    out.write(line, n);
  }
}

double CpuSeconds() {  // user + system, all threads of this process
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](timeval t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

long PeakRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  long rows = 1'000'000;
  std::string path;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc)
      rows = std::atol(argv[++i]);
    else if (a == "--file" && i + 1 < argc)
      path = argv[++i];
    else if (a == "--keep")
      keep = true;
    else {
      std::fprintf(stderr, "usage: %s [--rows N] [--file PATH] [--keep]\n", argv[0]);
      return 2;
    }
  }
  bool generated = false;
  if (path.empty())
    path = (std::filesystem::temp_directory_path() /
            ("bench_validate_" + std::to_string(getpid()) + ".csv"))
               .string();
  if (!std::filesystem::exists(path)) {
    Generate(path, rows);
    generated = true;
  }
  const double mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
  const long rss_before = PeakRssKb();

  // Parsing alone (what csv.DictReader does), for a like-for-like comparison.
  double parse_s, parse_cpu;
  {
    const double cpu0 = CpuSeconds();
    auto t0 = std::chrono::steady_clock::now();
    std::ifstream in(path, std::ios::binary);
    payoutd::CsvReader reader(in);
    size_t records = 0, fields = 0;
    while (reader.Read() != payoutd::CsvReader::Next::kEnd) {
      ++records;
      fields += reader.fields().size();
    }
    parse_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    parse_cpu = CpuSeconds() - cpu0;
    if (records == 0 || fields == 0) return 1;
  }

  payoutd::BatchRules rules;
  rules.max_rows = 10'000'000;
  payoutd::BatchValidator validator(rules);
  const double cpu0 = CpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  payoutd::ValidatedBatch batch = validator.ValidateFile("bench-batch", path);
  auto t1 = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(t1 - t0).count();
  const double cpu = CpuSeconds() - cpu0;

  std::printf("file: %s (%.1f MB, %llu rows)\n", path.c_str(), mb,
              static_cast<unsigned long long>(batch.rows));
  std::printf("valid: %s (%llu errors), payouts kept: %zu, sha256 %.16s...\n",
              batch.ok() ? "yes" : "no", static_cast<unsigned long long>(batch.error_count),
              batch.payouts.size(), batch.sha256.c_str());
  if (!batch.ok())
    std::printf("first error: line %u %s: %s\n", batch.errors[0].line,
                batch.errors[0].column.c_str(), batch.errors[0].message.c_str());
  std::printf("parse+validate: %.3f s, %.0f rows/s, %.1f MB/s\n", s,
              static_cast<double>(batch.rows) / s, mb / s);
  std::printf("cpu: %.3f s (user+sys, all threads)\n", cpu);
  std::printf("parse only: %.3f s, cpu %.3f s, %.0f rows/s\n", parse_s, parse_cpu,
              static_cast<double>(batch.rows) / parse_s);
  std::printf("peak RSS: %.1f MB (before validating: %.1f MB)\n", PeakRssKb() / 1024.0,
              rss_before / 1024.0);
  if (generated && !keep) std::filesystem::remove(path);
  return batch.ok() ? 0 : 1;
}
