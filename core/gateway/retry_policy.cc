#include "core/gateway/retry_policy.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <string>

namespace payoutd {

Duration RetryPolicy::Ceiling(int retry) const {
  const Duration initial = std::max(options_.initial_backoff, Duration::zero());
  const Duration cap = std::max(options_.max_backoff, Duration::zero());
  Duration d = initial;
  for (int i = 1; i < retry && d < cap; ++i) {
    // Doubling past cap / 2 would only be capped anyway; stopping here avoids overflow.
    if (d > cap / 2) return cap;
    d *= 2;
  }
  return std::min(d, cap);
}

Duration RetryPolicy::Backoff(int retry, Random& random) const {
  const int64_t ceiling = Ceiling(retry).count();
  if (ceiling <= 0) return Duration::zero();
  return Duration(static_cast<int64_t>(random.Below(static_cast<uint64_t>(ceiling) + 1)));
}

std::optional<Duration> ParseRetryAfter(std::string_view value, WallTime now) {
  constexpr Duration kMaxWait = std::chrono::hours(1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' ||
                            value.back() == '\n'))
    value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    uint64_t seconds = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc::result_out_of_range) return kMaxWait;
    if (ec != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
    if (seconds >= 3600) return kMaxWait;
    return std::chrono::seconds(seconds);
  }
  // curl_getdate understands the three HTTP-date forms of RFC 9110 and is a pure function.
  const std::string text(value);
  const time_t at = curl_getdate(text.c_str(), nullptr);
  if (at == -1) return std::nullopt;
  // Compare in whole seconds first: a date centuries ahead (year 9999) would overflow the
  // nanosecond clock in from_time_t, and the wait must then be the cap, not a wrapped value.
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t ahead_s = static_cast<int64_t>(at) - now_s;
  if (ahead_s <= 0) return Duration::zero();
  if (ahead_s >= 3600) return kMaxWait;
  const Duration wait = std::chrono::system_clock::from_time_t(at) - now;
  return std::clamp(wait, Duration::zero(), kMaxWait);
}

Verdict Classify(Method method, int http_status, bool maybe_sent) {
  if (http_status == 0) return maybe_sent ? Verdict::kAmbiguous : Verdict::kNotSent;
  if (http_status == 200 || http_status == 201) return Verdict::kOk;
  if (http_status == 401 || http_status == 403) return Verdict::kAuth;
  if (http_status == 429) return Verdict::kThrottled;
  if (http_status >= 500) return Verdict::kAmbiguous;
  if (method == Method::kPost) {
    if (http_status == 409) return Verdict::kExists;
    if (http_status == 400 || http_status == 422) return Verdict::kRejected;
  } else if (http_status == 404) {
    return Verdict::kNotFound;
  }
  // Any other status (1xx/3xx that curl did not follow, 202, 404 on POST, 408...) is an answer
  // that did not do what we asked. A POST answered so is not known to have been created: treat
  // 2xx/3xx as ambiguous (the gateway may have acted), and 4xx as answered-without-effect.
  if (http_status < 400) return Verdict::kAmbiguous;
  return Verdict::kUnexpected;
}

std::string_view RetryReason(Verdict verdict, int http_status, bool timed_out) {
  switch (verdict) {
    case Verdict::kThrottled: return "throttled";
    case Verdict::kAuth: return "auth";
    case Verdict::kUnexpected: return "4xx";
    case Verdict::kNotSent: return timed_out ? "timeout" : "network";
    case Verdict::kAmbiguous:
      if (http_status >= 500) return "5xx";
      if (http_status == 0) return timed_out ? "timeout" : "network";
      return "unknown_outcome";
    case Verdict::kOk: return "bad_json";  // a 200 whose body we could not use
    default: return "unknown_outcome";
  }
}

}  // namespace payoutd
