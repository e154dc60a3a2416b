// payoutd's configuration (docs/configuration.md): YAML in, one plain validated struct out. The struct is taken
// by value by the rest of the program; nothing else reads YAML.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/base/clock.h"
#include "core/gateway/gateway_client.h"
#include "core/base/log.h"
#include "core/money/money.h"
#include "core/base/status.h"

namespace payoutd {

struct PollingOptions {
  Duration initial_delay = std::chrono::seconds(2);
  Duration max_interval = std::chrono::seconds(60);
  Duration give_up_after = std::chrono::hours(72);
  std::vector<std::string> final_statuses{"SUCCESS", "FAILED", "REJECTED", "CANCELLED", "EXPIRED"};
  std::vector<std::string> success_statuses{"SUCCESS"};
};

struct SpoolOptions {
  std::string dir;
  Duration settle = std::chrono::seconds(2);
};

struct BatchOptions {
  char delimiter = ',';
  std::string default_method = "BANK_TRANSFER";
  std::string default_operator_code;          // empty = operator_code column required
  int64_t max_rows = 1'000'000;
  std::map<std::string, int64_t> max_amount;  // currency -> minor units (per payout cap)
  std::map<std::string, int64_t> max_total;   // currency -> minor units (per batch total cap)
  CurrencyTable currencies = CurrencyTable::Iso4217();  // with config overrides applied
};

struct Config {
  std::string path;                 // the file it was loaded from
  GatewayOptions gateway;           // gateway + auth + limits + retry + callbacks.url; secret loaded
  std::string secret_file;          // where gateway.secret came from
  PollingOptions polling;
  SpoolOptions spool;
  BatchOptions batches;
  std::string state_path;
  std::string metrics_listen = "127.0.0.1:9464";   // "" = metrics off
  std::string callbacks_listen;     // "" = no local receiver
  log::Level log_level = log::Level::kInfo;
  log::Format log_format = log::Format::kText;
  Duration shutdown_grace = std::chrono::seconds(10);
};

// Loads and validates the YAML file at `path`, including reading the secret file (the rule of
// docs/configuration.md#auth: refused when readable by group or others, unless it lies under
// $CREDENTIALS_DIRECTORY).
// On failure the Status holds every error found, one per line, each naming the key path and line:
//   "limits.requests_per_second: expected a positive number, got 'fast' (line 12)"
// Relative paths in the file (secret_file, state.path, spool.dir, ca_file) are taken relative to
// the config file's folder.
Result<Config> LoadConfig(const std::string& path);

// The same, from YAML text (for tests and fuzzing); `origin` names it in errors and is the folder
// base for relative paths. When `read_secret` is false the secret file is not touched.
Result<Config> ParseConfig(const std::string& yaml_text, const std::string& origin, bool read_secret);

// Parses "250ms", "2s", "5m", "72h" (also "1h30m"); nullopt when malformed.
std::optional<Duration> ParseDuration(std::string_view text);
std::string FormatDuration(Duration d);

// A short human summary for `payoutd check`; never includes the secret.
std::string Summarize(const Config& config);

}  // namespace payoutd
