// Taking a batch in: validate the whole file, refuse what was seen before, and record it durably.
// Shared by the spool (`run`) and `process`.
#pragma once

#include <string>
#include <vector>

#include "core/batch/batch.h"
#include "core/store/payout_store.h"
#include "daemon/approvals.h"

namespace payoutd {

struct Intake {
  enum class Kind {
    kAccepted,  // recorded in the store (durable); ready for the engine
    kResumed,   // the same batch (id and content) was already recorded: nothing new to record
    kRejected,  // invalid or a duplicate: errors say why; nothing recorded, nothing to send
    kFailed,    // could not read the file or write the store: try again later
  };
  Kind kind = Kind::kFailed;
  ValidatedBatch batch;        // errors include the duplicate checks
  Status status;               // for kFailed: why
  int approvals_required = 0;  // kAccepted: signatures it waits for (0: it is paid at once)
};

// Validates `path` as batch `batch_id` and, when it is valid and new, records it (CreateBatch) with
// `file_name` and `now_ms`. With record=false nothing is written (`payoutd validate`). A batch, its
// content or a payout id seen before makes it kRejected, with an error for each (the errors.csv
// texts), unless it is the same batch again (kResumed); `store` null skips these checks. With
// `approvals`, a batch that needs signatures (docs/approvals.md) is recorded as awaiting them.
Intake TakeBatch(PayoutStore* store, const BatchValidator& validator, const std::string& batch_id,
                 const std::string& path, const std::string& file_name, int64_t now_ms, bool record,
                 const ApprovalPolicy* approvals = nullptr);

// "payroll-2026-11.csv" -> "payroll-2026-11"
std::string BatchIdFromFileName(const std::string& file_name);

}  // namespace payoutd
