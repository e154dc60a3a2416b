// `payoutd check`'s test of the listen addresses (config/listen_check.h) against this machine's
// real network configuration: what can never be served is refused, what could be is not.
#include "config/listen_check.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace payoutd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

bool HaveIpv6Loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// An IPv4 address that is not this machine's, from the ranges reserved for documentation (some
// test machines use one of them for themselves); empty when every candidate is local.
std::string ForeignAddress() {
  for (const char* candidate : {"203.0.113.7", "198.51.100.7", "192.0.2.77"}) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, candidate, &a.sin_addr);
    bool local = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (!local) return candidate;
  }
  return "";
}

TEST(ListenCheck, AcceptsLoopbackAnyAddressAndAnOsChosenPort) {
  for (const char* ok : {"127.0.0.1:9464", "0.0.0.0:9464", "127.0.0.1:0", "localhost:9464"}) {
    Status st = CheckListenAddress("metrics.listen", ok);
    EXPECT_TRUE(st.ok()) << ok << ": " << st.message();
  }
  EXPECT_TRUE(CheckListenAddress("metrics.listen", "").ok()) << "off";
}

TEST(ListenCheck, AcceptsIpv6LoopbackAndAnyWhereTheHostHasIpv6) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 on this machine";
  for (const char* ok : {"[::1]:9464", "[::]:9464"}) {
    Status st = CheckListenAddress("metrics.listen", ok);
    EXPECT_TRUE(st.ok()) << ok << ": " << st.message();
  }
}

TEST(ListenCheck, AcceptsAPortInUseBecauseTheRunningDaemonMayHoldIt) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  Status st =
      CheckListenAddress("metrics.listen", "127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  ::close(fd);
  EXPECT_TRUE(st.ok()) << st.message();
}

TEST(ListenCheck, RefusesAnAddressOfAnotherHostNamingKeyAndAddress) {
  const std::string foreign = ForeignAddress();
  if (foreign.empty()) GTEST_SKIP() << "every candidate address is this machine's";
  Status st = CheckListenAddress("metrics.listen", foreign + ":9464");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "metrics.listen: " + foreign +
                              ":9464 can never be listened on: not an address of this host");
}

TEST(ListenCheck, RefusesANameThatDoesNotResolve) {
  Status st = CheckListenAddress("metrics.listen", "no-such-host.invalid:9464");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), AllOf(HasSubstr("metrics.listen: no-such-host.invalid:9464"),
                                  HasSubstr("does not resolve")));
}

TEST(ListenCheck, RefusesAPrivilegedPortTheServiceCannotBind) {
  int lowest = 1024;
  std::ifstream("/proc/sys/net/ipv4/ip_unprivileged_port_start") >> lowest;
  if (lowest <= 80) GTEST_SKIP() << "this host lets anyone bind port 80";
  Status st = CheckListenAddress("metrics.listen", "127.0.0.1:80");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("ports below " + std::to_string(lowest)));
}

TEST(ListenCheck, ChecksBothListenersAndReportsEachAtFault) {
  const std::string foreign = ForeignAddress();
  if (foreign.empty()) GTEST_SKIP() << "every candidate address is this machine's";
  Config c;
  c.metrics.listen = foreign + ":9464";
  c.callbacks.listen = "no-such-host.invalid:8080";
  Status st = CheckListenAddresses(c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), AllOf(HasSubstr("metrics.listen: " + foreign + ":9464"),
                                  HasSubstr("\ncallbacks.listen: no-such-host.invalid:8080")));
  c.metrics.listen = "127.0.0.1:0";
  c.callbacks.listen = "";
  EXPECT_TRUE(CheckListenAddresses(c).ok());
}

}  // namespace
}  // namespace payoutd
