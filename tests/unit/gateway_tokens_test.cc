// The client's JWTs in fake time: a token is reused while comfortably valid and renewed (new jti,
// later exp) before it would expire on the way, for instance for a call that waited out an outage.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "core/gateway/gateway_client.h"
#include "core/gateway/jwt.h"
#include "tests/support/simulated_gateway.h"

namespace payoutd {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using testing::RunInFakeTime;
using testing::SimulatedGateway;

constexpr char kSecret[] = "token-test-secret";

JwtClaims Claims(const std::string& authorization, FakeClock& clock) {
  const std::string token = authorization.substr(authorization.find(' ') + 1);
  const int64_t now =
      std::chrono::duration_cast<seconds>(clock.WallNow().time_since_epoch()).count();
  // Verified against the issue time it claims, so that an expired token still shows its claims.
  auto claims = VerifyJwt(token, kSecret, now - 3600);
  EXPECT_TRUE(claims.ok()) << claims.error();
  return claims.ok() ? *claims : JwtClaims{};
}

TEST(GatewayTokens, ACallThatWaitsPastTheTokensLifetimeSendsAFreshToken) {
  FakeClock clock;
  boost::asio::io_context io;
  sandbox::SandboxOptions so;
  so.auth = false;  // the test reads the tokens itself
  so.callbacks = false;
  SimulatedGateway gateway(io, clock, so);
  GatewayOptions o;
  o.base_url = "http://gateway.test";
  o.merchant_code = "M-1";
  o.secret = kSecret;
  o.token_ttl = minutes(10);
  SystemRandom random(7);
  auto client = GatewayClient::Create(io, o, clock, random, nullptr, gateway.Transport());
  ASSERT_TRUE(client.ok()) << client.error();
  // The gateway refuses connections for 30 minutes after the first POST: the call keeps waiting
  // (the circuit opens), and its next request goes out long after the first token expired.
  gateway.Outage(SimulatedGateway::Fault::kRefuse, clock.Now() + seconds(1),
                 clock.Now() + minutes(30));
  Payout p;
  p.id = "TOK-1";
  p.amount_minor = 1000;
  p.currency = "USD";
  p.account_number = "1234";
  p.account_name = "Ann";
  p.operator_code = "BNK";
  p.method = "BANK_TRANSFER";
  std::optional<SubmitResult> result;
  clock.Advance(seconds(2));  // inside the outage from the start
  (*client)->Submit(p, [&](SubmitResult r) { result = r; });
  ASSERT_TRUE(RunInFakeTime(
      io, clock, [&] { return result.has_value(); }, minutes(60)));
  EXPECT_EQ(result->outcome, SubmitResult::Outcome::kCreated);

  const auto& sent = gateway.sent();
  ASSERT_GE(sent.size(), 3u);
  const JwtClaims first = Claims(sent.front().authorization, clock);
  const JwtClaims second = Claims(sent[1].authorization, clock);
  const JwtClaims last = Claims(sent.back().authorization, clock);
  EXPECT_EQ(second.jti, first.jti)
      << "reused while comfortably valid (the second try is a second later)";
  EXPECT_NE(last.jti, first.jti) << "a fresh token after the first expired";
  EXPECT_GT(last.exp, first.exp);
  EXPECT_EQ(last.exp - last.iat, 600);
  EXPECT_GT(std::chrono::duration_cast<seconds>(sent.back().at - sent.front().at).count(), 600)
      << "the last request went out after the first token's lifetime";
  for (const auto& s : sent) {
    const JwtClaims c = Claims(s.authorization, clock);
    const int64_t at = std::chrono::duration_cast<seconds>(
                           (clock.WallNow() - (clock.Now() - s.at)).time_since_epoch())
                           .count();
    EXPECT_GT(c.exp, at) << "a request carried a token that had expired";
  }
  (*client)->Shutdown();
  RunInFakeTime(
      io, clock, [&] { return (*client)->idle(); }, minutes(1));
}

}  // namespace
}  // namespace payoutd
