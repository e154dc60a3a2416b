// What the gateway says about a payout: read from its POST and GET answers (payout_json.h) and
// handed by the client to the engine (gateway_client.h). A plain value.
#pragma once

#include <cstdint>
#include <string>

namespace payoutd {

// What the gateway says about a payout (GET body), and what it echoes of our request.
struct GatewayPayout {
  std::string id;
  std::string status;  // process.status, e.g. "PENDING", "SUCCESS"
  std::string created_at;
  std::string processed_at;  // empty when absent
  bool has_fee = false;
  int64_t fee_minor = 0;  // in fee_currency's minor units
  std::string fee_currency;
  std::string fee_problem;  // a fee was reported but cannot be kept exactly (has_fee false)
  // Echo of paymentRequested / account, for the id-conflict check after a 409.
  int64_t amount_minor = 0;
  std::string currency;
  std::string account_number;
};

}  // namespace payoutd
