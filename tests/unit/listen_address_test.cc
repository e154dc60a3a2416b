// The one parser of "host:port" listen addresses (core/base/listen_address.h), which the
// configuration, the metrics endpoint and the callback receiver share.
#include "core/base/listen_address.h"

#include <gtest/gtest.h>

namespace payoutd {
namespace {

TEST(ParseListenAddress, ReadsAnIpv4AddressAndPort) {
  Result<ListenAddress> a = ParseListenAddress("127.0.0.1:9464");
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9464);
  EXPECT_EQ(a->ToString(), "127.0.0.1:9464");
}

TEST(ParseListenAddress, ReadsAName) {
  Result<ListenAddress> a = ParseListenAddress("localhost:8443");
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->host, "localhost");
  EXPECT_EQ(a->port, 8443);
}

TEST(ParseListenAddress, ReadsIpv6InBracketsAndWritesThemBack) {
  for (const char* text : {"[::1]:9464", "[::]:9464"}) {
    Result<ListenAddress> a = ParseListenAddress(text);
    ASSERT_TRUE(a.ok()) << text << ": " << a.error();
    EXPECT_EQ(a->host, std::string(text).substr(1, std::string(text).find(']') - 1)) << text;
    EXPECT_EQ(a->port, 9464) << text;
    EXPECT_EQ(a->ToString(), text);
  }
}

TEST(ParseListenAddress, PortZeroMeansAnyFreePort) {
  Result<ListenAddress> a = ParseListenAddress("0.0.0.0:0");
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->port, 0);
}

TEST(ParseListenAddress, WritesThePortInPlainDecimal) {
  Result<ListenAddress> a = ParseListenAddress("127.0.0.1:009464");
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->ToString(), "127.0.0.1:9464");
}

TEST(ParseListenAddress, SaysWhatIsWrong) {
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c : {
           Case{"9464", "expected host:port, e.g. 127.0.0.1:9464"},
           Case{"localhost", "expected host:port, e.g. 127.0.0.1:9464"},
           Case{":9464", "expected host:port, e.g. 127.0.0.1:9464"},
           Case{"127.0.0.1 :9464", "expected host:port, e.g. 127.0.0.1:9464"},
           Case{"127.0.0.1:\n9464", "expected host:port, e.g. 127.0.0.1:9464"},
           Case{"[::1:9464", "expected host:port, e.g. [::1]:9464"},
           Case{"[]:9464", "expected host:port, e.g. [::1]:9464"},
           Case{"::1:9464", "an IPv6 host must be written in brackets, e.g. [::1]:9464"},
           Case{"127.0.0.1:", "expected a port from 0 to 65535 after ':'"},
           Case{"127.0.0.1:65536", "expected a port from 0 to 65535 after ':'"},
           Case{"127.0.0.1:94s", "expected a port from 0 to 65535 after ':'"},
           Case{"127.0.0.1:-1", "expected a port from 0 to 65535 after ':'"},
       }) {
    Result<ListenAddress> a = ParseListenAddress(c.text);
    ASSERT_FALSE(a.ok()) << c.text;
    EXPECT_EQ(a.error(), c.reason) << c.text;
  }
}

}  // namespace
}  // namespace payoutd
