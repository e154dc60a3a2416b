#include "daemon/sd_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <string>

namespace payoutd::systemd {
namespace {

// sd_notify() itself returns 0 when NOTIFY_SOCKET is unset; > 0 only when the datagram went out.
bool Send(const std::string& state) {
  return sd_notify(/*unset_environment=*/0, state.c_str()) > 0;
}

}  // namespace

bool Ready() {
  return Send("READY=1");
}

bool Status(std::string_view text) {
  std::string state = "STATUS=";
  state.reserve(state.size() + text.size());
  // The notify protocol is newline-separated assignments: a newline in text would end STATUS early
  // and could smuggle in another assignment (e.g. "READY=1").
  for (char c : text) state += (c == '\n' || c == '\r' || c == '\0') ? ' ' : c;
  return Send(state);
}

bool Watchdog() {
  return Send("WATCHDOG=1");
}

bool Reloading() {
  return Send("RELOADING=1");
}

bool Stopping() {
  return Send("STOPPING=1");
}

std::chrono::microseconds WatchdogInterval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) <= 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(usec);
}

}  // namespace payoutd::systemd
