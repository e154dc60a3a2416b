#include "daemon/approval_round.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>

#include "core/batch/batch.h"
#include "daemon/files.h"
#include "daemon/spool.h"

namespace payoutd {
namespace {

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The signature files of a batch, and everything else that travels with it (.sig.invalid too).
struct BatchFiles {
  std::vector<std::string> signatures;  // names that parse as a signature of the batch
  std::vector<std::string> companions;  // every `<batch>.csv.*` name (signatures included)
};

BatchFiles FilesOf(const std::vector<std::string>& names, const std::string& batch_id) {
  BatchFiles f;
  const std::string prefix = batch_id + ".csv.";
  for (const std::string& name : names) {
    if (name.rfind(prefix, 0) != 0 ||
        (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0))
      continue;
    f.companions.push_back(name);
    auto sig = ParseSignatureName(name);
    if (sig && sig->batch_id == batch_id) f.signatures.push_back(name);
  }
  return f;
}

std::string SeenKey(const std::string& dir, const std::string& name) {
  struct stat st {};
  ::lstat((dir + "/" + name).c_str(), &st);
  return name + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

std::string ErrorsCsv(const std::string& why) {
  ValidatedBatch v;
  v.errors.push_back(BatchError{0, "", why});
  v.error_count = 1;
  return FormatErrorsCsv(v);
}

// The batch file and its companions, from approval/ to work/ (the batch is active now).
Status MoveToWork(const std::string& spool_dir, const BatchRecord& b,
                  const std::vector<std::string>& names) {
  const std::string approval = spool_dir + "/approval", work = spool_dir + "/work";
  FileSet set;
  for (const std::string& name : FilesOf(names, b.id).companions)
    set.Move(approval + "/" + name, work + "/" + name);
  set.Move(approval + "/" + b.file_name,
           work + "/" + b.file_name);  // last: what a watcher waits for
  return set.Commit();
}

Status MoveToRejected(const std::string& spool_dir, const BatchRecord& b, const std::string& why,
                      const std::vector<std::string>& names) {
  const std::string approval = spool_dir + "/approval";
  std::vector<std::string> also;
  for (const std::string& name : FilesOf(names, b.id).companions)
    also.push_back(approval + "/" + name);
  return RejectInto(spool_dir + "/rejected", approval + "/" + b.file_name, b.id, ErrorsCsv(why),
                    also);
}

// Checks the batch's new signature files and records what they came to.
Status CheckNew(PayoutStore& store, const ApprovalPolicy& policy, const std::string& approval,
                const BatchRecord& b, const std::vector<std::string>& names, int64_t now_ms,
                std::set<std::string>& seen, ApprovalRound& round) {
  std::vector<std::string> fresh;
  for (const std::string& name : FilesOf(names, b.id).signatures)
    if (!seen.count(SeenKey(approval, name))) fresh.push_back(name);
  if (fresh.empty()) return Status::Ok();
  auto bytes = ReadApprovedBytes(approval + "/" + b.file_name, b.sha256);
  if (!bytes.ok()) {
    // Said once per signature file, not every second: a changed batch file stays changed.
    for (const std::string& name : fresh) seen.insert(SeenKey(approval, name));
    return bytes.status();
  }
  PAYOUTD_ASSIGN_OR_RETURN(std::vector<SignatureCheck> checks,
                           CheckSignatures(policy, approval, fresh, *bytes));
  for (SignatureCheck& check : checks) {
    ApprovalRound::Checked c{b.id, check, false};
    if (check.valid) {
      PAYOUTD_ASSIGN_OR_RETURN(
          c.counted,
          store.AddApproval(b.id, Approval{check.signer.principal, check.signer.key_fingerprint,
                                           check.file, now_ms}));
      PAYOUTD_RETURN_IF_ERROR(store.AddAudit(
          b.id, AuditEntry{now_ms, "approve",
                           check.signer.principal + " (" + check.signer.key_fingerprint + ")",
                           c.counted ? "" : "this principal had signed already: counted once"}));
      seen.insert(SeenKey(approval, check.file));
    } else {
      PAYOUTD_RETURN_IF_ERROR(
          store.AddAudit(b.id, AuditEntry{now_ms, "approval.invalid", check.file, check.reason}));
      // Renamed so that it is not checked again and an operator sees it failed.
      PAYOUTD_RETURN_IF_ERROR(
          MoveFile(approval + "/" + check.file, approval + "/" + check.file + ".invalid"));
    }
    round.checked.push_back(std::move(c));
  }
  return Status::Ok();
}

}  // namespace

Result<int64_t> RejectAwaitingBatch(PayoutStore& store, const BatchRecord& b,
                                    const std::string& spool_dir, int64_t now_ms,
                                    const std::string& why, const AuditEntry& audit) {
  PAYOUTD_ASSIGN_OR_RETURN(CancelOutcome out, store.CancelUnsent(b.id, now_ms, why));
  PAYOUTD_RETURN_IF_ERROR(store.AddAudit(b.id, audit));
  PAYOUTD_RETURN_IF_ERROR(store.SetBatchStatus(b.id, BatchRecord::Status::kRejected, now_ms));
  PAYOUTD_RETURN_IF_ERROR(MoveToRejected(spool_dir, b, why, ListNames(spool_dir + "/approval")));
  PAYOUTD_RETURN_IF_ERROR(store.SetBatchStatus(b.id, BatchRecord::Status::kReported, now_ms));
  return out.cancelled;
}

ApprovalRound RunApprovalRound(PayoutStore& store, const ApprovalPolicy& policy,
                               const std::string& spool_dir, int64_t now_ms,
                               std::set<std::string>& seen) {
  ApprovalRound round;
  auto batches = store.ListBatches();
  if (!batches.ok()) {
    round.problems.push_back(batches.error());
    return round;
  }
  const std::string approval = spool_dir + "/approval";
  std::vector<std::string> names;
  bool listed = false;
  const int64_t expire_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(policy.expire_after).count();
  for (const BatchRecord& b : *batches) {
    if (b.status != BatchRecord::Status::kAwaitingApproval) continue;
    if (!listed) {
      names = ListNames(approval);
      listed = true;
    }
    if (now_ms - b.started_at_ms >= expire_ms) {
      auto rejected =
          RejectAwaitingBatch(store, b, spool_dir, now_ms, "approval expired",
                              AuditEntry{now_ms, "expire", "payoutd",
                                         "not enough approvals within approvals.expire_after"});
      if (rejected.ok()) {
        round.expired.push_back(b.id);
      } else {
        round.problems.push_back("batch " + b.id + ": " + rejected.error());
      }
      continue;
    }
    if (Status st = CheckNew(store, policy, approval, b, names, now_ms, seen, round); !st.ok()) {
      round.problems.push_back("batch " + b.id + ": " + st.message());
    }
    auto approvals = store.ListApprovals(b.id);
    if (approvals.ok() && static_cast<int>(approvals->size()) >= b.approvals_required) {
      Status st = store.SetBatchStatus(b.id, BatchRecord::Status::kActive, 0);
      if (st.ok()) st = MoveToWork(spool_dir, b, ListNames(approval));
      if (st.ok()) {
        round.approved.push_back(b.id);
        continue;
      }
      round.problems.push_back("batch " + b.id + ": " + st.message());
    }
    ++round.awaiting;
    if (!round.oldest_awaiting_since_ms || b.started_at_ms < round.oldest_awaiting_since_ms)
      round.oldest_awaiting_since_ms = b.started_at_ms;
  }
  return round;
}

Status FinishApprovalMoves(PayoutStore& store, const std::string& spool_dir) {
  PAYOUTD_ASSIGN_OR_RETURN(std::vector<BatchRecord> batches, store.ListBatches());
  const std::string approval = spool_dir + "/approval";
  const std::vector<std::string> names = ListNames(approval);
  for (const BatchRecord& b : batches) {
    if (!FileExists(approval + "/" + b.file_name)) continue;
    if (b.status == BatchRecord::Status::kActive)
      PAYOUTD_RETURN_IF_ERROR(MoveToWork(spool_dir, b, names));
    if (b.status == BatchRecord::Status::kRejected) {
      const std::string why = b.cancelled_at_ms ? "cancelled" : "approval expired";
      PAYOUTD_RETURN_IF_ERROR(MoveToRejected(spool_dir, b, why, names));
      PAYOUTD_RETURN_IF_ERROR(
          store.SetBatchStatus(b.id, BatchRecord::Status::kReported, b.finished_at_ms));
    }
  }
  return Status::Ok();
}

}  // namespace payoutd
