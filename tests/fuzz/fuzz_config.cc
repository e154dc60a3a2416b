// ParseConfig must turn any text into a Config or an error, never a crash, hang or leak. The
// secret is never read here (read_secret = false), so the fuzzer touches no file.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.h"
#include "config/duration.h"
#include "config/summary.h"
#include "tests/fuzz/fuzz_accepted.h"

namespace {
uint64_t& g_configs = payoutd_fuzz::AcceptedCounter("accepted configs");
uint64_t& g_durations = payoutd_fuzz::AcceptedCounter("durations");
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  payoutd::Result<payoutd::Config> r = payoutd::ParseConfig(text, "fuzz", false);
  if (r.ok()) {
    ++g_configs;
    // An accepted configuration must satisfy what the rest of the program relies on.
    const payoutd::Config& c = *r;
    if (c.gateway.base_url.empty() || c.gateway.limits.requests_per_second <= 0 ||
        c.gateway.limits.burst < 1 || c.gateway.retry.max_attempts < 1 || c.batches.max_rows < 1 ||
        c.polling.success_statuses.empty()) {
      __builtin_trap();
    }
    (void)payoutd::Summarize(c);
  } else if (r.error().empty()) {
    __builtin_trap();
  }
  // Durations: whatever parses must format and parse back to the same value.
  if (size <= 64) {
    std::optional<payoutd::Duration> d = payoutd::ParseDuration(text);
    if (d) ++g_durations;
    if (d && payoutd::ParseDuration(payoutd::FormatDuration(*d)) != d) __builtin_trap();
  }
  return 0;
}
