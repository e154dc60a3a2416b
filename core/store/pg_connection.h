// One connection to PostgreSQL through libpq, for the PostgreSQL state store and the leader's
// lease.
//
// Guarantees:
// - Statements are parameterised: values travel apart from the SQL text (text format), never
//   spliced into it. Statements run often are prepared once per connection (Run); the cache is
//   dropped with the connection.
// - A failure says what the caller can do about it (PgErrorKind): kUnavailable when the database
//   could not be reached or dropped us (a retry later may succeed: the store reconnects on its
//   next call), kUniqueViolation for a real conflict, kFenced when this instance's writes were
//   refused because another one holds the lease now, kOther for the rest (a bug, or a database
//   this payoutd cannot use). A call that breaks the connection closes it; the next call
//   reconnects.
// - Messages never hold the password: the URL is shown without it, the password file's content
//   is never put in one.
// - Commits are durable when they return: synchronous_commit is raised to 'on' for payoutd's
//   sessions when the server's default is 'off' or 'local'.
// - A call given a deadline returns by then (the connection is closed when it runs out); without
//   one, a dead peer is noticed through TCP keepalives and tcp_user_timeout, which payoutd sets
//   unless the URL does.
//
// Threading: one thread at a time per connection (libpq's own rule).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/base/clock.h"
#include "core/base/status.h"

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace payoutd {

enum class PgErrorKind {
  kNone,
  kUnavailable,      // not connected, connection lost, server shutting down or read-only, timeout
  kUniqueViolation,  // SQLSTATE 23505: a key that must be unique exists already
  kFenced,           // SQLSTATE PD001 from payoutd_fence(): another instance took the lease
  kForbidden,        // SQLSTATE PD002: the store refused a write its contract forbids (a bug)
  kNotFound,         // SQLSTATE PD003: a row the statement needs does not exist
  kUnusable,         // a database (schema version) or a password file this payoutd cannot use
  kOther,            // anything else
};
std::string_view PgErrorKindName(PgErrorKind kind);

// The outcome of one statement: rows, or an error with its kind. Move-only.
class PgResult {
 public:
  PgResult() = default;  // an empty success (no rows)
  static PgResult Error(PgErrorKind kind, std::string message, std::string sqlstate = "");
  explicit PgResult(PGresult* res);  // takes ownership of a successful result
  ~PgResult();
  PgResult(PgResult&& other) noexcept;
  PgResult& operator=(PgResult&& other) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;

  bool ok() const { return kind_ == PgErrorKind::kNone; }
  PgErrorKind error_kind() const { return kind_; }
  const std::string& sqlstate() const { return sqlstate_; }
  const std::string& message() const { return message_; }
  // The error as a Status, `what` (the operation) in front; OK when ok(). Codes: kUnavailable,
  // kAlreadyExists (unique violation), kAborted (fenced), kNotFound, kInternal (the rest).
  Status ToStatus(std::string_view what) const;
  StatusCode code() const;

  int rows() const;
  int columns() const;
  bool IsNull(int row, int col) const;
  std::string_view Text(int row, int col) const;
  // A bigint/integer column; a value that is not one is a bug (PAYOUTD_CHECK).
  int64_t Int(int row, int col) const;
  bool Bool(int row, int col) const;  // a boolean column ('t' / 'f')
  // The number of rows an INSERT/UPDATE/DELETE touched.
  int64_t affected() const;

 private:
  PGresult* res_ = nullptr;
  PgErrorKind kind_ = PgErrorKind::kNone;
  std::string sqlstate_;
  std::string message_;
};

// Values for the $1, $2, ... of one statement, in text format. The strings are owned here, so a
// PgParams may be built from temporaries.
class PgParams {
 public:
  PgParams() = default;
  PgParams& Add(std::string_view v);
  PgParams& Add(const char* v) { return Add(std::string_view(v)); }
  PgParams& Add(int64_t v);
  PgParams& Add(int v) { return Add(static_cast<int64_t>(v)); }
  PgParams& Add(uint32_t v) { return Add(static_cast<int64_t>(v)); }
  PgParams& Add(bool v);
  PgParams& AddNull();
  size_t size() const { return values_.size(); }
  // For libpq: pointers into the owned values (nullptr for NULL).
  std::vector<const char*> Pointers() const;
  std::vector<int> Lengths() const;

 private:
  std::vector<std::optional<std::string>> values_;
};

// Builds a PostgreSQL array literal ('{"a","b"}', '{1,2}') for one parameter: lets one statement
// carry a whole group of rows (unnest($1::text[], ...)).
class PgArray {
 public:
  void Add(std::string_view v);
  void Add(int64_t v);
  void Add(bool v) { Add(static_cast<int64_t>(v ? 1 : 0)); }
  std::string Take();  // the literal; the builder is empty afterwards
  size_t size() const { return count_; }

 private:
  std::string text_;
  size_t count_ = 0;
};

struct PgConnectOptions {
  std::string url;            // libpq URI or key=value string (may be multi-host)
  std::string password_file;  // optional; read by core/base/secret_file.h's rule
  // Run once after every connect (SET ...): session settings. Simple-query text, no parameters.
  std::string session_sql;
};

// The URL fit for a message: a password in it (user:password@, password=...) replaced by "***".
std::string RedactUrl(std::string_view url);

class PgConnection {
 public:
  explicit PgConnection(PgConnectOptions options);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Connects unless connected; a call on a closed connection does this first.
  PgResult Connect();
  bool connected() const;
  void Close();

  // Runs one statement with parameters. Prepared on this connection at first use (kept for the
  // connection's life), so use it for statements run many times.
  PgResult Run(const std::string& sql, const PgParams& params = {},
               SteadyTime deadline = SteadyTime::max());
  // Runs one statement with parameters, unprepared (one-off statements, DDL without params).
  PgResult Exec(std::string_view sql, const PgParams& params = {},
                SteadyTime deadline = SteadyTime::max());
  // Runs simple-query text (several statements allowed, no parameters): DDL, SET, BEGIN.
  PgResult ExecScript(std::string_view sql);

  // COPY ... FROM STDIN: `produce(buf)` appends data (COPY text format) to *buf and returns false
  // when it has no more. The rows go in chunks; memory does not follow the row count.
  PgResult CopyIn(std::string_view copy_sql, const std::function<bool(std::string*)>& produce);

  // Waits until a notification arrives on a channel this session LISTENs to, `wake_fd` (when not
  // -1) turns readable, or `deadline` passes; *count is the number of notifications taken (their
  // payloads are dropped). Does not connect: a LISTEN is lost with its session, so the caller
  // connects and LISTENs again. kUnavailable when not connected or the connection broke.
  PgResult WaitForNotifications(SteadyTime deadline, int wake_fd, int* count);

  // True while a transaction is open on the connection (BEGIN without COMMIT/ROLLBACK yet).
  bool in_transaction() const;
  // The URL without its password, for messages.
  const std::string& where() const { return redacted_url_; }

 private:
  PgResult Wait(SteadyTime deadline, bool send_ok);
  PgResult ConnectionError(std::string_view what);
  PgResult FromResult(PGresult* res);

  PgConnectOptions options_;
  std::string redacted_url_;
  PGconn* conn_ = nullptr;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
};

// Session SQL that makes the server end the session of a client that went away, even while the
// session waits for a lock (client_connection_check_interval, PostgreSQL 14 and later; older
// servers go without).
extern const char* const kPgDropVanishedClients;

// Escapes one value for COPY text format (backslash, tab, newline, carriage return) onto *out.
void AppendCopyField(std::string* out, std::string_view v);

}  // namespace payoutd
