#include "core/store/payout_store.h"

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

}  // namespace payoutd
