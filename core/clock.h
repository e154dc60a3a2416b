// Time and randomness come in from outside, so that schedules (retry backoff, rate limit, polling)
// are deterministic in tests. Production code uses SystemClock and SystemRandom; tests use
// FakeClock and a seeded random source.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace payoutd {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;
using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for deadlines and rates.
  virtual SteadyTime Now() const = 0;
  // Wall-clock time, for timestamps written to reports and JWT iat/exp.
  virtual WallTime WallNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }
};

// A clock that moves only when told. Not thread-safe.
class FakeClock final : public Clock {
 public:
  SteadyTime Now() const override { return now_; }
  WallTime WallNow() const override { return wall_ + (now_ - SteadyTime{}); }
  void Advance(Duration d) { now_ += d; }
  void SetWall(WallTime w) { wall_ = w; }

 private:
  SteadyTime now_{std::chrono::hours(1)};
  WallTime wall_{std::chrono::seconds(1'790'000'000)};
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
  uint64_t Below(uint64_t n) override { return std::uniform_int_distribution<uint64_t>(0, n - 1)(gen_); }
  uint64_t Next64() override { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

}  // namespace payoutd
