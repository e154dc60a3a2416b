#include "core/gateway/jwt.h"

#include <gtest/gtest.h>

namespace payoutd {
namespace {

// Computed independently with Python's hmac/hashlib/base64 over the same claims:
//   h = b64url('{"alg":"HS256","typ":"JWT"}'); c = b64url(claims json in our field order)
//   sig = b64url(hmac.new(b'test-secret-123', (h+'.'+c).encode(), hashlib.sha256).digest())
constexpr char kKnownToken[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJvcGVyYXRpb25zIjpbIlBPU1QgL3BheW91dHMvVFNULTIyMzM0NCIsIkdFVCAvcGF5b3V0cy9UU1QtMjIzMzQ0Il0s"
    "ImlhdCI6MTYyMjYyNzgzOCwiZXhwIjoxNjIyNjI4NDM4LCJqdGkiOiJkN2I5MjlhOS1hNzZjLTRlYTUtOTBlNS1mZjdj"
    "M2RmMTk1NGIiLCJzdWIiOiJZT1VSX01FUkNIQU5UX0NPREUifQ."
    "pMqp6CvqYDGnsO0snnNJ2PDUFsNNT8JGpwGsfUdONx4";
constexpr char kKnownSecret[] = "test-secret-123";

JwtClaims KnownClaims() {
  JwtClaims c;
  c.operations = {"POST /payouts/TST-223344", "GET /payouts/TST-223344"};
  c.iat = 1622627838;
  c.exp = 1622628438;
  c.jti = "d7b929a9-a76c-4ea5-90e5-ff7c3df1954b";
  c.sub = "YOUR_MERCHANT_CODE";
  return c;
}

TEST(Base64Url, EncodesWithoutPaddingInUrlAlphabet) {
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("foob"), "Zm9vYg");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff\xbf"), "-_-_");
}

TEST(Base64Url, DecodeRoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 40; ++i) {
    bytes.push_back(static_cast<char>(i * 37 + 200));
    Result<std::string> back = Base64UrlDecode(Base64UrlEncode(bytes));
    ASSERT_TRUE(back.ok()) << back.error();
    EXPECT_EQ(*back, bytes);
  }
}

TEST(Base64Url, DecodeRejectsPaddingForeignCharactersAndBadLengths) {
  EXPECT_FALSE(Base64UrlDecode("Zg==").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm+v").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm/v").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm9vY").ok());  // 5 chars: no encoding has that length
  EXPECT_FALSE(Base64UrlDecode("Zh").ok());     // non-zero trailing bits
}

TEST(Jwt, SignMatchesIndependentlyComputedHmac) {
  EXPECT_EQ(SignJwt(KnownClaims(), kKnownSecret), kKnownToken);
}

TEST(Jwt, VerifyAcceptsValidTokenAndReturnsClaims) {
  Result<JwtClaims> c = VerifyJwt(kKnownToken, kKnownSecret, 1622627900);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(*c, KnownClaims());
  EXPECT_TRUE(JwtAllows(*c, "GET /payouts/TST-223344"));
  EXPECT_FALSE(JwtAllows(*c, "GET /payouts/TST-22334"));
}

TEST(Jwt, VerifyRefusesWrongSecret) {
  EXPECT_FALSE(VerifyJwt(kKnownToken, "other-secret", 1622627900).ok());
}

TEST(Jwt, VerifyRefusesExpiredToken) {
  Result<JwtClaims> c = VerifyJwt(kKnownToken, kKnownSecret, 1622628438);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("expired"), std::string::npos);
  EXPECT_TRUE(VerifyJwt(kKnownToken, kKnownSecret, 1622628437).ok());
}

TEST(Jwt, VerifyRefusesTamperedSignature) {
  std::string t = kKnownToken;
  t.back() = t.back() == 'x' ? 'y' : 'x';
  EXPECT_FALSE(VerifyJwt(t, kKnownSecret, 1622627900).ok());
  std::string truncated(kKnownToken, sizeof(kKnownToken) - 3);
  EXPECT_FALSE(VerifyJwt(truncated, kKnownSecret, 1622627900).ok());
}

TEST(Jwt, VerifyRefusesTamperedPayload) {
  JwtClaims more = KnownClaims();
  more.operations.push_back("POST /payouts/OTHER");
  std::string forged = SignJwt(more, "attacker-secret");
  std::string known = kKnownToken;
  // Graft the forged claims onto the known header and signature.
  size_t d1 = known.find('.'), d2 = known.rfind('.');
  size_t f1 = forged.find('.'), f2 = forged.rfind('.');
  std::string spliced =
      known.substr(0, d1 + 1) + forged.substr(f1 + 1, f2 - f1 - 1) + known.substr(d2);
  EXPECT_FALSE(VerifyJwt(spliced, kKnownSecret, 1622627900).ok());
}

TEST(Jwt, VerifyRefusesOtherAlgorithms) {
  std::string none_header = Base64UrlEncode(R"({"alg":"none","typ":"JWT"})");
  std::string known = kKnownToken;
  std::string t = none_header + known.substr(known.find('.'));
  EXPECT_FALSE(VerifyJwt(t, kKnownSecret, 1622627900).ok());
  EXPECT_FALSE(VerifyJwt("a.b", kKnownSecret, 1622627900).ok());
  EXPECT_FALSE(VerifyJwt("a.b.c.d", kKnownSecret, 1622627900).ok());
}

TEST(Jwt, SignThenVerifyRoundTripsEscapedStrings) {
  SystemRandom random(7);
  JwtClaims c = NewJwtClaims({"POST /payouts/A\"B\\C"}, "M\n1", 1000, 600, random);
  EXPECT_EQ(c.exp, 1600);
  Result<JwtClaims> back = VerifyJwt(SignJwt(c, "s"), "s", 1001);
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(*back, c);
}

TEST(Uuid, IsVersion4Variant1AndFresh) {
  SystemRandom random(42);
  std::string a = NewUuidV4(random), b = NewUuidV4(random);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[8], '-');
  EXPECT_EQ(a[13], '-');
  EXPECT_EQ(a[14], '4');
  EXPECT_EQ(a[18], '-');
  EXPECT_TRUE(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b') << a;
  EXPECT_EQ(a[23], '-');
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace payoutd
