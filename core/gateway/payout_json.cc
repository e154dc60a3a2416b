#include "core/gateway/payout_json.h"

#include "core/base/json_text.h"

#include <simdjson.h>

#include <limits>
#include <optional>

namespace payoutd {
namespace {

namespace od = simdjson::ondemand;

std::string_view Trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Text from the gateway made fit for a log line or a CSV cell: control characters become spaces,
// and it is cut to max_len bytes (never inside a UTF-8 sequence) with "..." to show the cut.
std::string CleanGatewayText(std::string text, size_t max_len) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (text.size() > max_len) {
    size_t cut = max_len;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    text += "...";
  }
  return text;
}

// What we read from a response, before amounts are converted (the currency may come after the
// amount in the document).
struct RawPayout {
  std::optional<std::string> id;
  std::optional<std::string> amount_text;
  std::optional<std::string> currency;
  std::optional<std::string> status;
  std::optional<std::string> created_at;
  std::optional<std::string> processed_at;
  std::optional<std::string> fee_amount_text;
  std::optional<std::string> fee_currency;
  std::string account_number;
};

#define PAYOUTD_JSON_TRY(expr)                                \
  do {                                                        \
    if (auto _e = (expr); _e != simdjson::SUCCESS) return _e; \
  } while (0)

simdjson::error_code ReadString(od::value v, std::optional<std::string>* out) {
  std::string_view s;
  PAYOUTD_JSON_TRY(v.get_string().get(s));
  *out = std::string(s);
  return simdjson::SUCCESS;
}

// A string that may be null or absent: null leaves *out unset.
simdjson::error_code ReadNullableString(od::value v, std::optional<std::string>* out) {
  bool is_null = false;
  PAYOUTD_JSON_TRY(v.is_null().get(is_null));
  if (is_null) return simdjson::SUCCESS;
  return ReadString(v, out);
}

// An amount: a JSON number, kept as its text so it converts exactly. A string holding a number
// ("42.05") is taken too: what it says is just as exact, and refusing it would leave a payout
// unresolved over how the gateway chose to quote a figure. ParseJsonAmount checks the grammar.
simdjson::error_code ReadNumberText(od::value v, std::optional<std::string>* out) {
  od::json_type t;
  PAYOUTD_JSON_TRY(v.type().get(t));
  if (t == od::json_type::string) return ReadString(v, out);
  if (t != od::json_type::number) return simdjson::INCORRECT_TYPE;
  *out = std::string(Trim(v.raw_json_token()));
  return simdjson::SUCCESS;
}

// Calls on_field(key, value) for each field of the object `json` (a value or the document), in
// document order; stops at the first error, the walk's own or on_field's. A field on_field does
// not read is skipped.
template <typename Json, typename OnField>
simdjson::error_code ForEachField(Json& json, OnField on_field) {
  od::object obj;
  PAYOUTD_JSON_TRY(json.get_object().get(obj));
  for (auto field : obj) {
    std::string_view key;
    PAYOUTD_JSON_TRY(field.unescaped_key().get(key));
    od::value value;
    PAYOUTD_JSON_TRY(field.value().get(value));
    PAYOUTD_JSON_TRY(on_field(key, value));
  }
  return simdjson::SUCCESS;
}

// {"amount": <number>, "currencyCode": "<code>"}
simdjson::error_code ReadMoney(od::value v, std::optional<std::string>* amount,
                               std::optional<std::string>* currency) {
  return ForEachField(v, [&](std::string_view key, od::value fv) -> simdjson::error_code {
    if (key == "amount") return ReadNumberText(fv, amount);
    if (key == "currencyCode") return ReadString(fv, currency);
    return simdjson::SUCCESS;
  });
}

simdjson::error_code ReadPaymentRequested(od::value v, RawPayout* p) {
  return ForEachField(v, [&](std::string_view key, od::value fv) -> simdjson::error_code {
    if (key == "money") return ReadMoney(fv, &p->amount_text, &p->currency);
    return simdjson::SUCCESS;
  });
}

simdjson::error_code ReadMethodResponse(od::value v, RawPayout* p) {
  return ForEachField(v, [&](std::string_view key, od::value fv) -> simdjson::error_code {
    if (key == "idPayout") return ReadString(fv, &p->id);
    return simdjson::SUCCESS;
  });
}

simdjson::error_code ReadProcess(od::value v, RawPayout* p) {
  return ForEachField(v, [&](std::string_view key, od::value fv) -> simdjson::error_code {
    if (key == "status") return ReadString(fv, &p->status);
    if (key == "createdAt") return ReadNullableString(fv, &p->created_at);
    if (key == "processedAt") return ReadNullableString(fv, &p->processed_at);
    return simdjson::SUCCESS;
  });
}

// paymentMethod.account.accountNumber, when the gateway echoes it.
simdjson::error_code ReadPaymentMethod(od::value v, RawPayout* p) {
  return ForEachField(v, [&](std::string_view key, od::value account) -> simdjson::error_code {
    if (key != "account") return simdjson::SUCCESS;
    return ForEachField(account, [&](std::string_view akey, od::value av) -> simdjson::error_code {
      if (akey != "accountNumber") return simdjson::SUCCESS;
      std::optional<std::string> s;
      PAYOUTD_JSON_TRY(ReadString(av, &s));
      p->account_number = *s;
      return simdjson::SUCCESS;
    });
  });
}

simdjson::error_code ReadPayout(std::string_view body, RawPayout* p) {
  // ondemand needs SIMDJSON_PADDING readable bytes past the end; copy into a padded buffer.
  simdjson::padded_string padded(body);
  // One parser per thread: it keeps its buffers between documents.
  thread_local od::parser parser;
  od::document doc;
  PAYOUTD_JSON_TRY(parser.iterate(padded).get(doc));
  auto read_field = [&](std::string_view key, od::value fv) -> simdjson::error_code {
    if (key == "paymentRequested") return ReadPaymentRequested(fv, p);
    if (key == "paymentMethodResponse") return ReadMethodResponse(fv, p);
    if (key == "process") return ReadProcess(fv, p);
    if (key == "paymentMethod") return ReadPaymentMethod(fv, p);
    if (key != "fee") return simdjson::SUCCESS;
    bool is_null = false;
    PAYOUTD_JSON_TRY(fv.is_null().get(is_null));
    if (is_null) return simdjson::SUCCESS;
    return ReadMoney(fv, &p->fee_amount_text, &p->fee_currency);
  };
  PAYOUTD_JSON_TRY(ForEachField(doc, read_field));
  // Skipped values are only scanned, not validated, by the on-demand parser; trailing content
  // after the root object is an error.
  if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) return simdjson::TRAILING_CONTENT;
  return simdjson::SUCCESS;
}

#undef PAYOUTD_JSON_TRY

Result<GatewayPayout> Convert(const RawPayout& raw, std::string_view expected_id,
                              const CurrencyTable& currencies) {
  if (!raw.id) return Status::InvalidArgument("response lacks paymentMethodResponse.idPayout");
  if (*raw.id != expected_id) return Status::InvalidArgument("response is for another idPayout");
  if (!raw.amount_text || !raw.currency)
    return Status::InvalidArgument("response lacks paymentRequested.money");
  GatewayPayout out;
  out.id = *raw.id;
  out.currency = *raw.currency;
  const std::optional<int> digits = currencies.MinorUnits(out.currency);
  if (!digits) return Status::InvalidArgument("response has an unknown currency");
  Result<int64_t> amount = ParseJsonAmount(*raw.amount_text, *digits);
  if (!amount) return Status::InvalidArgument("response amount: " + amount.error());
  out.amount_minor = *amount;
  if (raw.status) out.status = *raw.status;
  out.created_at = raw.created_at.value_or("");
  out.processed_at = raw.processed_at.value_or("");
  out.account_number = raw.account_number;
  // A fee we cannot keep exactly does not make the status unusable: the payout's outcome matters
  // more than its fee, and retrying would not change the figure. It is reported, not dropped.
  if (raw.fee_amount_text || raw.fee_currency) {
    const std::string shown =
        raw.fee_amount_text.value_or("?") + " " + raw.fee_currency.value_or("?");
    const std::optional<int> fee_digits =
        raw.fee_currency ? currencies.MinorUnits(*raw.fee_currency) : std::optional<int>();
    if (!raw.fee_amount_text || !raw.fee_currency) {
      out.fee_problem = "fee " + shown + " lacks amount or currencyCode";
    } else if (!fee_digits) {
      out.fee_problem = "fee " + shown + " has an unknown currency";
    } else if (Result<int64_t> fee = ParseJsonAmount(*raw.fee_amount_text, *fee_digits); !fee) {
      out.fee_problem = "fee " + shown + ": " + fee.error();
    } else {
      out.has_fee = true;
      out.fee_minor = *fee;
      out.fee_currency = *raw.fee_currency;
    }
    out.fee_problem = CleanGatewayText(std::move(out.fee_problem), 200);
  }
  return out;
}

Result<RawPayout> Read(std::string_view body) {
  RawPayout raw;
  if (auto e = ReadPayout(body, &raw); e != simdjson::SUCCESS)
    return Status::InvalidArgument(std::string("malformed JSON: ") + simdjson::error_message(e));
  return raw;
}

}  // namespace

std::string BuildPayoutRequest(const Payout& payout, int minor_units,
                               std::string_view callback_url) {
  PAYOUTD_CHECK(payout.amount_minor > 0);
  PAYOUTD_CHECK(minor_units >= 0 && minor_units <= 9);
  std::string out;
  out.reserve(256 + payout.account_name.size());
  out += R"({"paymentRequested":{"money":{"amount":)";
  out += FormatJsonAmount(payout.amount_minor, minor_units);
  out += R"(,"currencyCode":)";
  AppendJsonString(out, payout.currency);
  out += R"(}},"paymentMethod":{"paymentMethodCode":)";
  AppendJsonString(out, payout.method);
  out += R"(,"account":{"accountName":)";
  AppendJsonString(out, payout.account_name);
  out += R"(,"accountNumber":)";
  AppendJsonString(out, payout.account_number);
  out += R"(},"paymentOperatorCode":)";
  AppendJsonString(out, payout.operator_code);
  if (!payout.email.empty()) {
    out += R"(,"emailAddress":)";
    AppendJsonString(out, payout.email);
  }
  out += "}";
  if (!callback_url.empty()) {
    out += R"(,"callbackUrl":)";
    AppendJsonString(out, callback_url);
  }
  out += "}";
  return out;
}

Result<int64_t> ParseJsonAmount(std::string_view text, int minor_units) {
  // JSON number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  const Status bad = Status::InvalidArgument("not a JSON number");
  size_t i = 0;
  const size_t n = text.size();
  bool negative = false;
  if (i < n && text[i] == '-') {
    negative = true;
    ++i;
  }
  auto digit = [&](size_t k) { return k < n && text[k] >= '0' && text[k] <= '9'; };
  if (!digit(i)) return bad;
  std::string digits;  // all significant digits, integer part then fraction
  if (text[i] == '0') {
    ++i;
    if (digit(i)) return bad;  // leading zero
  } else {
    while (digit(i)) digits.push_back(text[i++]);
  }
  int64_t point = static_cast<int64_t>(digits.size());  // decimal point position within digits
  if (i < n && text[i] == '.') {
    ++i;
    if (!digit(i)) return bad;
    while (digit(i)) digits.push_back(text[i++]);
  }
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < n && (text[i] == '+' || text[i] == '-')) exp_negative = text[i++] == '-';
    if (!digit(i)) return bad;
    int64_t exp = 0;
    while (digit(i)) {
      if (exp < 1'000'000) exp = exp * 10 + (text[i] - '0');
      ++i;
    }
    point += exp_negative ? -exp : exp;
  }
  if (i != n) return bad;
  // value = 0.digits * 10^point; in minor units the point moves right by minor_units.
  point += minor_units;
  // Digits after the (shifted) point must all be zero.
  int64_t value = 0;
  for (int64_t k = 0; k < static_cast<int64_t>(digits.size()); ++k) {
    const int d = digits[static_cast<size_t>(k)] - '0';
    if (k >= point) {
      if (d != 0)
        return Status::InvalidArgument("amount has more decimals than the currency allows");
      continue;
    }
    if (value > (std::numeric_limits<int64_t>::max() - d) / 10)
      return Status::InvalidArgument("amount too large");
    value = value * 10 + d;
  }
  // Zeros implied between the digits and the point.
  for (int64_t k = static_cast<int64_t>(digits.size()); k < point; ++k) {
    if (value == 0) break;  // 0 * 10^k stays 0
    if (value > std::numeric_limits<int64_t>::max() / 10)
      return Status::InvalidArgument("amount too large");
    value *= 10;
  }
  if (negative && value != 0) return Status::InvalidArgument("amount is negative");
  return value;
}

Result<GatewayPayout> ParsePostResponse(std::string_view body, std::string_view expected_id,
                                        const CurrencyTable& currencies) {
  PAYOUTD_ASSIGN_OR_RETURN(const RawPayout raw, Read(body));
  return Convert(raw, expected_id, currencies);
}

Result<GatewayPayout> ParseGetResponse(std::string_view body, std::string_view expected_id,
                                       const CurrencyTable& currencies) {
  PAYOUTD_ASSIGN_OR_RETURN(const RawPayout raw, Read(body));
  if (!raw.status) return Status::InvalidArgument("response lacks process.status");
  return Convert(raw, expected_id, currencies);
}

std::string ErrorMessageFromBody(std::string_view body, size_t max_len) {
  simdjson::padded_string padded(body);
  thread_local od::parser parser;
  od::document doc;
  std::string code, text;
  bool found = false;
  auto read_error = [&](std::string_view key, od::value v) -> simdjson::error_code {
    std::string_view s;
    if (key == "message" && v.get_string().get(s) == simdjson::SUCCESS) {
      text = std::string(s);
      found = true;
    } else if (key == "code") {
      if (v.get_string().get(s) == simdjson::SUCCESS)
        code = std::string(s);
      else
        code = std::string(Trim(v.raw_json_token()));
      found = true;
    }
    return simdjson::SUCCESS;
  };
  // Best effort: what was read before a malformed part is kept, and the walk's error ignored.
  if (parser.iterate(padded).get(doc) == simdjson::SUCCESS) {
    bool seen = false;  // the first "error" field is the one that counts
    (void)ForEachField(doc, [&](std::string_view key, od::value v) -> simdjson::error_code {
      if (key != "error" || seen) return simdjson::SUCCESS;
      seen = true;
      return ForEachField(v, read_error);
    });
  }
  std::string message;
  if (found)
    message = code.empty() ? text : (text.empty() ? code : code + ": " + text);
  else
    message = std::string(Trim(body));
  return CleanGatewayText(std::move(message), max_len);
}

}  // namespace payoutd
