// Errors as values. Expected failures (bad CSV, bad config, HTTP errors) travel as a Status that
// says what went wrong; Result<T> is a value or such a Status. Turn them into user messages in one
// place (the daemon's subcommands), never in the module that found them.
#pragma once

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace payoutd {

class Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !message_.has_value(); }
  explicit operator bool() const { return ok(); }
  // The reason; empty when ok().
  const std::string& message() const {
    static const std::string kEmpty;
    return message_ ? *message_ : kEmpty;
  }

 private:
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {         // NOLINT: implicit by design
    PAYOUTD_ASSERT_ERROR_STATUS();
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
  const std::string& error() const { return status().message(); }

 private:
  void PAYOUTD_ASSERT_ERROR_STATUS() const {
    if (std::get<Status>(v_).ok()) {
      std::fprintf(stderr, "payoutd: Result built from an OK Status\n");
      std::abort();
    }
  }
  std::variant<T, Status> v_;
};

}  // namespace payoutd

// Invariants of money-moving code: checked in release builds too. A failure is a bug, never input.
#define PAYOUTD_CHECK(cond)                                                                   \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "payoutd: invariant violated: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
