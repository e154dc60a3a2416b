// Everything payoutd reads from the gateway is untrusted text: the POST and GET bodies, the error
// bodies of refusals and the Retry-After header. Any bytes must give a value or an error, never a
// crash, hang, leak or undefined behaviour; and what is accepted must keep the promises of
// core/payout_json.h and core/retry_policy.h (checked with __builtin_trap so libFuzzer reports
// it). The input is used whole as a body, so corpus files are plain gateway answers.
#include <simdjson.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/base/json_text.h"
#include "core/gateway/gateway_client.h"
#include "core/gateway/payout_json.h"
#include "core/gateway/retry_policy.h"
#include "core/money/money.h"
#include "tests/fuzz/fuzz_accepted.h"

namespace {

using payoutd::GatewayPayout;
using payoutd::Result;

uint64_t& g_posts = payoutd_fuzz::AcceptedCounter("POST bodies");
uint64_t& g_gets = payoutd_fuzz::AcceptedCounter("GET bodies");
uint64_t& g_fees = payoutd_fuzz::AcceptedCounter("fees");
uint64_t& g_retry_after = payoutd_fuzz::AcceptedCounter("Retry-After values");

// The id the corpus's answers carry; a mutated id exercises the "another idPayout" refusal.
constexpr std::string_view kExpectedId = "TST-112233";

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

// ISO 4217 plus one 9-digit currency (config's upper bound for minor_units), where amounts come
// closest to int64's limit.
const payoutd::CurrencyTable& Currencies() {
  static const payoutd::CurrencyTable table =
      payoutd::CurrencyTable::Iso4217().WithOverrides({{"XNN", 9}});
  return table;
}

int DigitsOf(std::string_view currency) {
  std::optional<int> digits = Currencies().MinorUnits(currency);
  Require(digits.has_value());  // an accepted answer names a known currency
  return *digits;
}

// Fit for a log line or a CSV cell, as payout_json.h promises of text it passes on.
bool NoControlCharacters(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool ValidUtf8(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size());
}

void CheckAmount(int64_t minor, int digits) {
  // ParseJsonAmount refuses negatives; zero is not refused (payout_json.h does not promise more).
  Require(minor >= 0);
  Result<int64_t> back = payoutd::ParseJsonAmount(payoutd::FormatJsonAmount(minor, digits), digits);
  Require(back.ok() && *back == minor);
}

// The answer a gateway would give for `p`, written with payoutd's own JSON writer.
std::string Echo(const GatewayPayout& p) {
  std::string b = R"({"paymentRequested":{"money":{"amount":)";
  b += payoutd::FormatJsonAmount(p.amount_minor, DigitsOf(p.currency));
  b += R"(,"currencyCode":)";
  payoutd::AppendJsonString(b, p.currency);
  b += R"(}},"process":{"status":)";
  payoutd::AppendJsonString(b, p.status);
  b += R"(,"createdAt":)";
  payoutd::AppendJsonString(b, p.created_at);
  if (!p.processed_at.empty()) {
    b += R"(,"processedAt":)";
    payoutd::AppendJsonString(b, p.processed_at);
  }
  b += "}";
  if (p.has_fee) {
    b += R"(,"fee":{"amount":)";
    b += payoutd::FormatJsonAmount(p.fee_minor, DigitsOf(p.fee_currency));
    b += R"(,"currencyCode":)";
    payoutd::AppendJsonString(b, p.fee_currency);
    b += "}";
  }
  if (!p.account_number.empty()) {
    b += R"(,"paymentMethod":{"account":{"accountNumber":)";
    payoutd::AppendJsonString(b, p.account_number);
    b += "}}";
  }
  b += R"(,"paymentMethodResponse":{"idPayout":)";
  payoutd::AppendJsonString(b, p.id);
  b += "}}";
  return b;
}

bool SameAnswer(const GatewayPayout& a, const GatewayPayout& b) {
  return a.id == b.id && a.status == b.status && a.created_at == b.created_at &&
         a.processed_at == b.processed_at && a.has_fee == b.has_fee && a.fee_minor == b.fee_minor &&
         a.fee_currency == b.fee_currency && a.fee_problem == b.fee_problem &&
         a.amount_minor == b.amount_minor && a.currency == b.currency &&
         a.account_number == b.account_number;
}

void CheckAccepted(const GatewayPayout& p) {
  Require(p.id == kExpectedId);
  CheckAmount(p.amount_minor, DigitsOf(p.currency));
  if (p.has_fee) {
    ++g_fees;
    Require(p.fee_problem.empty());
    CheckAmount(p.fee_minor, DigitsOf(p.fee_currency));
  } else {
    Require(p.fee_minor == 0 && p.fee_currency.empty());
  }
  // fee_problem quotes the gateway's text: cleaned and capped (200 bytes plus "...").
  Require(NoControlCharacters(p.fee_problem) && p.fee_problem.size() <= 203);
  // What we read, written back by payoutd's JSON writer, reads back the same: the parser and
  // the writer agree on escaping and on amounts.
  Result<GatewayPayout> again = payoutd::ParseGetResponse(Echo(p), p.id, Currencies());
  Require(again.ok());
  GatewayPayout expected = p;
  expected.fee_problem.clear();  // an unusable fee is not echoed
  Require(SameAnswer(*again, expected));
}

void FuzzBodies(std::string_view body) {
  Result<GatewayPayout> post = payoutd::ParsePostResponse(body, kExpectedId, Currencies());
  if (post.ok()) {
    ++g_posts;
    CheckAccepted(*post);
  } else {
    Require(!post.error().empty());
  }
  Result<GatewayPayout> get = payoutd::ParseGetResponse(body, kExpectedId, Currencies());
  if (get.ok()) {
    ++g_gets;
    CheckAccepted(*get);
    // GET needs all POST needs and process.status too; both read the same fields the same way.
    Require(post.ok() && SameAnswer(*post, *get));
  } else {
    Require(!get.error().empty());
  }
}

void CheckErrorMessage(std::string_view body, size_t max_len) {
  const std::string m = payoutd::ErrorMessageFromBody(body, max_len);
  Require(NoControlCharacters(m));
  Require(m.size() <= max_len + 3);
  if (m.size() > max_len) Require(m.ends_with("..."));
  // The cut never splits a UTF-8 sequence; unescaping never makes valid text invalid.
  if (ValidUtf8(body)) Require(ValidUtf8(m));
}

void FuzzRetryAfter(std::string_view value) {
  if (value.size() > 64) return;  // a header value; longer inputs only repeat the same paths
  const payoutd::WallTime now{std::chrono::seconds(1'790'000'000)};
  std::optional<payoutd::Duration> wait = payoutd::ParseRetryAfter(value, now);
  if (!wait) return;
  ++g_retry_after;
  Require(*wait >= payoutd::Duration::zero() && *wait <= std::chrono::hours(1));
}

void FuzzAmountText(std::string_view text) {
  if (text.size() > 40) return;
  const int digits = text.empty() ? 2 : static_cast<unsigned char>(text.back()) % 10;
  Result<int64_t> parsed = payoutd::ParseJsonAmount(text, digits);
  if (parsed.ok()) CheckAmount(*parsed, digits);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  FuzzBodies(text);
  CheckErrorMessage(text, 200);
  CheckErrorMessage(text, size % 64);
  FuzzRetryAfter(text);
  FuzzAmountText(text);
  return 0;
}
