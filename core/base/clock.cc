#include "core/base/clock.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/base/status.h"

namespace payoutd {
namespace {

// The wait that is current when a completion runs is the only one whose `fn` may run: a
// completion Asio had already queued when the timer was armed again (or cancelled) finds a newer
// generation and does nothing.
struct WaitState {
  uint64_t generation = 0;
  std::function<void()> fn;
};

class AsioTimer final : public Timer {
 public:
  explicit AsioTimer(boost::asio::io_context& io)
      : timer_(io), state_(std::make_shared<WaitState>()) {}
  ~AsioTimer() override { Cancel(); }

  void WaitUntil(SteadyTime at, std::function<void()> fn) override {
    const uint64_t generation = ++state_->generation;
    state_->fn = std::move(fn);
    timer_.expires_at(at);
    timer_.async_wait([state = state_, generation](const boost::system::error_code& ec) {
      if (ec || state->generation != generation || !state->fn) return;
      auto fn = std::move(state->fn);
      state->fn = nullptr;
      fn();
    });
  }

  void Cancel() override {
    ++state_->generation;
    state_->fn = nullptr;
    timer_.cancel();
  }

 private:
  boost::asio::steady_timer timer_;
  std::shared_ptr<WaitState> state_;
};

}  // namespace

std::unique_ptr<Timer> SystemClock::NewTimer(boost::asio::io_context& io) {
  return std::make_unique<AsioTimer>(io);
}

class FakeClock::FakeTimer final : public Timer {
 public:
  FakeTimer(FakeClock& clock, boost::asio::io_context& io)
      : clock_(clock), io_(io), state_(std::make_shared<WaitState>()) {}
  ~FakeTimer() override { Cancel(); }

  void WaitUntil(SteadyTime at, std::function<void()> fn) override {
    Cancel();
    state_->fn = std::move(fn);
    if (at <= clock_.now_) return Fire();
    key_ = FakeClock::Key{at, clock_.next_seq_++};
    clock_.waits_.emplace(*key_, this);
  }

  void Cancel() override {
    ++state_->generation;
    state_->fn = nullptr;
    if (key_) clock_.waits_.erase(*key_);
    key_.reset();
  }

  // Due: the completion is posted, as Asio would, and runs only if nothing re-armed us meanwhile.
  void Fire() {
    key_.reset();
    boost::asio::post(io_, [state = state_, generation = state_->generation] {
      if (state->generation != generation || !state->fn) return;
      auto fn = std::move(state->fn);
      state->fn = nullptr;
      fn();
    });
  }

 private:
  FakeClock& clock_;
  boost::asio::io_context& io_;
  std::shared_ptr<WaitState> state_;
  std::optional<FakeClock::Key> key_;
};

FakeClock::FakeClock() = default;

FakeClock::~FakeClock() {
  // Timers must not outlive their clock.
  PAYOUTD_CHECK(waits_.empty());
}

std::unique_ptr<Timer> FakeClock::NewTimer(boost::asio::io_context& io) {
  return std::make_unique<FakeTimer>(*this, io);
}

void FakeClock::AdvanceTo(SteadyTime at) {
  if (at > now_) now_ = at;
  while (!waits_.empty() && waits_.begin()->first.first <= now_) {
    FakeTimer* timer = waits_.begin()->second;
    waits_.erase(waits_.begin());
    timer->Fire();
  }
}

std::optional<SteadyTime> FakeClock::NextDeadline() const {
  if (waits_.empty()) return std::nullopt;
  return waits_.begin()->first.first;
}

}  // namespace payoutd
