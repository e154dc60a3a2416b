#include "config/summary.h"

#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

#include "config/duration.h"
#include "config/text.h"
#include "config/url.h"
#include "core/money/money.h"
#include "core/store/open_store.h"
#include "core/store/pg_connection.h"

namespace payoutd {
namespace {

std::string Join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& x : items) s += (s.empty() ? "" : ",") + x;
  return s;
}

std::string Gateway(const GatewayOptions& g) {
  std::string text = RedactUrl(g.base_url) + " (API v" + std::to_string(g.api_version) +
                     ", timeout " + FormatDuration(g.timeout) + ", connect " +
                     FormatDuration(g.connect_timeout);
  if (!g.verify_tls) {
    text += ", TLS NOT verified";
  } else if (!g.ca_file.empty()) {
    text += ", CA " + g.ca_file;
  }
  return text + ")";
}

std::string Auth(const GatewayOptions& g, const std::string& secret_file) {
  std::string mode = g.auth_mode == GatewayOptions::AuthMode::kStatic
                         ? "static bearer token"
                         : "jwt-hs256 (token ttl " + FormatDuration(g.token_ttl) + ")";
  return mode + ", merchant " + Quote(g.merchant_code) + ", secret from " + secret_file +
         (g.secret.empty() ? " (not read)" : " (loaded)");
}

std::string Limits(const LimitOptions& l) {
  std::ostringstream rps;
  rps << l.requests_per_second;
  return rps.str() + " requests/s, burst " + std::to_string(l.burst) + ", at most " +
         std::to_string(l.max_in_flight) + " in flight";
}

std::string Retry(const RetryOptions& r) {
  return std::to_string(r.max_attempts) + " attempts, backoff " +
         FormatDuration(r.initial_backoff) + " up to " + FormatDuration(r.max_backoff);
}

std::string Polling(const PollingPolicy& p) {
  return "first after " + FormatDuration(p.initial_delay) + ", every " +
         FormatDuration(p.max_interval) + " at most, give up after " +
         FormatDuration(p.give_up_after) + "; final " + Join(p.final_statuses) + "; success " +
         Join(p.success_statuses);
}

std::string Batches(const BatchRules& b) {
  std::string delim = b.delimiter == '\t' ? "tab" : std::string("'") + b.delimiter + "'";
  return "delimiter " + delim + ", method " + b.default_method + ", operator " +
         (b.default_operator_code.empty() ? "from each row" : b.default_operator_code) +
         ", at most " + std::to_string(b.max_rows) + " rows";
}

std::string Caps(const std::map<std::string, int64_t>& caps, const CurrencyTable& currencies) {
  std::string s;
  for (const auto& [code, minor] : caps) {
    int digits = currencies.MinorUnits(code).value_or(0);
    s += (s.empty() ? "" : ", ") + FormatFixedAmount(minor, digits) + " " + code;
  }
  return s.empty() ? std::string("none") : s;
}

// The currencies whose digits differ from ISO 4217's, or that it lacks.
std::string Currencies(const CurrencyTable& currencies) {
  std::string overridden;
  const CurrencyTable& iso = CurrencyTable::Iso4217();
  for (const auto& [code, minor] : currencies.entries()) {
    std::optional<int> builtin = iso.MinorUnits(code);
    if (builtin == minor) continue;
    overridden += (overridden.empty() ? "" : ", ") + code + " " + std::to_string(minor) +
                  " minor digits" + (builtin ? "" : " (added)");
  }
  return overridden.empty() ? "ISO 4217" : "ISO 4217 with " + overridden;
}

// The URL without any password in it; the password file by name only.
std::string State(const StateOptions& s) {
  if (s.backend == StateOptions::Backend::kSqlite) return s.path;
  // The libpq form of the redaction (config/url.h's is for the gateway's http URLs).
  std::string out = "postgresql " + RedactUrl(std::string_view(s.url)) + " (instance " +
                    InstanceName(s) + ", lease " + FormatDuration(s.lease);
  if (!s.password_file.empty()) out += ", password from " + s.password_file;
  return out + ")";
}

std::string Callbacks(const std::string& url, const CallbackOptions& c) {
  std::string text = url.empty() ? "no callbackUrl" : "callbackUrl " + RedactUrl(url);
  return text + (c.listen.empty() ? ", no local receiver" : ", receiver on " + c.listen);
}

}  // namespace

std::string Summarize(const Config& c) {
  std::ostringstream out;
  auto line = [&out](std::string_view label, const std::string& value) {
    size_t pad = label.size() < 11 ? 11 - label.size() : 1;
    out << label << ':' << std::string(pad, ' ') << value << '\n';
  };
  line("config", c.path);
  line("gateway", Gateway(c.gateway));
  line("auth", Auth(c.gateway, c.secret_file));
  line("limits", Limits(c.gateway.limits));
  line("retry", Retry(c.gateway.retry));
  line("polling", Polling(c.polling));
  line("spool", c.spool.dir + " (settle " + FormatDuration(c.spool.settle) + ")");
  line("state", State(c.state));
  line("batches", Batches(c.batches));
  line("caps", "per payout " + Caps(c.batches.max_amount, c.batches.currencies) + "; per batch " +
                   Caps(c.batches.max_total, c.batches.currencies));
  line("currencies", Currencies(c.batches.currencies));
  line("metrics", c.metrics.listen.empty() ? "off" : "http://" + c.metrics.listen + "/metrics");
  line("callbacks", Callbacks(c.gateway.callback_url, c.callbacks));
  line("log", std::string(log::LevelName(c.log.level)) + ", " +
                  std::string(log::FormatName(c.log.format)));
  line("shutdown", "grace " + FormatDuration(c.shutdown_grace));
  return out.str();
}

}  // namespace payoutd
