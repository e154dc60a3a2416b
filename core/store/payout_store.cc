#include "core/store/payout_store.h"

#include "core/money/money.h"

namespace payoutd {

bool BatchRecord::MayMove(Status from, Status to) {
  switch (from) {
    case Status::kAwaitingApproval: return to == Status::kActive || to == Status::kRejected;
    case Status::kActive: return to == Status::kFinished;
    case Status::kFinished: return to == Status::kReported;
    case Status::kRejected: return to == Status::kReported;
    case Status::kReported: return false;
  }
  return false;
}

namespace {
bool AddChecked(int64_t* acc, int64_t v) {
  return AddMinor(*acc, v, acc);
}
}  // namespace

bool AddToProgress(const TotalsBucket& b, BatchProgress* progress) {
  PAYOUTD_CHECK(b.count >= 0);
  if (b.count == 0) {
    PAYOUTD_CHECK(b.amount_minor == 0 && b.fee_minor == 0);  // an emptied bucket
    return true;
  }
  bool ok = AddChecked(&progress->stages[b.stage], b.count);
  if (b.stage == Stage::kFinal) ok = ok && AddChecked(&progress->states[b.state], b.count);
  CurrencyTotals& t = progress->totals[std::string(b.currency)];
  ok = ok && AddChecked(&t.requested, b.amount_minor);
  if (b.stage != Stage::kFinal) {
    ok = ok && AddChecked(&t.pending, b.amount_minor);
  } else if (b.state == FinalState::kSuccess) {
    ok = ok && AddChecked(&t.succeeded, b.amount_minor);
  } else {
    ok = ok && AddChecked(&t.failed, b.amount_minor);
  }
  if (b.has_fee) ok = ok && AddChecked(&t.fees[std::string(b.fee_currency)], b.fee_minor);
  return ok;
}

}  // namespace payoutd
