// Telling systemd how the daemon is doing (Type=notify, docs/operations.md#the-service): a thin
// layer over libsystemd's sd_notify(3) and sd_watchdog_enabled(3).
//
// Every call is a no-op returning false when NOTIFY_SOCKET is unset (not started by systemd, or a
// test), so the daemon calls them unconditionally. A failure to notify is never fatal: the
// functions return whether the message was sent. Thread-safe (each call is one datagram).
#pragma once

#include <chrono>
#include <string_view>

namespace payoutd::systemd {

// READY=1: recovery is done and batches are being taken. Send once, after startup (and again
// after a reload, following Reloading()).
bool Ready();
// STATUS=<text>: one line of progress shown by `systemctl status`. Line breaks become spaces.
bool Status(std::string_view text);
// WATCHDOG=1: the daemon is alive. Send at least every WatchdogInterval() / 2.
bool Watchdog();
// RELOADING=1: a SIGHUP reload started; send Ready() when it is done.
bool Reloading();
// STOPPING=1: shutdown began (SIGTERM); in-flight requests are being finished.
bool Stopping();

// The WatchdogSec= the service manager expects pings within (for this process), or 0 when the
// watchdog is not enabled.
std::chrono::microseconds WatchdogInterval();

}  // namespace payoutd::systemd
