// Errors as values. Expected failures (bad CSV, bad config, HTTP errors, a disk that fails) travel
// as a Status: a code that says what kind of failure it is, and a message that says what went
// wrong. Result<T> is a value or such a Status. A caller decides by code(), never by parsing the
// message; messages are turned into user text in one place (the daemon's subcommands), never in
// the module that found them. The codes follow absl::StatusCode (same names, same numbers).
//
// Propagation, in the style of Abseil's status_macros.h:
//   PAYOUTD_RETURN_IF_ERROR(store.Apply(updates));             // returns the Status if not ok
//   PAYOUTD_ASSIGN_OR_RETURN(auto rows, store.LoadDue(now, 64)); // declares rows, or returns
//
// Status and Result are plain values: not thread-safe to modify, safe to copy between threads.
#pragma once

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace payoutd {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 3,     // the input is wrong (a bad row, a bad value, a malformed answer)
  kNotFound = 5,            // what was asked for does not exist (an unknown batch)
  kAlreadyExists = 6,       // what was to be created exists already (a payout id used before)
  kFailedPrecondition = 9,  // the system is not in a state to do it (a state of another version)
  kAborted = 10,            // refused by a concurrency check: this instance lost the leader's
                            // lease, so its writes are fenced off (PostgreSQL state)
  kInternal = 13,           // a broken invariant that is reported, not asserted (totals overflow)
  kUnavailable = 14,        // a resource failed, trying again may help (I/O, SQLite, a socket)
};

// "OK", "INVALID_ARGUMENT", ... as Abseil spells them.
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string message) {
    return Status(StatusCode::kInvalidArgument, std::move(message));
  }
  static Status NotFound(std::string message) {
    return Status(StatusCode::kNotFound, std::move(message));
  }
  static Status AlreadyExists(std::string message) {
    return Status(StatusCode::kAlreadyExists, std::move(message));
  }
  static Status FailedPrecondition(std::string message) {
    return Status(StatusCode::kFailedPrecondition, std::move(message));
  }
  static Status Aborted(std::string message) {
    return Status(StatusCode::kAborted, std::move(message));
  }
  static Status Internal(std::string message) {
    return Status(StatusCode::kInternal, std::move(message));
  }
  static Status Unavailable(std::string message) {
    return Status(StatusCode::kUnavailable, std::move(message));
  }

  // A failure with a code computed by the caller (e.g. from an SQLite error); `code` is not kOk.
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {
    if (code_ == StatusCode::kOk) {  // only Ok() makes an OK status
      std::fprintf(stderr, "payoutd: Status built with code OK and a message\n");
      std::abort();
    }
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  // The reason; empty when ok().
  const std::string& message() const { return message_; }

  // The same failure with `prefix` in front of its message (where it happened); an OK status
  // stays OK.
  Status WithPrefix(std::string_view prefix) const {
    if (ok()) return *this;
    return Status(code_, std::string(prefix) + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case StatusCode::kNotFound: return "NOT_FOUND";
    case StatusCode::kAlreadyExists: return "ALREADY_EXISTS";
    case StatusCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case StatusCode::kAborted: return "ABORTED";
    case StatusCode::kInternal: return "INTERNAL";
    case StatusCode::kUnavailable: return "UNAVAILABLE";
  }
  return "UNKNOWN";
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) {
      std::fprintf(stderr, "payoutd: Result built from an OK Status\n");
      std::abort();
    }
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  StatusCode code() const { return status().code(); }
  // The failure's message; empty when ok().
  const std::string& error() const { return status().message(); }
  // The same result, a failure with `prefix` in front of its message (where it happened).
  Result WithPrefix(std::string_view prefix) && {
    if (ok()) return std::move(*this);
    return Result(status().WithPrefix(prefix));
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace payoutd

// Returns from the enclosing function (which returns a Status or a Result) when `expr`, a Status,
// is not ok.
#define PAYOUTD_RETURN_IF_ERROR(expr)                                                              \
  do {                                                                                             \
    if (::payoutd::Status payoutd_status_ = (expr); !payoutd_status_.ok()) return payoutd_status_; \
  } while (0)

// `lhs = value of expr` when the Result `expr` is ok; otherwise returns its Status from the
// enclosing function. `lhs` may declare a variable (`auto rows`). Not inside an unbraced if/else.
#define PAYOUTD_ASSIGN_OR_RETURN(lhs, expr) \
  PAYOUTD_ASSIGN_OR_RETURN_IMPL_(PAYOUTD_STATUS_CONCAT_(payoutd_result_, __LINE__), lhs, expr)
#define PAYOUTD_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                   \
  if (!result.ok()) return result.status();               \
  lhs = std::move(result).value()
#define PAYOUTD_STATUS_CONCAT_(a, b) PAYOUTD_STATUS_CONCAT_INNER_(a, b)
#define PAYOUTD_STATUS_CONCAT_INNER_(a, b) a##b

// Invariants of money-moving code: checked in release builds too. A failure is a bug, never input.
#define PAYOUTD_CHECK(cond)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "payoutd: invariant violated: %s (%s:%d)\n", #cond, __FILE__, \
                   __LINE__);                                                            \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
