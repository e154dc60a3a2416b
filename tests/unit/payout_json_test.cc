#include "core/gateway/payout_json.h"

#include <gtest/gtest.h>

namespace payoutd {
namespace {

Payout SamplePayout() {
  Payout p;
  p.id = "TST-223344";
  p.amount_minor = 1000000;
  p.currency = "IDR";
  p.account_number = "11223344";
  p.account_name = "Test account";
  p.operator_code = "BNK_000";
  p.method = "BANK_TRANSFER";
  p.email = "customer@test.com";
  return p;
}

TEST(PayoutJson, RequestMatchesTheSeedExampleFieldForField) {
  Payout p = SamplePayout();
  p.amount_minor = 1000000;  // 10000.00 IDR (2 minor digits) -> 10000
  EXPECT_EQ(
      BuildPayoutRequest(p, 2, "https://callback.example.com"),
      R"({"paymentRequested":{"money":{"amount":10000,"currencyCode":"IDR"}},)"
      R"("paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Test account",)"
      R"("accountNumber":"11223344"},"paymentOperatorCode":"BNK_000","emailAddress":"customer@test.com"},)"
      R"("callbackUrl":"https://callback.example.com"})");
}

TEST(PayoutJson, RequestLeavesOutEmptyEmailAndCallback) {
  Payout p = SamplePayout();
  p.email.clear();
  const std::string body = BuildPayoutRequest(p, 2, "");
  EXPECT_EQ(body.find("emailAddress"), std::string::npos);
  EXPECT_EQ(body.find("callbackUrl"), std::string::npos);
  EXPECT_NE(body.find(R"("paymentOperatorCode":"BNK_000"})"), std::string::npos);
}

TEST(PayoutJson, RequestAmountIsExactShortestDecimal) {
  Payout p = SamplePayout();
  p.currency = "USD";
  p.amount_minor = 4205;
  EXPECT_NE(BuildPayoutRequest(p, 2, "").find(R"("amount":42.05,)"), std::string::npos);
  p.amount_minor = 4250;
  EXPECT_NE(BuildPayoutRequest(p, 2, "").find(R"("amount":42.5,)"), std::string::npos);
  p.amount_minor = 5;
  EXPECT_NE(BuildPayoutRequest(p, 2, "").find(R"("amount":0.05,)"), std::string::npos);
  p.amount_minor = 9007199254740993;  // beyond double's exact integers
  EXPECT_NE(BuildPayoutRequest(p, 2, "").find(R"("amount":90071992547409.93,)"), std::string::npos);
}

TEST(PayoutJson, RequestEscapesStrings) {
  Payout p = SamplePayout();
  p.account_name = "Ann \"Q\" O\\Neil\x01 Łódź";
  EXPECT_NE(BuildPayoutRequest(p, 2, "").find(R"("accountName":"Ann \"Q\" O\\Neil\u0001 Łódź")"),
            std::string::npos);
}

TEST(PayoutJson, ParsesAmountTextExactly) {
  EXPECT_EQ(*ParseJsonAmount("42.05", 2), 4205);
  EXPECT_EQ(*ParseJsonAmount("42.5", 2), 4250);
  EXPECT_EQ(*ParseJsonAmount("10000", 2), 1000000);
  EXPECT_EQ(*ParseJsonAmount("0.1", 2), 10);
  EXPECT_EQ(*ParseJsonAmount("0", 2), 0);
  EXPECT_EQ(*ParseJsonAmount("4.2e1", 2), 4200);
  EXPECT_EQ(*ParseJsonAmount("4205E-2", 2), 4205);
  EXPECT_EQ(*ParseJsonAmount("1.500", 2), 150);  // trailing zeros beyond the minor digits are exact
  EXPECT_EQ(*ParseJsonAmount("90071992547409.93", 2), 9007199254740993);
  EXPECT_EQ(*ParseJsonAmount("1234", 0), 1234);
  EXPECT_EQ(*ParseJsonAmount("1.234", 3), 1234);
}

TEST(PayoutJson, RefusesInexactOrMalformedAmounts) {
  EXPECT_FALSE(ParseJsonAmount("42.055", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("0.5", 0).ok());
  EXPECT_FALSE(ParseJsonAmount("-1", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("01", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("1.", 2).ok());
  EXPECT_FALSE(ParseJsonAmount(".5", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("1e", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("\"1\"", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("99999999999999999999", 2).ok());
  EXPECT_FALSE(ParseJsonAmount("1e400", 2).ok());
}

TEST(PayoutJson, ParsesSeedGetResponse) {
  const std::string body = R"({
"paymentRequested": {"money": {"amount": 42.05, "currencyCode": "USD"}},
"process": {"status": "SUCCESS", "createdAt": "2021-05-19T10:57:28.313Z",
            "processedAt": "2021-05-19T10:58:28.313Z", "isTest": false},
"fee": {"amount": 0.1, "currencyCode": "USD"},
"paymentMethodResponse": {"paymentMethodCode": "BANK_TRANSFER", "idPayout": "TST-112233"}
})";
  Result<GatewayPayout> r = ParseGetResponse(body, "TST-112233", CurrencyTable::Iso4217());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->id, "TST-112233");
  EXPECT_EQ(r->status, "SUCCESS");
  EXPECT_EQ(r->created_at, "2021-05-19T10:57:28.313Z");
  EXPECT_EQ(r->processed_at, "2021-05-19T10:58:28.313Z");
  EXPECT_EQ(r->amount_minor, 4205);
  EXPECT_EQ(r->currency, "USD");
  EXPECT_TRUE(r->has_fee);
  EXPECT_EQ(r->fee_minor, 10);
  EXPECT_EQ(r->fee_currency, "USD");
  EXPECT_EQ(r->account_number, "");
}

TEST(PayoutJson, GetResponseToleratesExtraFieldsAnyOrderAndEchoedAccount) {
  const std::string body = R"({"extra":[1,{"x":null}],
"paymentMethodResponse": {"idPayout": "A-1", "more": true},
"paymentMethod": {"account": {"accountNumber": "998877", "accountName": "Z"}},
"process": {"processedAt": null, "createdAt": "c", "status": "PENDING", "isTest": true},
"paymentRequested": {"money": {"currencyCode": "JPY", "amount": 1500}}})";
  Result<GatewayPayout> r = ParseGetResponse(body, "A-1", CurrencyTable::Iso4217());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->status, "PENDING");
  EXPECT_EQ(r->processed_at, "");
  EXPECT_EQ(r->amount_minor, 1500);
  EXPECT_FALSE(r->has_fee);
  EXPECT_EQ(r->account_number, "998877");
}

TEST(PayoutJson, GetResponseLackingFieldsWeUseIsAnError) {
  const CurrencyTable& t = CurrencyTable::Iso4217();
  EXPECT_FALSE(ParseGetResponse(R"({"paymentRequested":{"money":{"amount":1,"currencyCode":"USD"}},
      "paymentMethodResponse":{"idPayout":"A"}})",
                                "A", t)
                   .ok());  // no process
  EXPECT_FALSE(
      ParseGetResponse(R"({"paymentRequested":{"money":{"amount":"1 USD","currencyCode":"USD"}},
      "process":{"status":"SUCCESS","createdAt":"c"},"paymentMethodResponse":{"idPayout":"A"}})",
                       "A", t)
          .ok());
  EXPECT_FALSE(
      ParseGetResponse(R"({"paymentRequested":{"money":{"amount":true,"currencyCode":"USD"}},
      "process":{"status":"SUCCESS","createdAt":"c"},"paymentMethodResponse":{"idPayout":"A"}})",
                       "A", t)
          .ok());
  EXPECT_FALSE(ParseGetResponse(R"({"paymentRequested":{"money":{"amount":1,"currencyCode":"USD"}},
      "process":{"createdAt":"c"},"paymentMethodResponse":{"idPayout":"A"}})",
                                "A", t)
                   .ok());  // no status
  EXPECT_FALSE(ParseGetResponse(R"({"paymentRequested":{"money":{"amount":1,"currencyCode":"USD"}},
      "process":{"status":"SUCCESS","createdAt":"c"},"paymentMethodResponse":{"idPayout":"B"}})",
                                "A", t)
                   .ok());
  EXPECT_FALSE(ParseGetResponse(R"({"paymentRequested":{"money":{"amount":1,"currencyCode":"USD"}},
      "process":{"status":"SUCCESS","createdAt":"c"},"paymentMethodResponse":{"idPayout":"A"}})"
                                "x",
                                "A", t)
                   .ok());
  EXPECT_FALSE(ParseGetResponse(
                   R"({"paymentRequested":{"money":{"amount":1,"currencyCode":"USD"}},)", "A", t)
                   .ok());
  EXPECT_FALSE(ParseGetResponse("<html>502 Bad Gateway</html>", "A", t).ok());
  EXPECT_FALSE(ParseGetResponse("", "A", t).ok());
}

TEST(PayoutJson, GetResponseTakesAmountsQuotedAsStringsExactly) {
  Result<GatewayPayout> r = ParseGetResponse(
      R"({"paymentRequested":{"money":{"amount":"42.05","currencyCode":"USD"}},
          "process":{"status":"SUCCESS"},"fee":{"amount":"0.10","currencyCode":"USD"},
          "paymentMethodResponse":{"idPayout":"A"}})",
      "A", CurrencyTable::Iso4217());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->amount_minor, 4205);
  EXPECT_EQ(r->created_at, "");  // createdAt is not needed to act on a status
  EXPECT_TRUE(r->has_fee);
  EXPECT_EQ(r->fee_minor, 10);
  EXPECT_EQ(r->fee_problem, "");
}

// The status is what decides the payout; a fee we cannot keep exactly must not hide it.
TEST(PayoutJson, UnusableFeeKeepsTheStatusAndSaysWhy) {
  const CurrencyTable& t = CurrencyTable::Iso4217();
  auto parse = [&](std::string_view fee) {
    std::string body = R"({"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},
        "process":{"status":"SUCCESS","createdAt":null,"processedAt":"p"},)";
    body += fee;
    body += R"(,"paymentMethodResponse":{"idPayout":"A"}})";
    return ParseGetResponse(body, "A", t);
  };
  Result<GatewayPayout> r = parse(R"("fee":{"amount":0.125,"currencyCode":"USD"})");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->status, "SUCCESS");
  EXPECT_FALSE(r->has_fee);
  EXPECT_EQ(r->fee_problem, "fee 0.125 USD: amount has more decimals than the currency allows");

  r = parse(R"("fee":{"amount":1,"currencyCode":"XYZ"})");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(r->has_fee);
  EXPECT_EQ(r->fee_problem, "fee 1 XYZ has an unknown currency");

  r = parse(R"("fee":{"amount":1})");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(r->has_fee);
  EXPECT_EQ(r->fee_problem, "fee 1 ? lacks amount or currencyCode");

  r = parse(R"("fee":{"amount":"1\n2","currencyCode":"USD"})");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(r->has_fee);
  EXPECT_EQ(r->fee_problem.find('\n'),
            std::string::npos);  // no control characters reach a log or CSV

  r = parse(R"("fee":null)");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(r->has_fee);
  EXPECT_EQ(r->fee_problem, "");
}

TEST(PayoutJson, ParsesSeedPostResponse) {
  const std::string body = R"({"paymentRequested":{"money":{"amount":10000,"currencyCode":"IDR"}},
"paymentMethodResponse":{"paymentMethodCode":"BANK_TRANSFER","idPayout":"TST-223344"}})";
  Result<GatewayPayout> r = ParsePostResponse(body, "TST-223344", CurrencyTable::Iso4217());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->amount_minor, 1000000);
  EXPECT_EQ(r->currency, "IDR");
  EXPECT_FALSE(
      ParsePostResponse(R"({"paymentRequested":{}})", "TST-223344", CurrencyTable::Iso4217()).ok());
}

TEST(PayoutJson, ErrorMessageComesFromErrorObjectOrText) {
  EXPECT_EQ(
      ErrorMessageFromBody(R"({"error":{"code":"INVALID_ACCOUNT","message":"account closed"}})"),
      "INVALID_ACCOUNT: account closed");
  EXPECT_EQ(ErrorMessageFromBody(R"({"error":{"message":"bad amount"}})"), "bad amount");
  EXPECT_EQ(ErrorMessageFromBody("plain\ntext refusal"), "plain text refusal");
  const std::string long_text(500, 'x');
  EXPECT_EQ(ErrorMessageFromBody(long_text, 20), std::string(20, 'x') + "...");
  // A cut never splits a UTF-8 sequence.
  EXPECT_EQ(ErrorMessageFromBody("abcdefghiŁ", 10), "abcdefghi...");
}

}  // namespace
}  // namespace payoutd
