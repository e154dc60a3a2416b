// What the gateway client is told: where the gateway is, how to authenticate, and the limits and
// retry settings the rate limiter, the retry policy and the client share. The one home of these
// structs (config/ fills them from payoutd.yaml; docs/configuration.md, `gateway`, `auth`,
// `limits`, `retry`). Plain values: copy them freely between threads.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "core/base/clock.h"

namespace payoutd {

struct RetryOptions {
  int max_attempts = 8;
  Duration initial_backoff = std::chrono::milliseconds(500);
  Duration max_backoff = std::chrono::seconds(60);
};

struct LimitOptions {
  double requests_per_second = 50;  // 0 = unlimited (benchmarks only)
  int burst = 10;
  int max_in_flight = 64;
};

struct GatewayOptions {
  std::string base_url;  // e.g. "http://127.0.0.1:8080" (no trailing slash needed)
  int api_version = 2;
  Duration timeout = std::chrono::seconds(30);
  Duration connect_timeout = std::chrono::seconds(5);
  std::string ca_file;  // empty = system store
  bool verify_tls = true;

  enum class AuthMode { kJwtHs256, kStatic } auth_mode = AuthMode::kJwtHs256;
  std::string merchant_code;  // JWT sub
  std::string secret;         // HMAC key (jwt-hs256) or the bearer token itself (static)
  Duration token_ttl = std::chrono::minutes(10);

  std::string callback_url;  // sent as callbackUrl when not empty
  // Sent as User-Agent when not empty: on a shared state it names the instance and its lease
  // term, so the gateway's logs show which instance sent what. No secret goes in it.
  std::string user_agent;
  // Minor-unit digits that override or extend the built-in ISO 4217 table (config
  // `batches.currencies`); must match what the batch validator used, or amounts would be wrong.
  std::map<std::string, int> currency_minor_units;
  LimitOptions limits;
  RetryOptions retry;
};

}  // namespace payoutd
