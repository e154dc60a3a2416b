// The optional local receiver of the gateway's callbacks (callbacks.listen). A callback is only a
// hint: it is answered 200 at once and makes the engine GET that payout soon; it never sets a
// status by itself. Bodies over 64 KiB are refused (413), bad JSON gets 400, and an unknown id gets
// 200 and is only counted.
//
// Threading: on the io_context's thread (asserted in debug and sanitizer builds): Create(), Stop()
// and every request's handling, including `nudge`.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "core/base/status.h"

namespace payoutd {

class Metrics;

class CallbackReceiver {
 public:
  // `nudge(id)` returns false when the id is unknown (or not waiting for a status).
  static Result<std::unique_ptr<CallbackReceiver>> Create(
      boost::asio::io_context& io, const std::string& listen,
      std::function<bool(const std::string&)> nudge, Metrics* metrics);
  virtual ~CallbackReceiver() = default;
  virtual int port() const = 0;
  virtual void Stop() = 0;

  static constexpr size_t kMaxBody = 64 * 1024;
};

// The payout id a callback body names (paymentMethodResponse.idPayout, else idPayout), or an error
// when the body is not JSON or names none.
Result<std::string> CallbackPayoutId(const std::string& body);

}  // namespace payoutd
