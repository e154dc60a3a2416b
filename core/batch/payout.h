// The payout domain model shared by the batch validator, the gateway client, the state store and
// the pipeline.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace payoutd {

// Batch ids and payout ids: ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$
bool IsValidId(std::string_view id);

// One validated row of a batch. Its request body is a pure function of these fields, so a payout id
// is bound to one body forever: every POST for it carries the same amount, currency, account.
struct Payout {
  uint32_t line = 0;           // physical line of the CSV record (header is line 1)
  std::string id;              // idPayout
  int64_t amount_minor = 0;    // > 0
  std::string currency;        // ISO 4217 code
  std::string account_number;  // never logged in full: MaskAccount()
  std::string account_name;
  std::string operator_code;  // paymentOperatorCode
  std::string method;         // paymentMethodCode
  std::string email;          // optional; empty = left out of the request
};

// Where a payout is in its life. Durable in the state store; edges (anything else is a bug):
//   kNew       -> kSubmitting | kFinal (CANCELLED only: an operator cancelled it before any POST)
//   kSubmitting-> kPolling (gateway has it) | kUnknown (outcome not known) | kNew (definitely not
//                 created, e.g. paused for auth) | kFinal (REJECTED, or ERROR: id conflict / never
//                 created)
//   kUnknown   -> kSubmitting (GET said 404) | kPolling (GET found it) | kUnknown | kFinal (ERROR:
//   gave up) kPolling   -> kPolling | kFinal kFinal     -> (none)
// On restart kSubmitting is treated as kUnknown: the outcome of a POST cut off by a crash is
// resolved with GET before any re-send.
enum class Stage : int { kNew = 0, kSubmitting = 1, kUnknown = 2, kPolling = 3, kFinal = 4 };

// The outcome written to results.csv (docs/results.md). kCancelled: an operator cancelled the batch
// before this payout was ever sent.
enum class FinalState : int {
  kNone = 0,
  kSuccess = 1,
  kFailed = 2,
  kRejected = 3,
  kError = 4,
  kCancelled = 5
};

bool IsAllowedTransition(Stage from, Stage to);
std::string_view StageName(Stage s);  // "new", "submitting", "unknown", "polling", "final"
// "SUCCESS", "FAILED", "REJECTED", "ERROR", "CANCELLED", "" (kNone)
std::string_view FinalStateName(FinalState s);

// Back from the integer a Stage or FinalState is stored as (its value above), for every store.
// Aborts on a value out of range: the schemas' CHECK constraints make one impossible.
Stage StageFromInt(int64_t v);
FinalState FinalStateFromInt(int64_t v);

}  // namespace payoutd
