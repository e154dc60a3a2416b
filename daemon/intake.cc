#include "daemon/intake.h"

#include <algorithm>
#include <unordered_map>

#include "core/base/failpoint.h"
#include "core/base/log.h"

namespace payoutd {

std::string BatchIdFromFileName(const std::string& file_name) {
  const std::string ext = ".csv";
  if (file_name.size() > ext.size() &&
      file_name.compare(file_name.size() - ext.size(), ext.size(), ext) == 0)
    return file_name.substr(0, file_name.size() - ext.size());
  return file_name;
}

namespace {

void AddError(ValidatedBatch& b, uint32_t line, std::string column, std::string message) {
  ++b.error_count;
  if (b.errors.size() < BatchValidator::kMaxErrors)
    b.errors.push_back({line, std::move(column), std::move(message)});
}

// What the store already holds of this batch, as errors a finance user can act on: the batch id,
// the same content, each payout id used before (at its line). The same batch again (id and
// content) is not a duplicate but ours to resume: kResumed. Otherwise kRejected when anything was
// seen before, kAccepted when nothing was.
Result<Intake::Kind> CheckSeenBefore(PayoutStore& store, const std::string& batch_id,
                                     ValidatedBatch& b) {
  PAYOUTD_ASSIGN_OR_RETURN(std::optional<BatchRecord> existing, store.GetBatch(batch_id));
  if (existing) {
    if (existing->sha256 == b.sha256) return Intake::Kind::kResumed;
    AddError(b, 0, "", "batch id '" + batch_id + "' was already used by an earlier batch");
  }
  PAYOUTD_ASSIGN_OR_RETURN(bool same_content, store.HasContent(b.sha256));
  if (same_content && !existing)
    AddError(b, 0, "", "the same file content was already accepted as an earlier batch");
  PAYOUTD_ASSIGN_OR_RETURN(std::vector<std::string> used, store.FindUsedPayoutIds(b.payouts));
  if (!used.empty()) {
    std::unordered_map<std::string_view, uint32_t> line_of;
    line_of.reserve(b.payouts.size());
    for (size_t i = 0; i < b.payouts.size(); ++i)
      line_of.emplace(b.payouts.id(i), b.payouts.line(i));
    for (const auto& id : used) {
      AddError(b, line_of.count(id) ? line_of[id] : 0, "id",
               "payout id '" + id + "' was already used by an earlier batch");
    }
  }
  if (b.ok()) return Intake::Kind::kAccepted;
  std::stable_sort(b.errors.begin(), b.errors.end(),
                   [](const BatchError& x, const BatchError& y) { return x.line < y.line; });
  return Intake::Kind::kRejected;
}

Intake Failed(Intake in, Status why) {
  in.kind = Intake::Kind::kFailed;
  in.status = std::move(why);
  return in;
}

}  // namespace

Intake TakeBatch(PayoutStore* store, const BatchValidator& validator, const std::string& batch_id,
                 const std::string& path, const std::string& file_name, int64_t now_ms, bool record,
                 const ApprovalPolicy* approvals) {
  Intake in;
  in.batch = validator.ValidateFile(batch_id, path);
  ValidatedBatch& b = in.batch;
  if (!b.ok() || store == nullptr) {
    in.kind = b.ok() ? Intake::Kind::kAccepted : Intake::Kind::kRejected;
    return in;
  }
  if (approvals) in.approvals_required = ApprovalsRequired(*approvals, b.totals);
  Status created;
  if (record) {
    // A new batch, the usual case, costs one transaction: CreateBatch refuses whatever was seen
    // before with kAlreadyExists, and only then is the store asked what it was.
    BatchRecord rec;
    rec.id = batch_id;
    rec.sha256 = b.sha256;
    rec.file_name = file_name;
    rec.rows = static_cast<int64_t>(b.payouts.size());
    rec.started_at_ms = now_ms;
    rec.approvals_required = in.approvals_required;
    if (in.approvals_required > 0) rec.status = BatchRecord::Status::kAwaitingApproval;
    if (PAYOUTD_FAILPOINT("intake.record"))
      return Failed(std::move(in), Status::Unavailable("failpoint intake.record"));
    created = store->CreateBatch(rec, b.payouts);
    if (created.ok()) {
      in.kind = Intake::Kind::kAccepted;
      return in;
    }
    if (created.code() != StatusCode::kAlreadyExists)
      return Failed(std::move(in), std::move(created));
  }
  Result<Intake::Kind> seen = CheckSeenBefore(*store, batch_id, b);
  if (!seen.ok()) return Failed(std::move(in), seen.status());
  // Refused as a duplicate, yet nothing duplicates it now: the store changed in between; the
  // caller tries again later.
  if (!created.ok() && *seen == Intake::Kind::kAccepted)
    return Failed(std::move(in), std::move(created));
  in.kind = *seen;
  return in;
}

}  // namespace payoutd
