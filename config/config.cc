// The schema of payoutd.yaml: which sections and keys there are, their defaults (those of the
// structs in config.h) and what makes a value valid. docs/configuration.md says the same for
// operators; keep the two in step.
#include "config/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

#include "config/text.h"
#include "config/url.h"
#include "config/yaml_walker.h"
#include "core/base/listen_address.h"
#include "core/base/secret_file.h"
#include "core/store/open_store.h"
#include "core/store/pg_connection.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;

class ConfigReader {
 public:
  ConfigReader(YamlWalker& walker, fs::path base_dir, bool read_secret)
      : w_(walker), base_dir_(std::move(base_dir)), read_secret_(read_secret) {}

  void Read(const YAML::Node& root, Config* c);

 private:
  // Readers of the values only payoutd has; the plain types are the walker's.
  bool Path(const YamlSection& s, std::string_view key, bool required, std::string* out);
  bool Url(const YamlSection& s, std::string_view key, bool required, bool allow_query,
           std::string* out);
  bool Listen(const YamlSection& s, std::string_view key, std::string* out);
  bool StatusList(const YamlSection& s, std::string_view key, std::vector<std::string>* out);
  std::map<std::string, int64_t> Caps(const YamlSection& batches, std::string_view key,
                                      const CurrencyTable& table);
  std::map<std::string, int> CurrencyOverrides(const YamlSection& batches);

  // The sections, in the order of the file.
  void ReadGateway(const YamlSection& top, GatewayOptions* o);
  void ReadAuth(const YamlSection& top, Config* c);
  void ReadSecret(const YamlSection& auth, Config* c);
  void ReadLimitsAndRetry(const YamlSection& top, GatewayOptions* o);
  void ReadPolling(const YamlSection& top, PollingPolicy* o);
  void SuccessStatusesAreFinal(const YamlSection& polling, const PollingPolicy& o);
  void ReadBatches(const YamlSection& top, Config* c);
  void ReadDelimiter(const YamlSection& batches, char* out);
  void ReadDaemonSections(const YamlSection& top, Config* c);
  void ReadState(const YamlSection& state, StateOptions* o);
  void ReadApprovals(const YamlSection& top, Config* c);
  void ReadLog(const YamlSection& top, log::Options* o);

  // A relative path is taken relative to the configuration file's folder.
  std::string Resolve(const std::string& p) const {
    if (p.empty()) return p;
    fs::path path(p);
    return (path.is_absolute() ? path : base_dir_ / path).lexically_normal().string();
  }

  YamlWalker& w_;
  fs::path base_dir_;
  bool read_secret_;
};

bool ConfigReader::Path(const YamlSection& s, std::string_view key, bool required,
                        std::string* out) {
  std::string text;
  if (!w_.String(s, key, required, !required, &text)) return false;
  *out = Resolve(text);
  return true;
}

bool ConfigReader::Url(const YamlSection& s, std::string_view key, bool required, bool allow_query,
                       std::string* out) {
  std::string text;
  int line = 0;
  if (!required && s.IsBlank(key)) {
    out->clear();
    return true;
  }
  if (!w_.Text(s, key, "an http:// or https:// URL", required, &text, &line)) return false;
  if (text.empty() && !required) {
    out->clear();
    return true;
  }
  if (Result<UrlParts> url = ParseHttpUrl(text, allow_query); !url.ok()) {
    // Echo the value only when it cannot hold a password.
    bool echo = text.find('@') == std::string::npos;
    w_.Error(JoinKey(s.path, key), line, url.error() + (echo ? ", got " + Quote(text) : ""));
    return false;
  }
  // A base URL is joined with "/payouts/<id>": drop trailing slashes so the join stays clean.
  if (!allow_query) {
    while (text.size() > 1 && text.back() == '/' && text[text.size() - 2] != '/') text.pop_back();
  }
  *out = std::move(text);
  return true;
}

// host:port or [v6]:port; "" (or blank) turns the listener off.
bool ConfigReader::Listen(const YamlSection& s, std::string_view key, std::string* out) {
  std::string text;
  int line = 0;
  if (s.IsBlank(key)) {
    out->clear();
    return true;
  }
  if (!w_.Text(s, key, "host:port", false, &text, &line)) return false;
  if (text.empty()) {
    out->clear();
    return true;
  }
  if (Result<ListenAddress> address = ParseListenAddress(text); !address.ok()) {
    w_.Error(JoinKey(s.path, key), line, address.error() + ", got " + Quote(text));
    return false;
  }
  *out = std::move(text);
  return true;
}

bool ConfigReader::StatusList(const YamlSection& s, std::string_view key,
                              std::vector<std::string>* out) {
  const YamlEntry* e = s.Find(key);
  if (e == nullptr) return false;
  std::string path = JoinKey(s.path, key);
  int line = e->line();
  if (!e->value.IsSequence()) {
    w_.Error(path, line, "expected a list of gateway statuses, got " + Describe(e->value));
    return false;
  }
  std::vector<std::string> statuses;
  bool ok = true;
  for (size_t i = 0; i < e->value.size(); ++i) {
    YAML::Node item = e->value[i];
    std::string item_path = path + "[" + std::to_string(i) + "]";
    int item_line = LineOf(item) > 0 ? LineOf(item) : line;
    if (!item.IsScalar() || item.Scalar().empty() || HasControlChars(item.Scalar()) ||
        item.Scalar().find(' ') != std::string::npos) {
      w_.Error(item_path, item_line,
               "expected a gateway status such as SUCCESS, got " + Describe(item));
      ok = false;
      continue;
    }
    if (std::find(statuses.begin(), statuses.end(), item.Scalar()) != statuses.end()) {
      w_.Error(item_path, item_line, "status " + Quote(item.Scalar()) + " is listed twice");
      ok = false;
      continue;
    }
    statuses.push_back(item.Scalar());
  }
  if (!ok) return false;
  if (statuses.empty()) {
    w_.Error(path, line, "must list at least one status");
    return false;
  }
  *out = std::move(statuses);
  return true;
}

void ConfigReader::Read(const YAML::Node& root, Config* c) {
  YamlSection top =
      w_.Open(root, "", 0,
              {"gateway", "auth", "limits", "retry", "polling", "spool", "batches", "state",
               "approvals", "control", "metrics", "callbacks", "log", "shutdown_grace"});
  ReadGateway(top, &c->gateway);
  ReadAuth(top, c);
  ReadLimitsAndRetry(top, &c->gateway);
  ReadPolling(top, &c->polling);
  ReadBatches(top, c);
  ReadDaemonSections(top, c);
  ReadLog(top, &c->log);
  w_.PositiveDuration(top, "shutdown_grace", &c->shutdown_grace);
}

void ConfigReader::ReadGateway(const YamlSection& top, GatewayOptions* o) {
  YamlSection g =
      w_.Child(top, "gateway",
               {"base_url", "api_version", "timeout", "connect_timeout", "ca_file", "verify_tls"});
  Url(g, "base_url", true, false, &o->base_url);
  w_.Integer(g, "api_version", 1, std::numeric_limits<int>::max(), &o->api_version);
  w_.PositiveDuration(g, "timeout", &o->timeout);
  w_.PositiveDuration(g, "connect_timeout", &o->connect_timeout);
  if (Path(g, "ca_file", false, &o->ca_file) && read_secret_ && !o->ca_file.empty() &&
      ::access(o->ca_file.c_str(), R_OK) != 0) {
    w_.Error(JoinKey(g.path, "ca_file"), LineOf(g.Find("ca_file")->value),
             "cannot read " + o->ca_file + ": " + std::strerror(errno));
  }
  w_.Bool(g, "verify_tls", &o->verify_tls);
}

void ConfigReader::ReadAuth(const YamlSection& top, Config* c) {
  YamlSection a = w_.Child(top, "auth", {"mode", "merchant_code", "secret_file", "token_ttl"});
  GatewayOptions& o = c->gateway;
  std::string mode;
  int mode_line = 0;
  if (w_.Text(a, "mode", "jwt-hs256 or static", false, &mode, &mode_line)) {
    if (mode == "jwt-hs256") {
      o.auth_mode = GatewayOptions::AuthMode::kJwtHs256;
    } else if (mode == "static") {
      o.auth_mode = GatewayOptions::AuthMode::kStatic;
    } else {
      w_.Error(JoinKey(a.path, "mode"), mode_line,
               "expected jwt-hs256 or static, got " + Quote(mode));
    }
  }
  w_.String(a, "merchant_code", true, false, &o.merchant_code);
  w_.PositiveDuration(a, "token_ttl", &o.token_ttl);
  ReadSecret(a, c);
}

// auth.secret_file, and the secret in it when `read_secret_`.
void ConfigReader::ReadSecret(const YamlSection& auth, Config* c) {
  std::string file;
  if (!w_.String(auth, "secret_file", true, false, &file)) return;
  const std::string path = JoinKey(auth.path, "secret_file");
  int line = LineOf(auth.Find("secret_file")->value);
  std::optional<std::string> expanded = ExpandCredentialsDirectory(file);
  if (!expanded && read_secret_) {
    w_.Error(path, line,
             "refers to $CREDENTIALS_DIRECTORY, which is not set (is LoadCredential= configured?)");
    return;
  }
  // Unexpanded, it is left as written: nothing will read it.
  c->secret_file = expanded ? Resolve(*expanded) : file;
  if (!read_secret_) return;
  Result<std::string> secret = ReadSecretFile(c->secret_file);
  if (!secret.ok()) {
    w_.Error(path, line, secret.error());
    return;
  }
  // A bearer token goes verbatim into an HTTP header: a line break inside would split it.
  if (c->gateway.auth_mode == GatewayOptions::AuthMode::kStatic && HasControlChars(*secret)) {
    w_.Error(path, line,
             c->secret_file + " holds control characters; a static bearer token must be one line");
    return;
  }
  c->gateway.secret = std::move(*secret);
}

void ConfigReader::ReadLimitsAndRetry(const YamlSection& top, GatewayOptions* o) {
  YamlSection l = w_.Child(top, "limits", {"requests_per_second", "burst", "max_in_flight"});
  w_.PositiveNumber(l, "requests_per_second", &o->limits.requests_per_second);
  w_.Integer(l, "burst", 1, std::numeric_limits<int>::max(), &o->limits.burst);
  w_.Integer(l, "max_in_flight", 1, 10000, &o->limits.max_in_flight);

  YamlSection r = w_.Child(top, "retry", {"max_attempts", "initial_backoff", "max_backoff"});
  w_.Integer(r, "max_attempts", 1, 100, &o->retry.max_attempts);
  w_.OrderedDurations(r, "initial_backoff", &o->retry.initial_backoff, "max_backoff",
                      &o->retry.max_backoff);
}

void ConfigReader::ReadPolling(const YamlSection& top, PollingPolicy* o) {
  YamlSection p = w_.Child(
      top, "polling",
      {"initial_delay", "max_interval", "give_up_after", "final_statuses", "success_statuses"});
  w_.OrderedDurations(p, "initial_delay", &o->initial_delay, "max_interval", &o->max_interval);
  w_.PositiveDuration(p, "give_up_after", &o->give_up_after);
  bool final_ok =
      p.Find("final_statuses") == nullptr || StatusList(p, "final_statuses", &o->final_statuses);
  bool success_ok = p.Find("success_statuses") == nullptr ||
                    StatusList(p, "success_statuses", &o->success_statuses);
  if (final_ok && success_ok) SuccessStatusesAreFinal(p, *o);
}

void ConfigReader::SuccessStatusesAreFinal(const YamlSection& p, const PollingPolicy& o) {
  for (size_t i = 0; i < o.success_statuses.size(); ++i) {
    const std::string& s = o.success_statuses[i];
    if (std::find(o.final_statuses.begin(), o.final_statuses.end(), s) != o.final_statuses.end()) {
      continue;
    }
    const YamlEntry* e = p.Find("success_statuses");
    const YamlEntry* f = p.Find("final_statuses");
    int line = e != nullptr ? LineOf(e->value[i]) : f != nullptr ? LineOf(f->value) : p.line;
    w_.Error(JoinKey(p.path, "success_statuses"), line,
             "status " + Quote(s) + " is not in polling.final_statuses; a success must be final");
  }
}

void ConfigReader::ReadBatches(const YamlSection& top, Config* c) {
  YamlSection b = w_.Child(top, "batches",
                           {"delimiter", "default_method", "default_operator_code", "max_rows",
                            "max_amount", "max_total", "currencies"});
  BatchRules& o = c->batches;
  ReadDelimiter(b, &o.delimiter);
  w_.String(b, "default_method", false, false, &o.default_method);
  w_.String(b, "default_operator_code", false, true, &o.default_operator_code);
  w_.Integer(b, "max_rows", 1, std::numeric_limits<int64_t>::max(), &o.max_rows);

  // Currency overrides first: the caps below are read with the currencies' final minor units.
  std::map<std::string, int> overrides = CurrencyOverrides(b);
  o.currencies = CurrencyTable::Iso4217().WithOverrides(overrides);
  // The client writes request amounts with the same digits the validator read them with
  // (docs/gateway.md, "amount"): a currency has the same digits on both sides.
  c->gateway.currency_minor_units = overrides;
  o.max_amount = Caps(b, "max_amount", o.currencies);
  o.max_total = Caps(b, "max_total", o.currencies);
}

void ConfigReader::ReadDelimiter(const YamlSection& b, char* out) {
  std::string delimiter;
  int line = 0;
  if (!w_.Text(b, "delimiter", "a single character", false, &delimiter, &line)) return;
  unsigned char ch = delimiter.empty() ? 0 : static_cast<unsigned char>(delimiter[0]);
  if (delimiter.size() != 1 || ch == '"' || ch == '\r' || ch == '\n' || ch >= 0x80) {
    w_.Error(JoinKey(b.path, "delimiter"), line,
             "expected a single ASCII character other than a quote or line break, got " +
                 Quote(delimiter));
    return;
  }
  *out = delimiter[0];
}

// batches.currencies: {XYZ: {minor_units: 3}, ...}.
std::map<std::string, int> ConfigReader::CurrencyOverrides(const YamlSection& b) {
  std::map<std::string, int> overrides;
  YamlSection cur = w_.Child(b, "currencies", {});
  for (const auto& [code, entry] : cur.entries) {
    std::string path = JoinKey(cur.path, code);
    bool code_ok = code.size() == 3 && std::all_of(code.begin(), code.end(),
                                                   [](char ch) { return ch >= 'A' && ch <= 'Z'; });
    if (!code_ok) {
      w_.Error(path, LineOf(entry.key),
               "expected a currency code of three upper-case letters, got " + Quote(code));
      continue;
    }
    YamlSection one = w_.Open(entry.value, path, LineOf(entry.key), {"minor_units"});
    int minor = -1;
    if (one.Find("minor_units") == nullptr) {
      if (one.present || !entry.value.IsDefined() || entry.value.IsNull()) {
        w_.Missing(one, "minor_units");
      }
      continue;
    }
    if (w_.Integer(one, "minor_units", 0, 9, &minor)) overrides[code] = minor;
  }
  return overrides;
}

// batches.max_amount and batches.max_total: {USD: "5000.00", ...}, in each currency's digits.
std::map<std::string, int64_t> ConfigReader::Caps(const YamlSection& batches, std::string_view key,
                                                  const CurrencyTable& table) {
  std::map<std::string, int64_t> caps;
  YamlSection s = w_.Child(batches, key, {});
  for (const auto& [code, entry] : s.entries) {
    std::string path = JoinKey(s.path, code);
    int line = LineOf(entry.key);
    std::optional<int> minor = table.MinorUnits(code);
    if (!minor) {
      w_.Error(path, line,
               "unknown currency " + Quote(code) +
                   " (use an ISO 4217 code, or declare it under batches.currencies)");
      continue;
    }
    if (!entry.value.IsScalar()) {
      w_.Error(path, entry.line(),
               "expected a decimal amount such as \"5000.00\", got " + Describe(entry.value));
      continue;
    }
    Result<int64_t> amount = ParseAmount(entry.value.Scalar(), *minor);
    if (!amount) {
      w_.Error(path, LineOf(entry.value), amount.error() + ", got " + Quote(entry.value.Scalar()));
      continue;
    }
    caps[code] = *amount;
  }
  return caps;
}

// spool, state, metrics, callbacks: what only the daemon reads.
void ConfigReader::ReadDaemonSections(const YamlSection& top, Config* c) {
  YamlSection spool = w_.Child(top, "spool", {"dir", "settle"});
  Path(spool, "dir", true, &c->spool.dir);
  // 0s: a file is taken as soon as it is seen, for writers that rename complete files in.
  w_.NonNegativeDuration(spool, "settle", &c->spool.settle);

  YamlSection state =
      w_.Child(top, "state", {"backend", "path", "url", "password_file", "instance", "lease"});
  ReadState(state, &c->state);
  ReadApprovals(top, c);

  YamlSection control = w_.Child(top, "control", {"socket"});
  Path(control, "socket", false, &c->control.socket);

  YamlSection metrics = w_.Child(top, "metrics", {"listen"});
  Listen(metrics, "listen", &c->metrics.listen);

  YamlSection callbacks = w_.Child(top, "callbacks", {"url", "listen"});
  Url(callbacks, "url", false, true, &c->gateway.callback_url);
  Listen(callbacks, "listen", &c->callbacks.listen);
}

// state: SQLite (path) or PostgreSQL (url, password_file, instance, lease; docs/several-hosts.md).
void ConfigReader::ReadState(const YamlSection& state, StateOptions* o) {
  std::string backend;
  int line = 0;
  if (w_.Text(state, "backend", "sqlite or postgresql", false, &backend, &line)) {
    if (backend == "sqlite") {
      o->backend = StateOptions::Backend::kSqlite;
    } else if (backend == "postgresql") {
      o->backend = StateOptions::Backend::kPostgresql;
    } else {
      w_.Error(JoinKey(state.path, "backend"), line,
               "expected sqlite or postgresql, got " + Quote(backend));
    }
  }
  const bool pg = o->backend == StateOptions::Backend::kPostgresql;
  Path(state, "path", !pg, &o->path);
  if (w_.String(state, "url", pg, false, &o->url)) {
    if (Status s = CheckPgUrl(o->url); !s.ok())
      w_.Error(JoinKey(state.path, "url"), LineOf(state.Find("url")->value), s.message());
  }
  std::string file;
  if (w_.String(state, "password_file", false, false, &file)) {
    const std::string path = JoinKey(state.path, "password_file");
    const int file_line = LineOf(state.Find("password_file")->value);
    std::optional<std::string> expanded = ExpandCredentialsDirectory(file);
    if (!expanded && read_secret_) {
      w_.Error(path, file_line,
               "refers to $CREDENTIALS_DIRECTORY, which is not set (is LoadCredential= "
               "configured?)");
    } else {
      o->password_file = expanded ? Resolve(*expanded) : file;
      // Read at every connection; here only its rule is checked (never its content shown).
      if (read_secret_ && pg) {
        if (Result<std::string> pw = ReadSecretFile(o->password_file); !pw.ok())
          w_.Error(path, file_line, pw.error());
      }
    }
  }
  w_.String(state, "instance", false, false, &o->instance);
  if (w_.PositiveDuration(state, "lease", &o->lease) && o->lease < std::chrono::seconds(1)) {
    w_.Error(JoinKey(state.path, "lease"), LineOf(state.Find("lease")->value),
             "must be at least 1s");
  }
}

// approvals: which batches wait for signatures (docs/approvals.md).
void ConfigReader::ReadApprovals(const YamlSection& top, Config* c) {
  YamlSection a =
      w_.Child(top, "approvals",
               {"allowed_signers", "required", "large_above", "large_required", "expire_after"});
  ApprovalPolicy& o = c->approvals;
  Path(a, "allowed_signers", false, &o.allowed_signers);
  w_.Integer(a, "required", 0, 100, &o.required);
  o.large_above = Caps(a, "large_above", c->batches.currencies);
  w_.Integer(a, "large_required", 1, 100, &o.large_required);
  w_.PositiveDuration(a, "expire_after", &o.expire_after);
  if (o.Enabled() && o.allowed_signers.empty()) {
    w_.Error(JoinKey(a.path, "allowed_signers"), a.line,
             "is required when approvals.required or approvals.large_above is set");
  } else if (o.Enabled() && read_secret_ && ::access(o.allowed_signers.c_str(), R_OK) != 0) {
    w_.Error(JoinKey(a.path, "allowed_signers"), LineOf(a.Find("allowed_signers")->value),
             "cannot read " + o.allowed_signers + ": " + std::strerror(errno));
  }
}

void ConfigReader::ReadLog(const YamlSection& top, log::Options* o) {
  YamlSection logs = w_.Child(top, "log", {"level", "format"});
  std::string text;
  int line = 0;
  if (w_.Text(logs, "level", "debug, info, warn or error", false, &text, &line) &&
      !log::ParseLevel(text, &o->level)) {
    w_.Error(JoinKey(logs.path, "level"), line,
             "expected debug, info, warn or error, got " + Quote(text));
  }
  if (w_.Text(logs, "format", "text or json", false, &text, &line) &&
      !log::ParseFormat(text, &o->format)) {
    w_.Error(JoinKey(logs.path, "format"), line, "expected text or json, got " + Quote(text));
  }
}

}  // namespace

Result<Config> ParseConfig(const std::string& yaml_text, const std::string& origin,
                           bool read_secret) {
  std::string where = origin.empty() ? "configuration" : origin;
  PAYOUTD_ASSIGN_OR_RETURN(YAML::Node root, LoadOneDocument(yaml_text, where));

  std::error_code ec;
  fs::path base = fs::absolute(fs::path(origin.empty() ? "." : origin), ec).parent_path();
  if (ec) base = fs::path(origin).parent_path();

  Config config;
  config.path = origin;
  YamlWalker walker;
  try {
    ConfigReader(walker, base, read_secret).Read(root, &config);
  } catch (const YAML::Exception& e) {
    // The reader reads only nodes it has checked; this is a safety net, not a path we expect.
    walker.Error("", 0, where + ": cannot read the configuration: " + e.msg);
  }
  if (walker.ok()) return config;
  return Status::InvalidArgument(walker.Errors());
}

Result<Config> LoadConfig(const std::string& path, bool read_secret) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Unavailable(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Unavailable(path + ": cannot read: " + std::strerror(errno));
  return ParseConfig(text.str(), path, read_secret);
}

}  // namespace payoutd
