// The gateway's JSON (docs/gateway.md#requests): the POST body written from a Payout, and the
// POST/GET response bodies read back. Amounts travel exactly: written from integer minor units
// (FormatJsonAmount) and read back from the number's text, never through a binary floating-point
// value.
//
// Parsing is tolerant of fields we do not use and strict about the ones we do: a missing or
// mistyped field we use is an error (the caller treats it as a transient bad response).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "core/batch/payout.h"
#include "core/gateway/gateway_payout.h"
#include "core/money/money.h"

namespace payoutd {

// The POST body. emailAddress and callbackUrl are left out when empty. A pure function of its
// arguments, so every POST for a payout id carries the same amount, currency and account. Requires
// payout.amount_minor > 0 and minor_units in 0..9.
std::string BuildPayoutRequest(const Payout& payout, int minor_units,
                               std::string_view callback_url);

// Exact conversion of a JSON number's text (e.g. "42.05", "10000", "0.1", "4.2e1") into minor units
// of a currency with `minor_units` digits. Rejects a negative value, more significant decimals than
// the currency has (trailing zeros are fine), values beyond int64 and anything that is not a JSON
// number.
Result<int64_t> ParseJsonAmount(std::string_view number_text, int minor_units);

// A POST 200/201 body: requires paymentMethodResponse.idPayout (equal to `expected_id`) and
// paymentRequested.money{amount,currencyCode}, which fill id, amount_minor and currency.
Result<GatewayPayout> ParsePostResponse(std::string_view body, std::string_view expected_id,
                                        const CurrencyTable& currencies);

// A GET 200 body: requires process.status and process.createdAt (strings), paymentRequested.money
// and paymentMethodResponse.idPayout (equal to `expected_id`). Optional: process.processedAt,
// fee{amount,currencyCode}, and the account number (read from paymentMethod.account.accountNumber
// when the gateway echoes it; empty otherwise).
Result<GatewayPayout> ParseGetResponse(std::string_view body, std::string_view expected_id,
                                       const CurrencyTable& currencies);

// The gateway's reason for a refusal: error.message (with error.code in front when present) from
// {"error":{"code","message"}}, else the body as text. Control characters become spaces; at most
// `max_len` bytes (cut on a UTF-8 boundary, "..." appended when cut).
std::string ErrorMessageFromBody(std::string_view body, size_t max_len = 200);

}  // namespace payoutd
