// Time and randomness come in from outside, so that schedules (retry backoff, rate limit, polling,
// the gateway circuit) are deterministic in tests. Production code uses SystemClock and
// SystemRandom; tests use FakeClock and a seeded random source.
//
// A Clock also makes the timers that wait on it. Code that waits (the engine's pump, the gateway
// client's backoff and probes) takes its timers from its Clock, so a test with a FakeClock runs
// hours of schedule in milliseconds: time moves only when the test moves it, and each timer fires
// when the fake time reaches it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <utility>

namespace boost::asio {
class io_context;
}

namespace payoutd {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;
using Duration = std::chrono::nanoseconds;

// One pending wait at a time. `fn` runs on the io_context given to NewTimer, never inside
// WaitUntil. Arming again, Cancel() or destroying the timer drops the wait armed before: its `fn`
// never runs, even if it was already due. Threading: the io_context's thread only.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void WaitUntil(SteadyTime at, std::function<void()> fn) = 0;
  virtual void Cancel() = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for deadlines and rates.
  virtual SteadyTime Now() const = 0;
  // Wall-clock time, for timestamps written to reports and JWT iat/exp.
  virtual WallTime WallNow() const = 0;
  // A timer on this clock whose waits complete on `io`. `io` must outlive the timer.
  virtual std::unique_ptr<Timer> NewTimer(boost::asio::io_context& io) = 0;
};

class SystemClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }
  std::unique_ptr<Timer> NewTimer(boost::asio::io_context& io) override;
};

// A clock that moves only when told. Its timers fire as it moves: AdvanceTo posts every wait that
// has come due to its io_context, earliest first. Not thread-safe: the test's thread only.
class FakeClock final : public Clock {
 public:
  FakeClock();
  ~FakeClock() override;
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;

  SteadyTime Now() const override { return now_; }
  WallTime WallNow() const override { return wall_ + (now_ - SteadyTime{}); }
  std::unique_ptr<Timer> NewTimer(boost::asio::io_context& io) override;

  void Advance(Duration d) { AdvanceTo(now_ + d); }
  // Moves time forward to `at` (never back) and posts the waits due by then.
  void AdvanceTo(SteadyTime at);
  void SetWall(WallTime w) { wall_ = w; }
  // The earliest armed wait, if any.
  std::optional<SteadyTime> NextDeadline() const;

 private:
  class FakeTimer;
  friend class FakeTimer;
  using Key = std::pair<SteadyTime, uint64_t>;  // deadline, then arming order

  SteadyTime now_{std::chrono::hours(1)};
  WallTime wall_{std::chrono::seconds(1'790'000'000)};
  uint64_t next_seq_ = 0;
  std::map<Key, FakeTimer*> waits_;
};

// Uniform random numbers. Production: seeded from std::random_device. Not thread-safe.
class Random {
 public:
  virtual ~Random() = default;
  // Uniform in [0, n); n > 0.
  virtual uint64_t Below(uint64_t n) = 0;
  virtual uint64_t Next64() = 0;
};

class SystemRandom final : public Random {
 public:
  SystemRandom() : gen_(std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32)) {}
  explicit SystemRandom(uint64_t seed) : gen_(seed) {}
  uint64_t Below(uint64_t n) override {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(gen_);
  }
  uint64_t Next64() override { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

}  // namespace payoutd
