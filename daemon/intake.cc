#include "daemon/intake.h"

#include <algorithm>
#include <unordered_map>

#include "core/base/log.h"

namespace payoutd {

std::string BatchIdFromFileName(const std::string& file_name) {
  const std::string ext = ".csv";
  if (file_name.size() > ext.size() && file_name.compare(file_name.size() - ext.size(), ext.size(), ext) == 0)
    return file_name.substr(0, file_name.size() - ext.size());
  return file_name;
}

namespace {

void AddError(ValidatedBatch& b, uint32_t line, std::string column, std::string message) {
  ++b.error_count;
  if (b.errors.size() < BatchValidator::kMaxErrors) b.errors.push_back({line, std::move(column), std::move(message)});
}

}  // namespace

Intake TakeBatch(PayoutStore* store, const BatchValidator& validator, const std::string& batch_id,
                 const std::string& path, const std::string& file_name, int64_t now_ms, bool record) {
  Intake in;
  in.batch = validator.ValidateFile(batch_id, path);
  ValidatedBatch& b = in.batch;
  if (!b.ok() || store == nullptr) {
    in.kind = b.ok() ? Intake::Kind::kAccepted : Intake::Kind::kRejected;
    return in;
  }

  // Seen before? The same batch (id and content) is ours to resume, not a duplicate.
  auto existing = store->GetBatch(batch_id);
  if (!existing.ok()) return Intake{Intake::Kind::kFailed, std::move(in.batch), existing.error()};
  if (existing->has_value()) {
    if ((*existing)->sha256 == b.sha256) {
      in.kind = Intake::Kind::kResumed;
      return in;
    }
    AddError(b, 0, "", "batch id '" + batch_id + "' was already used by an earlier batch");
  }
  auto same_content = store->HasContent(b.sha256);
  if (!same_content.ok()) return Intake{Intake::Kind::kFailed, std::move(in.batch), same_content.error()};
  if (*same_content && !existing->has_value())
    AddError(b, 0, "", "the same file content was already accepted as an earlier batch");
  auto used = store->FindUsedPayoutIds(b.payouts);
  if (!used.ok()) return Intake{Intake::Kind::kFailed, std::move(in.batch), used.error()};
  if (!used->empty()) {
    std::unordered_map<std::string_view, uint32_t> line_of;
    line_of.reserve(b.payouts.size());
    for (size_t i = 0; i < b.payouts.size(); ++i) line_of.emplace(b.payouts.id(i), b.payouts.line(i));
    for (const auto& id : *used)
      AddError(b, line_of.count(id) ? line_of[id] : 0, "id", "payout id '" + id + "' was already used by an earlier batch");
  }
  if (!b.ok()) {
    std::stable_sort(b.errors.begin(), b.errors.end(),
                     [](const BatchError& x, const BatchError& y) { return x.line < y.line; });
    in.kind = Intake::Kind::kRejected;
    return in;
  }
  if (!record) {
    in.kind = Intake::Kind::kAccepted;
    return in;
  }
  BatchRecord rec;
  rec.id = batch_id;
  rec.sha256 = b.sha256;
  rec.file_name = file_name;
  rec.rows = static_cast<int64_t>(b.payouts.size());
  rec.started_at_ms = now_ms;
  Status st = store->CreateBatch(rec, b.payouts);
  if (!st.ok()) return Intake{Intake::Kind::kFailed, std::move(in.batch), st.message()};
  in.kind = Intake::Kind::kAccepted;
  return in;
}

}  // namespace payoutd
