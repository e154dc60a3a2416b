// One pass over the batches awaiting approval (docs/approvals.md), run every second on the store
// thread: new signature files in `<spool>/approval/` are checked with ssh-keygen and recorded
// (each principal once; a signature that counts for nothing is renamed `.sig.invalid`), a batch
// with enough distinct signers is made active and its file moved to work/, and a batch that
// waited longer than approvals.expire_after is rejected: its payouts CANCELLED, the file in
// rejected/ with `0,,approval expired`. Everything it does is in the audit trail.
//
// Order for crashes: the state moves first (active, or rejected), then the files; at start-up
// FinishApprovalMoves redoes a move the state says is due.
//
// Threading: blocking (files, ssh-keygen, the store); the store thread only.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/store/payout_store.h"
#include "daemon/approvals.h"

namespace payoutd {

struct ApprovalRound {
  struct Checked {
    std::string batch_id;
    SignatureCheck check;
    bool counted = false;  // valid and the principal's first for this batch
  };
  std::vector<Checked> checked;
  std::vector<std::string> approved;  // now active, file in work/: the engine takes them
  std::vector<std::string> expired;   // now rejected, file in rejected/
  std::vector<std::string> problems;  // what went wrong, for the log; tried again next round
  int awaiting = 0;                   // batches still waiting after this round
  int64_t oldest_awaiting_since_ms = 0;
};

// `seen` remembers the signature files already checked (name, size and time), across rounds.
ApprovalRound RunApprovalRound(PayoutStore& store, const ApprovalPolicy& policy,
                               const std::string& spool_dir, int64_t now_ms,
                               std::set<std::string>& seen);

// Rejects a batch awaiting approval (expired, or an operator's cancel): its payouts become
// CANCELLED with `why`, the audit gets `action`, and its file (with its signatures) goes to
// rejected/ with `0,,<why>`. Returns how many payouts were cancelled.
Result<int64_t> RejectAwaitingBatch(PayoutStore& store, const BatchRecord& batch,
                                    const std::string& spool_dir, int64_t now_ms,
                                    const std::string& why, const AuditEntry& audit);

// At start-up: files still in approval/ whose batch the state says is active (move to work/) or
// rejected (move to rejected/, then reported).
Status FinishApprovalMoves(PayoutStore& store, const std::string& spool_dir);

}  // namespace payoutd
