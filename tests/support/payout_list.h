// Test payouts written as a std::vector<Payout> (easy to edit in place), handed to the store as
// the PayoutList the validator produces, which is all PayoutStore takes.
#pragma once

#include <vector>

#include "core/batch/batch.h"

namespace payoutd {

inline PayoutList ToPayoutList(const std::vector<Payout>& payouts) {
  PayoutList list;
  list.reserve(payouts.size());
  for (const Payout& p : payouts) list.push_back(p);
  return list;
}

}  // namespace payoutd
