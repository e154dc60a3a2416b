#include "core/store/pg_connection.h"

#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "core/base/secret_file.h"

namespace payoutd {
namespace {

constexpr size_t kCopyChunkBytes = 256 * 1024;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// What a retry can do about an SQLSTATE (PostgreSQL's errcodes appendix).
PgErrorKind KindOf(std::string_view sqlstate) {
  if (sqlstate.empty()) return PgErrorKind::kUnavailable;  // libpq's own: the connection failed
  if (sqlstate == "23505") return PgErrorKind::kUniqueViolation;
  if (sqlstate == "PD001") return PgErrorKind::kFenced;
  if (sqlstate == "PD002") return PgErrorKind::kForbidden;
  if (sqlstate == "PD003") return PgErrorKind::kNotFound;
  if (sqlstate == "23503") return PgErrorKind::kNotFound;  // a foreign key names no row
  // Class 08: connection exception; 53: insufficient resources; 57P01-03: the server shuts down,
  // crashed or is starting; 57014: statement timeout; 58: system error (I/O); 25006: the server
  // is read-only (a standby, e.g. the old primary after a failover); 40001/40P01: serialization
  // failure, deadlock; 55P03: lock not available.
  for (std::string_view cls : {"08", "53", "58"}) {
    if (StartsWith(sqlstate, cls)) return PgErrorKind::kUnavailable;
  }
  for (std::string_view code :
       {"57P01", "57P02", "57P03", "57014", "25006", "40001", "40P01", "55P03"}) {
    if (sqlstate == code) return PgErrorKind::kUnavailable;
  }
  return PgErrorKind::kOther;
}

// After these the connection is of no further use even if libpq still holds it open: the
// server is going away, or it is read-only and a reconnection (target_session_attrs) finds the
// primary.
bool DropsConnection(std::string_view sqlstate) {
  return sqlstate == "25006" || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

std::string OneLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

}  // namespace

std::string_view PgErrorKindName(PgErrorKind kind) {
  switch (kind) {
    case PgErrorKind::kNone: return "ok";
    case PgErrorKind::kUnavailable: return "unavailable";
    case PgErrorKind::kUniqueViolation: return "unique violation";
    case PgErrorKind::kFenced: return "fenced";
    case PgErrorKind::kForbidden: return "forbidden";
    case PgErrorKind::kNotFound: return "not found";
    case PgErrorKind::kUnusable: return "unusable";
    case PgErrorKind::kOther: return "error";
  }
  return "error";
}

// ---------------------------------------------------------------------------------------------
// PgResult

PgResult PgResult::Error(PgErrorKind kind, std::string message, std::string sqlstate) {
  PAYOUTD_CHECK(kind != PgErrorKind::kNone);
  PgResult r;
  r.kind_ = kind;
  r.message_ = std::move(message);
  r.sqlstate_ = std::move(sqlstate);
  return r;
}

PgResult::PgResult(PGresult* res) : res_(res) {}

PgResult::~PgResult() {
  if (res_) PQclear(res_);
}

PgResult::PgResult(PgResult&& other) noexcept
    : res_(std::exchange(other.res_, nullptr)),
      kind_(other.kind_),
      sqlstate_(std::move(other.sqlstate_)),
      message_(std::move(other.message_)) {}

PgResult& PgResult::operator=(PgResult&& other) noexcept {
  if (this != &other) {
    if (res_) PQclear(res_);
    res_ = std::exchange(other.res_, nullptr);
    kind_ = other.kind_;
    sqlstate_ = std::move(other.sqlstate_);
    message_ = std::move(other.message_);
  }
  return *this;
}

StatusCode PgResult::code() const {
  switch (kind_) {
    case PgErrorKind::kNone: return StatusCode::kOk;
    case PgErrorKind::kUnavailable: return StatusCode::kUnavailable;
    case PgErrorKind::kUniqueViolation: return StatusCode::kAlreadyExists;
    case PgErrorKind::kFenced: return StatusCode::kAborted;
    case PgErrorKind::kForbidden: return StatusCode::kInternal;
    case PgErrorKind::kNotFound: return StatusCode::kNotFound;
    case PgErrorKind::kUnusable: return StatusCode::kFailedPrecondition;
    case PgErrorKind::kOther: return StatusCode::kInternal;
  }
  return StatusCode::kInternal;
}

Status PgResult::ToStatus(std::string_view what) const {
  if (ok()) return Status::Ok();
  return Status(code(), std::string(what) + ": " + message_);
}

int PgResult::rows() const {
  return res_ ? PQntuples(res_) : 0;
}
int PgResult::columns() const {
  return res_ ? PQnfields(res_) : 0;
}

bool PgResult::IsNull(int row, int col) const {
  PAYOUTD_CHECK(res_ != nullptr && row < rows() && col < columns());
  return PQgetisnull(res_, row, col) != 0;
}

std::string_view PgResult::Text(int row, int col) const {
  PAYOUTD_CHECK(res_ != nullptr && row < rows() && col < columns());
  return std::string_view(PQgetvalue(res_, row, col),
                          static_cast<size_t>(PQgetlength(res_, row, col)));
}

int64_t PgResult::Int(int row, int col) const {
  std::string_view t = Text(row, col);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  PAYOUTD_CHECK(ec == std::errc() && end == t.data() + t.size());
  return v;
}

bool PgResult::Bool(int row, int col) const {
  std::string_view t = Text(row, col);
  PAYOUTD_CHECK(t == "t" || t == "f");
  return t == "t";
}

int64_t PgResult::affected() const {
  if (!res_) return 0;
  const char* n = PQcmdTuples(res_);
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}

// ---------------------------------------------------------------------------------------------
// Parameters and arrays

PgParams& PgParams::Add(std::string_view v) {
  values_.emplace_back(std::string(v));
  return *this;
}

PgParams& PgParams::Add(int64_t v) {
  values_.emplace_back(std::to_string(v));
  return *this;
}

PgParams& PgParams::Add(bool v) {
  values_.emplace_back(v ? "true" : "false");
  return *this;
}

PgParams& PgParams::AddNull() {
  values_.emplace_back(std::nullopt);
  return *this;
}

std::vector<const char*> PgParams::Pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v ? v->c_str() : nullptr);
  return out;
}

std::vector<int> PgParams::Lengths() const {
  std::vector<int> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v ? static_cast<int>(v->size()) : 0);
  return out;
}

void PgArray::Add(std::string_view v) {
  text_ += count_++ ? ",\"" : "{\"";
  for (char c : v) {
    if (c == '"' || c == '\\') text_ += '\\';
    text_ += c;
  }
  text_ += '"';
}

void PgArray::Add(int64_t v) {
  text_ += count_++ ? "," : "{";
  text_ += std::to_string(v);
}

std::string PgArray::Take() {
  std::string out = count_ ? std::move(text_) + "}" : std::string("{}");
  text_.clear();
  count_ = 0;
  return out;
}

void AppendCopyField(std::string* out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\': *out += "\\\\"; break;
      case '\t': *out += "\\t"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      default: *out += c;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// URL

std::string RedactUrl(std::string_view url) {
  std::string out(url);
  // URI form: scheme://[user[:password]@]hosts/...
  if (size_t scheme = out.find("://"); scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t end = out.find_first_of("/?", start);
    if (end == std::string::npos) end = out.size();
    size_t at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=... as a URI query parameter or a key=value pair (possibly quoted).
  for (size_t pos = out.find("password"); pos != std::string::npos;
       pos = out.find("password", pos + 1)) {
    bool starts_word =
        pos == 0 || out[pos - 1] == '?' || out[pos - 1] == '&' || out[pos - 1] == ' ';
    size_t eq = out.find_first_not_of(' ', pos + 8);
    if (!starts_word || eq == std::string::npos || out[eq] != '=') continue;
    size_t v = out.find_first_not_of(' ', eq + 1);
    if (v == std::string::npos) break;
    size_t end;
    if (out[v] == '\'') {
      end = v + 1;
      while (end < out.size() && out[end] != '\'') end += out[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, out.size());
    } else {
      end = out.find_first_of("& ", v);
      if (end == std::string::npos) end = out.size();
    }
    out.replace(v, end - v, "***");
  }
  return out;
}

const char* const kPgDropVanishedClients =
    "SELECT set_config('client_connection_check_interval', '1000', false) "
    "WHERE current_setting('server_version_num')::int >= 140000;";

// ---------------------------------------------------------------------------------------------
// PgConnection

PgConnection::PgConnection(PgConnectOptions options)
    : options_(std::move(options)), redacted_url_(RedactUrl(options_.url)) {}

PgConnection::~PgConnection() {
  Close();
}

bool PgConnection::connected() const {
  return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK;
}

void PgConnection::Close() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
  prepared_.clear();
}

bool PgConnection::in_transaction() const {
  if (!conn_) return false;
  PGTransactionStatusType t = PQtransactionStatus(conn_);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

PgResult PgConnection::Connect() {
  if (connected()) return PgResult();
  Close();
  std::string password;
  if (!options_.password_file.empty()) {
    auto p = ReadSecretFile(options_.password_file);
    if (!p.ok()) {
      return PgResult::Error(PgErrorKind::kUnusable, "state.password_file: " + p.error());
    }
    password = std::move(p).value();
  }
  // Defaults first: the URL, expanded from dbname, overrides them; the password file comes last
  // and overrides the URL. Keepalives and tcp_user_timeout let a call notice a peer that went
  // away without a word (a host or network failure) in seconds rather than hours.
  std::vector<const char*> keys = {
      "fallback_application_name", "connect_timeout",  "keepalives",       "keepalives_idle",
      "keepalives_interval",       "keepalives_count", "tcp_user_timeout", "dbname"};
  std::vector<const char*> values = {"payoutd", "5", "1",     "5",
                                     "2",       "3", "15000", options_.url.c_str()};
  if (!password.empty()) {
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  std::fill(password.begin(), password.end(), '\0');
  if (conn_ == nullptr) return PgResult::Error(PgErrorKind::kUnavailable, "out of memory");
  if (PQstatus(conn_) != CONNECTION_OK) {
    PgResult r =
        PgResult::Error(PgErrorKind::kUnavailable, "cannot connect to " + redacted_url_ + ": " +
                                                       OneLine(PQerrorMessage(conn_)));
    Close();
    return r;
  }
  // Every commit of payoutd is one it acts upon (a file moved, a report written, a term taken):
  // it must be durable when COMMIT returns, whatever the server's default says.
  std::string session =
      "SELECT set_config('synchronous_commit', 'on', false) "
      "WHERE current_setting('synchronous_commit') IN ('off', 'local');" +
      options_.session_sql;
  {
    PgResult r = ExecScript(session);
    if (!r.ok()) {
      Close();
      return r;
    }
  }
  return PgResult();
}

PgResult PgConnection::ConnectionError(std::string_view what) {
  std::string msg = std::string(what) + " (" + redacted_url_ +
                    "): " + (conn_ ? OneLine(PQerrorMessage(conn_)) : std::string("not connected"));
  Close();
  return PgResult::Error(PgErrorKind::kUnavailable, std::move(msg));
}

PgResult PgConnection::FromResult(PGresult* res) {
  ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN) return PgResult(res);
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  std::string sqlstate = state ? state : "";
  std::string msg = primary ? primary : OneLine(PQresultErrorMessage(res));
  if (detail) msg += std::string(" (") + detail + ")";
  PQclear(res);
  PgErrorKind kind = KindOf(sqlstate);
  if (sqlstate.empty() || DropsConnection(sqlstate) || PQstatus(conn_) != CONNECTION_OK) {
    kind = PgErrorKind::kUnavailable;
    Close();
  }
  return PgResult::Error(kind, std::move(msg), std::move(sqlstate));
}

// Reads every result of the statement sent; the first error wins, else the last result.
PgResult PgConnection::Wait(SteadyTime deadline, bool send_ok) {
  if (!send_ok) return ConnectionError("send");
  PgResult out;
  bool have = false;
  for (;;) {
    while (PQisBusy(conn_)) {
      int timeout_ms = -1;
      if (deadline != SteadyTime::max()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          Close();  // the statement may or may not run to its end: drop the session
          return PgResult::Error(PgErrorKind::kUnavailable,
                                 "no answer from " + redacted_url_ + " in time");
        }
        timeout_ms = static_cast<int>(std::min<int64_t>(left.count() + 1, 60'000));
      }
      pollfd p{PQsocket(conn_), POLLIN, 0};
      int n = ::poll(&p, 1, timeout_ms);
      if (n < 0 && errno != EINTR) return ConnectionError("poll");
      if (n > 0 && !PQconsumeInput(conn_)) return ConnectionError("receive");
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    ExecStatusType st = PQresultStatus(res);
    PgResult r = FromResult(res);
    if (!r.ok()) {
      if (!conn_) return r;  // closed: nothing more to read
      if (out.ok()) out = std::move(r);
      have = true;
      continue;
    }
    if (st == PGRES_COPY_IN) return r;  // the caller sends the data
    if (out.ok()) out = std::move(r);
    have = true;
  }
  if (!have && !connected()) return ConnectionError("receive");
  return out;
}

PgResult PgConnection::WaitForNotifications(SteadyTime deadline, int wake_fd, int* count) {
  *count = 0;
  if (!connected()) return ConnectionError("listen");
  for (;;) {
    if (!PQconsumeInput(conn_)) return ConnectionError("receive");
    while (PGnotify* n = PQnotifies(conn_)) {
      PQfreemem(n);
      ++*count;
    }
    if (*count > 0) return PgResult();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return PgResult();
    pollfd p[2] = {{PQsocket(conn_), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    int n = ::poll(p, wake_fd >= 0 ? 2 : 1,
                   static_cast<int>(std::min<int64_t>(left.count() + 1, 60'000)));
    if (n < 0 && errno != EINTR) return ConnectionError("poll");
    if (n > 0 && wake_fd >= 0 && (p[1].revents & POLLIN)) return PgResult();
  }
}

PgResult PgConnection::Run(const std::string& sql, const PgParams& params, SteadyTime deadline) {
  if (PgResult c = Connect(); !c.ok()) return c;
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = std::to_string(prepared_.size() + 1);
    name.insert(name.begin(), 's');  // not "s" + ...: GCC 12 warns falsely (-Wrestrict)
    bool sent = PQsendPrepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params.size()),
                              nullptr) != 0;
    PgResult r = Wait(deadline, sent);
    if (!r.ok()) return r;
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  std::vector<const char*> values = params.Pointers();
  std::vector<int> lengths = params.Lengths();
  bool sent = PQsendQueryPrepared(conn_, it->second.c_str(), static_cast<int>(params.size()),
                                  values.data(), lengths.data(), nullptr, 0) != 0;
  return Wait(deadline, sent);
}

PgResult PgConnection::Exec(std::string_view sql, const PgParams& params, SteadyTime deadline) {
  if (PgResult c = Connect(); !c.ok()) return c;
  std::string text(sql);
  std::vector<const char*> values = params.Pointers();
  std::vector<int> lengths = params.Lengths();
  bool sent = PQsendQueryParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                                values.data(), lengths.data(), nullptr, 0) != 0;
  return Wait(deadline, sent);
}

PgResult PgConnection::ExecScript(std::string_view sql) {
  if (PgResult c = Connect(); !c.ok()) return c;
  std::string text(sql);
  return Wait(SteadyTime::max(), PQsendQuery(conn_, text.c_str()) != 0);
}

PgResult PgConnection::CopyIn(std::string_view copy_sql,
                              const std::function<bool(std::string*)>& produce) {
  if (PgResult c = Connect(); !c.ok()) return c;
  std::string text(copy_sql);
  PgResult start = Wait(SteadyTime::max(), PQsendQuery(conn_, text.c_str()) != 0);
  if (!start.ok()) return start;
  std::string buf;
  bool more = true;
  while (more) {
    buf.clear();
    while (more && buf.size() < kCopyChunkBytes) more = produce(&buf);
    if (!buf.empty() && PQputCopyData(conn_, buf.data(), static_cast<int>(buf.size())) != 1) {
      return ConnectionError("copy");
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return ConnectionError("copy end");
  return Wait(SteadyTime::max(), true);
}

}  // namespace payoutd
