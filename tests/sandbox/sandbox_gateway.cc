#include "tests/sandbox/sandbox_gateway.h"
#include "core/base/json_text.h"

#include <time.h>

#include <algorithm>
#include <cstdio>

#include <simdjson.h>

#include "core/gateway/jwt.h"

namespace payoutd::sandbox {
namespace {

// ISO 4217 minor units that differ from 2. Unknown codes default to 2: the sandbox checks the
// client's exactness, not the currency list.
int MinorUnits(std::string_view code) {
  static const std::map<std::string_view, int> kTable = {
      {"BIF", 0}, {"CLP", 0}, {"DJF", 0}, {"GNF", 0}, {"ISK", 0}, {"JPY", 0}, {"KMF", 0},
      {"KRW", 0}, {"PYG", 0}, {"RWF", 0}, {"UGX", 0}, {"UYI", 0}, {"VND", 0}, {"VUV", 0},
      {"XAF", 0}, {"XOF", 0}, {"XPF", 0}, {"BHD", 3}, {"IQD", 3}, {"JOD", 3}, {"KWD", 3},
      {"LYD", 3}, {"OMR", 3}, {"TND", 3}, {"CLF", 4}, {"UYW", 4}};
  auto it = kTable.find(code);
  return it == kTable.end() ? 2 : it->second;
}

// Parses a JSON number token that must be a positive amount written exactly and in shortest
// form ("10000", "42.05", "42.5"; not "42.50", "4.2e1", "-1", "0"). Returns false when not.
bool ParseJsonAmount(std::string_view t, int digits, int64_t* minor, std::string* why) {
  size_t dot = t.find('.');
  std::string_view whole = t.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : t.substr(dot + 1);
  auto all_digits = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!all_digits(whole) || (dot != std::string_view::npos && !all_digits(frac))) {
    *why = "amount must be a plain positive decimal number (no sign, no exponent)";
    return false;
  }
  if (whole.size() > 1 && whole[0] == '0') {
    *why = "amount has leading zeros";
    return false;
  }
  if (!frac.empty() && frac.back() == '0') {
    *why = "amount is not in shortest form (trailing zeros)";
    return false;
  }
  if (static_cast<int>(frac.size()) > digits) {
    *why = "amount has more decimals than the currency allows";
    return false;
  }
  __int128 v = 0;
  for (char c : whole) {
    v = v * 10 + (c - '0');
    if (v > INT64_MAX) break;
  }
  for (int i = 0; i < digits; ++i) {
    v = v * 10 + (i < static_cast<int>(frac.size()) ? frac[i] - '0' : 0);
    if (v > INT64_MAX) break;
  }
  if (v > INT64_MAX) {
    *why = "amount is too large";
    return false;
  }
  if (v == 0) {
    *why = "amount must be greater than zero";
    return false;
  }
  *minor = static_cast<int64_t>(v);
  return true;
}

std::string Quote(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

// Shortest exact decimal of minor units with `digits` decimals.
std::string FormatAmount(int64_t minor, int digits) {
  std::string s = std::to_string(minor);
  if (digits == 0) return s;
  if (static_cast<int>(s.size()) <= digits) s.insert(0, digits + 1 - s.size(), '0');
  s.insert(s.size() - digits, ".");
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string IsoMillis(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::string HttpDate(std::chrono::system_clock::time_point t) {
  time_t secs = std::chrono::system_clock::to_time_t(t);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  auto alnum = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id[0])) return false;
  return std::all_of(id.begin() + 1, id.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

Reply Error(int status, std::string_view code, std::string_view message) {
  Reply r;
  r.status = status;
  r.body = R"({"error":{"code":)" + Quote(code) + R"(,"message":)" + Quote(message) + "}}";
  return r;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The value of `name` in the target's query ("/x?a=1&b=2"); nullopt when absent. No unescaping:
// the admin endpoints take plain words and numbers.
std::optional<std::string_view> QueryParam(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

// Milliseconds in [1, one day]; nullopt when not a plain number in that range.
std::optional<int64_t> ParseOutageMs(std::string_view text) {
  constexpr int64_t kDay = 24 * 3600 * 1000;
  if (text.empty() || text.size() > 9) return std::nullopt;
  int64_t ms = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    ms = ms * 10 + (c - '0');
  }
  if (ms < 1 || ms > kDay) return std::nullopt;
  return ms;
}

}  // namespace

uint64_t SandboxGateway::Body::Fingerprint() const {
  uint64_t h = std::hash<int64_t>{}(amount_minor);
  for (const std::string* s : {&currency, &method_code, &account_name, &account_number,
                               &operator_code, &email, &callback_url}) {
    h = (h ^ std::hash<std::string>{}(*s)) * 0x9E3779B97F4A7C15ULL;
  }
  return h;
}

SandboxGateway::SandboxGateway(SandboxOptions options)
    : options_(std::move(options)), start_(Clock::now()), random_(options_.seed) {
  if (options_.rate_limit > 0) window_.resize(static_cast<size_t>(options_.rate_limit));
}

bool SandboxGateway::Draw(double share) {
  if (share <= 0) return false;
  if (share >= 1) return true;
  return std::uniform_real_distribution<double>(0, 1)(random_) < share;
}

// Sliding window: at most rate_limit accepted requests in any one-second window.
bool SandboxGateway::RateLimited(Clock::time_point now) {
  if (options_.rate_limit <= 0) return false;
  size_t cap = window_.size();
  while (window_size_ > 0 && now - window_[window_head_] >= std::chrono::seconds(1)) {
    window_head_ = (window_head_ + 1) % cap;
    --window_size_;
  }
  if (window_size_ == cap) return true;
  window_[(window_head_ + window_size_) % cap] = now;
  ++window_size_;
  return false;
}

Header SandboxGateway::RetryAfter(int64_t seconds) const {
  if (options_.retry_after_http_date) {
    // HTTP-date has one-second resolution: round up so the client never comes back too early.
    auto when = std::chrono::system_clock::now() + std::chrono::seconds(seconds + 1);
    return {"Retry-After", HttpDate(when)};
  }
  return {"Retry-After", std::to_string(seconds)};
}

void SandboxGateway::Count(int status) {
  ++by_status_[status];
}

Reply SandboxGateway::Handle(const Request& r, Clock::time_point now) {
  std::string_view target = r.target;
  if (size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  MutexLock lock(&mu_);
  ++stats_["requests"];
  if (target.substr(0, 10) == "/_sandbox/") return HandleSandbox(r, now);

  std::string_view prefix = "/payouts/";
  if (!options_.base_path.empty()) {
    if (target.substr(0, options_.base_path.size()) != options_.base_path) {
      Count(404);
      return Error(404, "NOT_FOUND", "no such endpoint");
    }
    target.remove_prefix(options_.base_path.size());
  }
  if (target.substr(0, prefix.size()) != prefix) {
    Count(404);
    return Error(404, "NOT_FOUND", "no such endpoint");
  }
  std::string id(target.substr(prefix.size()));
  bool post = r.method == "POST";
  if (!post && r.method != "GET") {
    Count(405);
    return Error(405, "METHOD_NOT_ALLOWED", "use GET or POST");
  }

  size_t arrival = SIZE_MAX;
  if (arrivals_.size() < options_.max_arrivals) {
    arrival = arrivals_.size();
    arrivals_.push_back({SinceStartUs(now), post, id, 0, r.abandoned, std::string(r.user_agent)});
  } else {
    ++arrivals_dropped_;
  }
  ++stats_[post ? "posts" : "gets"];
  if (post && ValidId(id)) ++entries_[id].posts_received;
  if (r.abandoned) ++stats_["abandoned"];
  // Before rate limiting, auth and faults: a gateway that is down does none of its work.
  if (std::optional<Reply> down = DuringOutage(now)) {
    Record(arrival, *down);
    return std::move(*down);
  }

  Reply reply = [&]() REQUIRES(mu_) -> Reply {  // called at once, under the lock
    if (RateLimited(now)) {
      ++stats_["rate_limited"];
      Reply e = Error(429, "RATE_LIMITED", "too many requests");
      e.headers.push_back(RetryAfter(1));
      return e;
    }
    if (refuse_auth_) {
      ++stats_["unauthorized"];
      return Error(401, "UNAUTHORIZED", "tokens are refused (POST /_sandbox/refuse-auth)");
    }
    if (options_.auth) {
      std::string_view auth = r.authorization;
      if (auth.substr(0, 7) != "Bearer ") {
        ++stats_["unauthorized"];
        return Error(401, "UNAUTHORIZED", "missing bearer token");
      }
      int64_t unix_now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
      Result<JwtClaims> claims = VerifyJwt(auth.substr(7), options_.secret, unix_now);
      std::string why;
      if (!claims) {
        why = claims.error();
      } else if (claims->sub != options_.merchant) {
        why = "token sub is not this merchant";
      } else if (!JwtAllows(*claims, std::string(r.method) + " /payouts/" + id)) {
        why = "token does not allow this operation";
      }
      if (!why.empty()) {
        ++stats_["unauthorized"];
        return Error(401, "UNAUTHORIZED", why);
      }
    }
    if (options_.require_api_version && !r.has_api_version) {
      return Error(400, "MISSING_API_VERSION", "X-API-Version header is required");
    }
    if (!ValidId(id))
      return Error(400, "INVALID_ID", "idPayout does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$");
    bool faults = post ? options_.faults_on_post : options_.faults_on_get;
    if (faults && Draw(options_.share_429)) {
      ++stats_["injected_429"];
      Reply e = Error(429, "THROTTLED", "slow down");
      e.headers.push_back(RetryAfter(options_.retry_after_s));
      return e;
    }
    if (faults && Draw(options_.share_500)) {
      ++stats_["injected_500"];
      return Error(500, "INTERNAL", "injected failure");
    }
    if (faults && Draw(options_.share_503)) {
      ++stats_["injected_503"];
      return Error(503, "UNAVAILABLE", "injected failure");
    }
    Reply ok = post ? HandlePost(id, r, now) : HandleGet(id, now);
    if (post && options_.drop_share > 0 &&
        (ok.status == 200 || ok.status == 201 || ok.status == 409)) {
      auto it = entries_.find(id);
      if (it != entries_.end() && it->second.created && Draw(options_.drop_share)) {
        ++stats_["injected_drop"];
        ok.drop = true;
        return ok;
      }
    }
    if (faults && (ok.status == 200 || ok.status == 201) && Draw(options_.malformed_share)) {
      ++stats_["injected_malformed"];
      ok.body = ok.body.substr(0, ok.body.size() / 2) + "{\"";
    }
    return ok;
  }();

  bool faults = post ? options_.faults_on_post : options_.faults_on_get;
  if (faults && !reply.drop) {
    int64_t ms = options_.latency_ms;
    if (options_.jitter_ms > 0) {
      ms += static_cast<int64_t>(
          std::uniform_int_distribution<int64_t>(0, options_.jitter_ms)(random_));
    }
    if (Draw(options_.slow_share)) {
      ++stats_["injected_slow"];
      ms += options_.slow_ms;
    }
    reply.delay = std::chrono::milliseconds(ms);
  }
  Record(arrival, reply);
  return reply;
}

void SandboxGateway::Record(size_t arrival, const Reply& reply) {
  int status = reply.drop ? 0 : reply.status;
  if (arrival != SIZE_MAX) arrivals_[arrival].status = status;
  Count(status);
}

int64_t SandboxGateway::SinceStartUs(Clock::time_point t) const {
  return std::chrono::duration_cast<std::chrono::microseconds>(t - start_).count();
}

std::optional<Reply> SandboxGateway::DuringOutage(Clock::time_point now) {
  if (outage_ == Outage::kNone) return std::nullopt;
  if (now >= outage_end_) {
    outage_ = Outage::kNone;
    return std::nullopt;
  }
  Reply down;
  switch (outage_) {
    case Outage::kRefuse:
      // Only a request that was read just as the listener closed gets here.
      ++stats_["outage_dropped"];
      down.drop = true;
      return down;
    case Outage::k503:
      ++stats_["outage_503"];
      return Error(503, "UNAVAILABLE", "the gateway is down (POST /_sandbox/outage)");
    case Outage::kHang:
      ++stats_["outage_hung"];
      down.drop = true;
      down.delay = std::chrono::ceil<std::chrono::milliseconds>(outage_end_ - now);
      return down;
    case Outage::kNone: break;
  }
  return std::nullopt;
}

Reply SandboxGateway::StartOutage(const Request& r, Clock::time_point now) {
  std::optional<std::string_view> kind = QueryParam(r.target, "kind");
  std::optional<std::string_view> ms_text = QueryParam(r.target, "ms");
  std::optional<int64_t> ms = ms_text ? ParseOutageMs(*ms_text) : std::nullopt;
  if (!ms) {
    return Error(400, "INVALID_OUTAGE", "ms must be a whole number of milliseconds, 1..86400000");
  }
  std::chrono::milliseconds duration(*ms);
  Reply rep;
  if (kind == "refuse") {
    outage_ = Outage::kRefuse;
    rep.refuse_connections_for = duration;
  } else if (kind == "503") {
    outage_ = Outage::k503;
  } else if (kind == "hang") {
    outage_ = Outage::kHang;
  } else {
    return Error(400, "INVALID_OUTAGE", "kind must be refuse, 503 or hang");
  }
  outage_end_ = now + duration;
  ++stats_["outages"];
  rep.body = R"({"outage":)" + Quote(*kind) + R"(,"ms":)" + std::to_string(*ms) +
             R"(,"start_t_us":)" + std::to_string(SinceStartUs(now)) + R"(,"end_t_us":)" +
             std::to_string(SinceStartUs(outage_end_)) + "}";
  return rep;
}

Reply SandboxGateway::HandlePost(const std::string& id, const Request& r, Clock::time_point now) {
  // Validate the whole document first (DOM), then take the amount's exact text (on demand).
  // One padded copy per thread, reused: simdjson reads up to SIMDJSON_PADDING bytes past the end.
  thread_local std::string json;
  json.assign(r.body);
  json.append(simdjson::SIMDJSON_PADDING, '\0');
  thread_local simdjson::dom::parser dom;
  simdjson::dom::element doc;
  if (dom.parse(json.data(), r.body.size(), false).get(doc)) {
    return Error(400, "INVALID_JSON", "body is not valid JSON");
  }
  Body b;
  std::string_view s;
  auto str = [&](simdjson::simdjson_result<simdjson::dom::element> e, std::string* out,
                 bool required) -> bool {
    if (e.error() == simdjson::NO_SUCH_FIELD && !required) return true;
    if (e.get_string().get(s)) return false;
    if (required && s.empty()) return false;
    *out = std::string(s);
    return true;
  };
  if (!str(doc["paymentRequested"]["money"]["currencyCode"], &b.currency, true) ||
      b.currency.size() != 3 || !std::all_of(b.currency.begin(), b.currency.end(), [](char c) {
        return c >= 'A' && c <= 'Z';
      })) {
    return Error(400, "INVALID_FIELD",
                 "paymentRequested.money.currencyCode must be an ISO 4217 code");
  }
  if (!doc["paymentRequested"]["money"]["amount"].is_number()) {
    return Error(400, "INVALID_FIELD", "paymentRequested.money.amount must be a JSON number");
  }
  if (!str(doc["paymentMethod"]["paymentMethodCode"], &b.method_code, true)) {
    return Error(400, "INVALID_FIELD", "paymentMethod.paymentMethodCode is required");
  }
  if (!str(doc["paymentMethod"]["account"]["accountName"], &b.account_name, true)) {
    return Error(400, "INVALID_FIELD", "paymentMethod.account.accountName is required");
  }
  if (!str(doc["paymentMethod"]["account"]["accountNumber"], &b.account_number, true)) {
    return Error(400, "INVALID_FIELD", "paymentMethod.account.accountNumber is required");
  }
  if (!str(doc["paymentMethod"]["paymentOperatorCode"], &b.operator_code, true)) {
    return Error(400, "INVALID_FIELD", "paymentMethod.paymentOperatorCode is required");
  }
  if (!str(doc["paymentMethod"]["emailAddress"], &b.email, false)) {
    return Error(400, "INVALID_FIELD", "paymentMethod.emailAddress must be a string");
  }
  if (!str(doc["callbackUrl"], &b.callback_url, false)) {
    return Error(400, "INVALID_FIELD", "callbackUrl must be a string");
  }
  thread_local simdjson::ondemand::parser ondemand;
  std::string_view amount_text;
  {
    simdjson::ondemand::document od;
    if (ondemand.iterate(json.data(), r.body.size(), json.size()).get(od) ||
        od["paymentRequested"]["money"]["amount"].raw_json_token().get(amount_text)) {
      return Error(400, "INVALID_FIELD", "paymentRequested.money.amount is unreadable");
    }
    while (!amount_text.empty() && (amount_text.back() == ' ' || amount_text.back() == '\n' ||
                                    amount_text.back() == '\r' || amount_text.back() == '\t')) {
      amount_text.remove_suffix(1);
    }
  }
  b.digits = MinorUnits(b.currency);
  std::string why;
  if (!ParseJsonAmount(amount_text, b.digits, &b.amount_minor, &why)) {
    return Error(400, "INVALID_AMOUNT", why);
  }
  b.amount_text = std::string(amount_text);

  Entry& e = entries_[id];
  ++e.post_count;
  uint64_t fingerprint = b.Fingerprint();
  if (std::find(e.bodies.begin(), e.bodies.end(), fingerprint) == e.bodies.end()) {
    e.bodies.push_back(fingerprint);
  }
  if (e.created) {
    if (!(e.body == b)) {
      ++stats_["conflicts"];
      return Error(409, "CONFLICT", "idPayout already exists with a different request");
    }
    ++stats_["duplicates"];
    if (options_.replay_200) {
      Reply rep;
      rep.status = 200;
      rep.body = PostJson(id, e);
      return rep;
    }
    return Error(409, "DUPLICATE", "idPayout already exists");
  }
  if (b.operator_code == "BNK_REJECT") {
    ++e.refused_count;
    e.body = b;
    ++stats_["refused_422"];
    return Error(422, "OPERATOR_REJECTED", "the payment operator refused this payout");
  }
  e.created = true;
  e.body = std::move(b);
  e.created_at = now;
  e.created_wall = std::chrono::system_clock::now();
  e.stuck = Draw(options_.stuck_share);
  ++stats_["created"];
  Reply rep;
  rep.status = 201;
  rep.body = PostJson(id, e);
  if (options_.callbacks && !e.body.callback_url.empty() && !e.stuck) {
    ++stats_["callbacks_scheduled"];
    rep.callback = CallbackPlan{id, e.body.callback_url,
                                now + std::chrono::milliseconds(options_.final_after_ms)};
  }
  return rep;
}

Reply SandboxGateway::HandleGet(const std::string& id, Clock::time_point now) {
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.created) {
    if (it != entries_.end()) ++it->second.get_count;
    return Error(404, "NOT_FOUND", "no such payout");
  }
  ++it->second.get_count;
  Reply rep;
  rep.status = 200;
  rep.body = GetJson(id, it->second, now);
  return rep;
}

bool SandboxGateway::IsFinal(const Entry& e, Clock::time_point now) const {
  return !e.stuck && now - e.created_at >= std::chrono::milliseconds(options_.final_after_ms);
}

std::string SandboxGateway::StatusOf(const Entry& e, Clock::time_point now) const {
  if (!e.created) return e.refused_count > 0 ? "REJECTED" : "NONE";
  if (IsFinal(e, now)) return EndsWith(e.body.account_number, "13") ? "FAILED" : "SUCCESS";
  if (!e.stuck && now - e.created_at < std::chrono::milliseconds(options_.final_after_ms) / 2) {
    return "CREATED";
  }
  return "PENDING";
}

std::string SandboxGateway::PostJson(const std::string& id, const Entry& e) const {
  std::string out = R"({"paymentRequested":{"money":{"amount":)" + e.body.amount_text +
                    R"(,"currencyCode":)" + Quote(e.body.currency) +
                    R"(}},"paymentMethodResponse":{"paymentMethodCode":)" +
                    Quote(e.body.method_code) + R"(,"idPayout":)" + Quote(id) + "}}";
  return out;
}

std::string SandboxGateway::GetJson(const std::string& id, const Entry& e,
                                    Clock::time_point now) const {
  const Body& b = e.body;
  bool final = IsFinal(e, now);
  std::string out = R"({"paymentRequested":{"money":{"amount":)" + b.amount_text +
                    R"(,"currencyCode":)" + Quote(b.currency) + "}}";
  out += R"(,"paymentMethod":{"paymentMethodCode":)" + Quote(b.method_code) +
         R"(,"account":{"accountName":)" + Quote(b.account_name) + R"(,"accountNumber":)" +
         Quote(b.account_number) + R"(},"paymentOperatorCode":)" + Quote(b.operator_code) + "}";
  out += R"(,"process":{"status":)" + Quote(StatusOf(e, now)) + R"(,"createdAt":)" +
         Quote(IsoMillis(e.created_wall));
  if (final) {
    out += R"(,"processedAt":)" +
           Quote(IsoMillis(e.created_wall + std::chrono::milliseconds(options_.final_after_ms)));
  }
  out += R"(,"isTest":true})";
  // Fee: 1% rounded down, at least one minor unit, in the payout currency.
  int64_t fee = std::max<int64_t>(1, b.amount_minor / 100);
  out += R"(,"fee":{"amount":)" + FormatAmount(fee, b.digits) + R"(,"currencyCode":)" +
         Quote(b.currency) + "}";
  out += R"(,"paymentMethodResponse":{"paymentMethodCode":)" + Quote(b.method_code) +
         R"(,"idPayout":)" + Quote(id) + "}}";
  return out;
}

std::optional<std::string> SandboxGateway::PayoutJson(const std::string& id,
                                                      Clock::time_point now) {
  MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.created) return std::nullopt;
  return GetJson(id, it->second, now);
}

void SandboxGateway::NoteCallback(bool delivered) {
  MutexLock lock(&mu_);
  ++stats_[delivered ? "callbacks_delivered" : "callbacks_failed"];
}

Reply SandboxGateway::HandleSandbox(const Request& r, Clock::time_point now) {
  std::string_view path = r.target;
  if (size_t q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  Reply rep;
  if (r.method == "GET" && path == "/_sandbox/ledger") {
    rep.body = LedgerJson(now);
  } else if (r.method == "GET" && path == "/_sandbox/arrivals") {
    rep.body = ArrivalsJson();
  } else if (r.method == "GET" && path == "/_sandbox/stats") {
    rep.body = StatsJson();
  } else if (r.method == "POST" && path == "/_sandbox/refuse-auth") {
    std::string_view query = r.target.substr(path.size());
    refuse_auth_ = query != "?on=0";
    rep.body = std::string(R"({"refuse_auth":)") + (refuse_auth_ ? "true" : "false") + "}";
  } else if (r.method == "GET" && path == "/_sandbox/clock") {
    int64_t steady_us =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
    rep.body = R"({"t_us":)" + std::to_string(SinceStartUs(now)) + R"(,"steady_us":)" +
               std::to_string(steady_us) + "}";
  } else if (r.method == "POST" && path == "/_sandbox/outage") {
    return StartOutage(r, now);
  } else if (r.method == "POST" && path == "/_sandbox/reset") {
    entries_.clear();
    arrivals_.clear();
    arrivals_dropped_ = 0;
    window_size_ = 0;
    stats_.clear();
    by_status_.clear();
    refuse_auth_ = false;
    outage_ = Outage::kNone;
    rep.body = R"({"reset":true})";
  } else {
    return Error(404, "NOT_FOUND",
                 "sandbox endpoints: GET ledger, arrivals, stats, clock; POST reset, "
                 "refuse-auth?on=1|0, outage?kind=refuse|503|hang&ms=N");
  }
  return rep;
}

std::string SandboxGateway::LedgerJson(Clock::time_point now) const {
  std::string out = R"({"payouts":{)";
  bool first = true;
  for (const auto& [id, e] : entries_) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(out, id);
    out += R"(:{"created":)" + std::string(e.created ? "true" : "false") + R"(,"posts_received":)" +
           std::to_string(e.posts_received) + R"(,"post_count":)" + std::to_string(e.post_count) +
           R"(,"get_count":)" + std::to_string(e.get_count) + R"(,"distinct_bodies":)" +
           std::to_string(e.bodies.size()) + R"(,"status":)" + Quote(StatusOf(e, now));
    if (!e.body.currency.empty()) {
      out += R"(,"amount":{"minor":)" + std::to_string(e.body.amount_minor) + R"(,"currency":)" +
             Quote(e.body.currency) + R"(},"account_number":)" + Quote(e.body.account_number);
    }
    out.push_back('}');
  }
  out += "}}";
  return out;
}

std::string SandboxGateway::ArrivalsJson() const {
  std::string out = R"({"arrivals":[)";
  out.reserve(arrivals_.size() * 64);
  for (size_t i = 0; i < arrivals_.size(); ++i) {
    const Arrival& a = arrivals_[i];
    if (i) out.push_back(',');
    out += R"({"t_us":)" + std::to_string(a.t_us) + R"(,"method":)" +
           (a.post ? R"("POST")" : R"("GET")") + R"(,"id":)";
    AppendJsonString(out, a.id);
    out += R"(,"status":)" + std::to_string(a.status);
    if (a.abandoned) out += R"(,"abandoned":true)";
    if (!a.agent.empty()) {
      out += R"(,"agent":)";
      AppendJsonString(out, a.agent);
    }
    out.push_back('}');
  }
  out += R"(],"not_recorded":)" + std::to_string(arrivals_dropped_) + "}";
  return out;
}

std::string SandboxGateway::StatsJson() const {
  std::string out = "{";
  for (const auto& [k, v] : stats_) {
    AppendJsonString(out, k);
    out += ":" + std::to_string(v) + ",";
  }
  out += R"("payouts":)" + std::to_string(entries_.size()) + R"(,"by_status":{)";
  bool first = true;
  for (const auto& [k, v] : by_status_) {
    if (!first) out.push_back(',');
    first = false;
    out += "\"" + std::to_string(k) + "\":" + std::to_string(v);
  }
  out += "}}";
  return out;
}

}  // namespace payoutd::sandbox
