// The configuration's http(s) URLs (config/url.h): what is accepted, and what operators are shown.
#include "config/url.h"

#include <gtest/gtest.h>

namespace payoutd {
namespace {

TEST(ParseHttpUrl, SplitsSchemeAuthorityAndRest) {
  Result<UrlParts> u = ParseHttpUrl("HTTPS://gw.example.com:8443/v1/", false);
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->authority, "gw.example.com:8443");
  EXPECT_EQ(u->rest, "/v1/");
}

TEST(ParseHttpUrl, AcceptsAnIpv6HostInBrackets) {
  EXPECT_TRUE(ParseHttpUrl("http://[::1]:8080/v1", false).ok());
  EXPECT_TRUE(ParseHttpUrl("http://[::1]", false).ok());
}

TEST(ParseHttpUrl, QueryOnlyWhereAllowed) {
  EXPECT_TRUE(ParseHttpUrl("https://me.example.com/cb?k=v", true).ok());
  Result<UrlParts> u = ParseHttpUrl("https://gw.example.com/v1?k=v", false);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error(), "the base URL must not have a query or fragment");
}

TEST(ParseHttpUrl, SaysWhatIsWrongWithoutRepeatingCredentials) {
  struct Case {
    const char* url;
    const char* reason;
  };
  for (const Case& c : {
           Case{"", "expected an http:// or https:// URL, got nothing"},
           Case{"ftp://x", "expected an http:// or https:// URL"},
           Case{"gw.example.com", "expected an http:// or https:// URL"},
           Case{"http://a b", "a URL must not contain spaces or control characters"},
           Case{"http://", "expected a host in the URL"},
           Case{"http://[]:80", "expected a host in the URL"},
           Case{"http://[::1]x", "expected a host in the URL"},
           Case{"http://x:", "expected a port number after ':'"},
           Case{"http://x:0", "expected a port from 1 to 65535 in the URL"},
           Case{"http://x:65536", "expected a port from 1 to 65535 in the URL"},
       }) {
    Result<UrlParts> u = ParseHttpUrl(c.url, false);
    ASSERT_FALSE(u.ok()) << c.url;
    EXPECT_EQ(u.error(), c.reason) << c.url;
    EXPECT_EQ(u.code(), StatusCode::kInvalidArgument) << c.url;
  }
  Result<UrlParts> u = ParseHttpUrl("https://user:hunter2@gw.example.com", false);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error().find("hunter2"), std::string::npos) << u.error();
}

TEST(RedactUrl, HidesTheQueryAndFragment) {
  EXPECT_EQ(RedactUrl("https://cb.example.com/hook?token=abc123"),
            "https://cb.example.com/hook?...");
  EXPECT_EQ(RedactUrl("https://cb.example.com/hook#abc123"), "https://cb.example.com/hook?...");
  EXPECT_EQ(RedactUrl("https://gw.example.com/v1"), "https://gw.example.com/v1");
  EXPECT_EQ(RedactUrl(""), "");
  EXPECT_EQ(RedactUrl("https://user:pw@gw.example.com"), "(invalid)");
}

}  // namespace
}  // namespace payoutd
