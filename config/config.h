// payoutd's configuration (docs/configuration.md): YAML in, one plain validated struct out. The
// struct holds the very option structs the modules take (the gateway client's, the batch
// validator's, the engine's polling policy, the log's), so a setting has one home and nothing is
// converted on the way; the sections only the daemon reads have their small structs here. The
// struct is taken by value by the rest of the program; nothing else reads YAML.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "core/base/clock.h"
#include "core/base/log.h"
#include "core/base/status.h"
#include "core/batch/batch.h"
#include "core/engine/options.h"
#include "core/gateway/options.h"
#include "core/store/state_options.h"

namespace payoutd {

// `spool`: the folder batches arrive in, and how long a file must be still before it is taken
// (0: at once).
struct SpoolOptions {
  std::string dir;
  Duration settle = std::chrono::seconds(2);
};

// `metrics`: host:port of the Prometheus endpoint (core/base/listen_address.h); "" = off.
struct MetricsOptions {
  std::string listen = "127.0.0.1:9464";
};

// `callbacks.listen`: host:port of the local callback receiver; "" = none. `callbacks.url` is
// sent by the gateway client, so it lives in GatewayOptions::callback_url.
struct CallbackOptions {
  std::string listen;
};

// `approvals` (docs/approvals.md): which batches wait for signatures before they are paid.
struct ApprovalPolicy {
  std::string allowed_signers;                 // OpenSSH allowed_signers file
  int required = 0;                            // signatures every batch needs
  std::map<std::string, int64_t> large_above;  // currency -> minor units: a batch total above it...
  int large_required = 2;                      // ... needs this many
  Duration expire_after = std::chrono::hours(168);
  // Whether any batch can ever wait (then allowed_signers must be set).
  bool Enabled() const { return required > 0 || !large_above.empty(); }
};

// `control.socket` (docs/operator-control.md): where hold, resume and cancel reach the daemon.
struct ControlOptions {
  std::string socket = "/run/payoutd/control.sock";
};

struct Config {
  std::string path;  // the file it was loaded from
  // `gateway`, `auth`, `limits` (gateway.limits), `retry` (gateway.retry) and `callbacks.url`;
  // the secret loaded. `batches.currencies` also lands in gateway.currency_minor_units, so the
  // client writes amounts with the digits the validator read them with.
  GatewayOptions gateway;
  std::string secret_file;  // where gateway.secret came from
  PollingPolicy polling;
  SpoolOptions spool;
  BatchRules batches;  // currencies: ISO 4217 with `batches.currencies` applied
  StateOptions state;  // `state`: core/store/state_options.h (SQLite path, PostgreSQL...)
  MetricsOptions metrics;
  CallbackOptions callbacks;
  ApprovalPolicy approvals;
  ControlOptions control;
  log::Options log;
  Duration shutdown_grace = std::chrono::seconds(10);
};

// Loads and validates the YAML file at `path`, including reading the secret file under the rule
// of core/base/secret_file.h. On failure the Status holds every error found, one per line, in file
// order, each naming the key path and line:
//   "limits.requests_per_second: expected a positive number, got 'fast' (line 12)"
// Relative paths in the file (secret_file, state.path, spool.dir, ca_file) are taken relative to
// the config file's folder. With `read_secret` false the secret file (and ca_file) is not read,
// for commands that never talk to the gateway (validate, status).
Result<Config> LoadConfig(const std::string& path, bool read_secret = true);

// The same, from YAML text (for tests and fuzzing); `origin` names it in errors and is the folder
// base for relative paths. When `read_secret` is false the secret file (and ca_file) is not
// touched.
Result<Config> ParseConfig(const std::string& yaml_text, const std::string& origin,
                           bool read_secret);

}  // namespace payoutd
