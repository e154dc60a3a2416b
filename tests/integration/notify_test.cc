// What `payoutd run` tells systemd (docs/operations.md, Type=notify): READY=1 once recovery is
// done, STATUS= with progress, WATCHDOG=1 while WatchdogSec is set, RELOADING=1 then READY=1 on
// SIGHUP, STOPPING=1 on SIGTERM. The test stands in for systemd: NOTIFY_SOCKET names a datagram
// socket it reads, WATCHDOG_USEC asks for the watchdog.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/batch_expectations.h"
#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// The systemd end of NOTIFY_SOCKET: a datagram socket; each datagram is one notification.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof addr.sun_path) throw std::runtime_error("notify socket");
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("bind " + path_);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  // Reads notifications until one contains `what` (true) or the timeout passes (false).
  bool WaitFor(const std::string& what, milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      received_.emplace_back(buf, static_cast<size_t>(n));
      if (received_.back().find(what) != std::string::npos) return true;
    }
  }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& received() const { return received_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> received_;
};

TEST(SystemdNotify, ReadyAfterRecoveryThenStatusWatchdogReloadingAndStopping) {
  SandboxProcess sandbox({"--final-after-ms", "0"});
  TempDir dir;
  DaemonConfig cfg = DaemonConfig::For(sandbox);
  const std::string config = cfg.Write(dir.path());
  DaemonProcess daemon(config);
  const std::string spool = cfg.spool_dir(dir.path());
  const auto rows = SandboxRows("NTF", 12);

  // A file claimed but not recorded when the last run died: recovery has work to do.
  daemon.Start({"PAYOUTD_FAILPOINTS=spool.claimed=crash"});
  ASSERT_TRUE(daemon.WaitReady()) << daemon.log();
  DropBatch(spool, "notify", PayoutCsv(rows));
  ASSERT_EQ(daemon.Wait(seconds(30)), 128 + SIGKILL) << daemon.log();

  NotifySocket systemd(dir.path() + "/notify.sock");
  daemon.Start({"NOTIFY_SOCKET=" + systemd.path(), "WATCHDOG_USEC=200000"});
  ASSERT_TRUE(systemd.WaitFor("READY=1", seconds(20))) << daemon.log();
  EXPECT_THAT(daemon.log(), HasSubstr("spool.retake file=notify.csv")) << "READY=1 before recovery";

  // WATCHDOG=1 at half the interval (100 ms): a few of them come within a second or two.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(systemd.WaitFor("WATCHDOG=1", seconds(5))) << i;
  ASSERT_TRUE(systemd.WaitFor("1 batch(es) done", seconds(30))) << daemon.log();
  ASSERT_TRUE(WaitForFile(spool + "/done/notify.csv", seconds(10)));
  ExpectReports("notify", rows, ReadResultsCsv(spool + "/done/notify.results.csv"),
                ReadSummary(spool + "/done/notify.summary.json"));

  daemon.Signal(SIGHUP);
  ASSERT_TRUE(systemd.WaitFor("RELOADING=1", seconds(10))) << daemon.log();
  ASSERT_TRUE(systemd.WaitFor("READY=1", seconds(10))) << daemon.log();
  EXPECT_THAT(daemon.log(), HasSubstr("config.reloaded"));

  daemon.Signal(SIGTERM);
  ASSERT_TRUE(systemd.WaitFor("STOPPING=1", seconds(10))) << daemon.log();
  EXPECT_EQ(daemon.Wait(seconds(20)), 0) << daemon.log();
}

}  // namespace
}  // namespace payoutd::testing
