// How the gateway client reacts to each outcome of a request (docs/gateway.md, "Each answer, and
// what payoutd does") and how long it waits before the next attempt. Everything here is a pure
// function of its inputs (time and randomness passed in), so schedules are tested with FakeClock
// and a seeded Random.
#pragma once

#include <optional>
#include <string_view>

#include "core/base/clock.h"
#include "core/gateway/options.h"

namespace payoutd {

// Capped exponential backoff with full jitter.
class RetryPolicy {
 public:
  explicit RetryPolicy(const RetryOptions& options) : options_(options) {}

  // The ceiling before retry number `retry` (1 = the first retry):
  // min(max_backoff, initial_backoff * 2^(retry-1)). Never overflows.
  Duration Ceiling(int retry) const;
  // Full jitter: uniform in [0, Ceiling(retry)], to the nanosecond.
  Duration Backoff(int retry, Random& random) const;
  // Whether another attempt may follow `attempts_made` attempts.
  bool MayRetry(int attempts_made) const { return attempts_made < options_.max_attempts; }

  const RetryOptions& options() const { return options_; }

 private:
  RetryOptions options_;
};

// Parses a Retry-After value: delay-seconds ("120") or an HTTP-date (IMF-fixdate, RFC 850 or
// asctime). Returns the wait from `now` (zero when the date is past), or nullopt when unparsable.
// The wait is capped at one hour so a broken header cannot stall the client for days.
std::optional<Duration> ParseRetryAfter(std::string_view value, WallTime now);

// What one HTTP exchange means for a payout call.
enum class Verdict {
  kOk,          // 200/201: use the body (a body lacking the fields we use is kBadBody instead)
  kExists,      // POST 409: the id exists; GET and compare
  kRejected,    // POST 400/422: final, keep the message
  kNotFound,    // GET 404
  kAuth,        // 401/403: fresh token, then pause
  kThrottled,   // 429: pause the whole client
  kAmbiguous,   // 5xx, timeout or reset after the request may have been sent, bad body
  kNotSent,     // the request certainly never reached the gateway (connection refused...)
  kUnexpected,  // another status (e.g. POST 404, GET 400): retried; the request was answered
                // without effect
};

enum class Method { kPost, kGet };

// `http_status` 0 means a transport failure; `maybe_sent` then says whether any request byte may
// have reached the gateway.
Verdict Classify(Method method, int http_status, bool maybe_sent);

// The observer's retry reason for a verdict: "5xx", "timeout", "network", "bad_json", "throttled",
// "auth", "unknown_outcome", "4xx".
std::string_view RetryReason(Verdict verdict, int http_status, bool timed_out);

}  // namespace payoutd
