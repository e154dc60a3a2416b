// Counts of fuzz inputs the code under test accepted, printed once when the fuzzer exits:
//   fuzz-accepted: valid batches 2301, amounts 18764
// libFuzzer's coverage says how much code ran, not whether any input got past validation; a zero
// here means everything after validation went unfuzzed. scripts/fuzz.sh prints the line.
//
// libFuzzer ends a run (time or run limit, or the inputs given on the command line) with exit(),
// so an atexit handler sees the final counts; a crash ends with _Exit and prints nothing, which is
// fine: the crash report is what matters then. One libFuzzer process runs inputs on one thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace payoutd_fuzz {

struct AcceptedCounts {
  static constexpr int kMax = 8;
  const char* names[kMax] = {};
  uint64_t values[kMax] = {};
  int used = 0;
};

inline AcceptedCounts& Counts() {
  static AcceptedCounts counts;
  return counts;
}

inline void PrintAcceptedCounts() {
  const AcceptedCounts& c = Counts();
  std::fprintf(stderr, "fuzz-accepted:");
  for (int i = 0; i < c.used; ++i) {
    std::fprintf(stderr, "%s %s %llu", i == 0 ? "" : ",", c.names[i],
                 static_cast<unsigned long long>(c.values[i]));
  }
  std::fprintf(stderr, "\n");
}

// A new count named `name` (a string literal), printed in the order the counts were made. Meant
// for namespace-scope initialisers: `uint64_t& g_valid = AcceptedCounter("valid batches");`.
inline uint64_t& AcceptedCounter(const char* name) {
  AcceptedCounts& c = Counts();
  if (c.used == 0) std::atexit(PrintAcceptedCounts);
  if (c.used == AcceptedCounts::kMax) std::abort();  // a fuzzer with more counts than kMax
  c.names[c.used] = name;
  return c.values[c.used++];
}

}  // namespace payoutd_fuzz
