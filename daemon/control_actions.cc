#include "daemon/control_actions.h"

#include "daemon/approval_round.h"

namespace payoutd {

std::string WithThousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

Result<BatchRecord> CheckControlRequest(PayoutStore& store, const ControlRequest& r,
                                        ControlReply* refusal) {
  auto refuse = [&](int code, std::string message) -> Result<BatchRecord> {
    *refusal = ControlReply{code, std::move(message)};
    return Status::InvalidArgument(refusal->message);
  };
  if (r.command != "hold" && r.command != "resume" && r.command != "cancel")
    return refuse(2, "unknown command '" + r.command + "' (hold, resume or cancel)");
  if (r.all && r.command == "cancel") return refuse(2, "cancel takes one batch, not --all");
  if (r.all && !r.batch.empty()) return refuse(2, "name a batch or --all, not both");
  if (r.all) return BatchRecord{};
  if (r.batch.empty()) return refuse(2, r.command + " needs a batch (or --all)");
  auto batch = store.GetBatch(r.batch);
  if (!batch.ok()) return refuse(1, "cannot read the state: " + batch.error());
  if (!batch->has_value()) return refuse(2, "unknown batch '" + r.batch + "'");
  const BatchRecord& b = **batch;
  switch (b.status) {
    case BatchRecord::Status::kReported:
      return refuse(2, "batch '" + r.batch + "' was already reported");
    case BatchRecord::Status::kRejected:
      return refuse(2, "batch '" + r.batch + "' was rejected; nothing of it is paid");
    case BatchRecord::Status::kFinished:
      return refuse(2, "batch '" + r.batch +
                           "' has finished: every payout is final, its report is being written");
    default: break;
  }
  return b;
}

AuditEntry ControlAudit(const ControlRequest& r, const ControlPeer& peer, int64_t now_ms) {
  return AuditEntry{now_ms, r.all ? r.command + " --all" : r.command, peer.Describe(), r.reason};
}

Hold ControlHold(const ControlRequest& r, const ControlPeer& peer, int64_t now_ms) {
  if (r.command != "hold") return Hold{};
  return Hold{now_ms, peer.Describe(), r.reason};
}

std::string CancelError(const ControlRequest& r, const ControlPeer& peer) {
  return "cancelled by " + peer.Describe() + (r.reason.empty() ? "" : ": " + r.reason);
}

std::string CancelMessage(const std::string& batch_id, const CancelOutcome& o) {
  std::string m = "cancelled " + WithThousands(o.cancelled) + " unsent payout" +
                  (o.cancelled == 1 ? "" : "s") + " of batch " + batch_id + "; ";
  if (o.still_running == 0) return m + "none was already sent: its report follows";
  return m + WithThousands(o.still_running) + " already sent will finish";
}

std::string HoldMessage(const ControlRequest& r) {
  if (r.command == "hold")
    return r.all ? "held all batches, and those that arrive: no payout is sent until 'payoutd "
                   "resume --all'"
                 : "held batch " + r.batch +
                       ": none of its payouts is sent until 'payoutd resume " + r.batch + "'";
  return r.all ? "resumed all batches" : "resumed batch " + r.batch;
}

namespace {

ControlReply Failed(const Status& st) {
  return ControlReply{1, "cannot change the state: " + st.message()};
}

ControlReply HoldOnState(PayoutStore& store, const ControlRequest& r, const ControlPeer& peer,
                         int64_t now_ms) {
  const Hold hold = ControlHold(r, peer, now_ms);
  const AuditEntry audit = ControlAudit(r, peer, now_ms);
  if (!r.all) {
    if (Status st = store.SetHold(r.batch, hold); !st.ok()) return Failed(st);
    if (Status st = store.AddAudit(r.batch, audit); !st.ok()) return Failed(st);
    return ControlReply{0, HoldMessage(r)};
  }
  if (Status st = store.SetHoldAll(hold); !st.ok()) return Failed(st);
  auto batches = store.ListBatches();
  if (!batches.ok()) return Failed(batches.status());
  for (const BatchRecord& b : *batches) {
    if (b.status != BatchRecord::Status::kActive &&
        b.status != BatchRecord::Status::kAwaitingApproval)
      continue;
    if (!hold.held() && b.hold.held())
      if (Status st = store.SetHold(b.id, Hold{}); !st.ok()) return Failed(st);
    if (Status st = store.AddAudit(b.id, audit); !st.ok()) return Failed(st);
  }
  return ControlReply{0, HoldMessage(r)};
}

ControlReply CancelOnState(PayoutStore& store, const BatchRecord& b, const ControlRequest& r,
                           const ControlPeer& peer, const std::string& spool_dir, int64_t now_ms) {
  const AuditEntry audit = ControlAudit(r, peer, now_ms);
  if (b.status == BatchRecord::Status::kAwaitingApproval) {
    auto cancelled = RejectAwaitingBatch(
        store, b, spool_dir, now_ms,
        "cancelled: " + (r.reason.empty() ? "by " + peer.Describe() : r.reason), audit);
    if (!cancelled.ok()) return Failed(cancelled.status());
    return ControlReply{0, "cancelled batch " + b.id + " awaiting approval (" +
                               WithThousands(*cancelled) +
                               " payouts, none sent); it is in rejected/"};
  }
  auto out = store.CancelUnsent(b.id, now_ms, CancelError(r, peer));
  if (!out.ok()) return Failed(out.status());
  if (Status st = store.AddAudit(b.id, audit); !st.ok()) return Failed(st);
  if (out->all_final)
    if (Status st = store.SetBatchStatus(b.id, BatchRecord::Status::kFinished, now_ms); !st.ok())
      return Failed(st);
  return ControlReply{0,
                      CancelMessage(b.id, *out) + (out->still_running ? " once payoutd runs" : "")};
}

}  // namespace

ControlReply RunControlOnState(PayoutStore& store, const ControlRequest& r, const ControlPeer& peer,
                               const std::string& spool_dir, int64_t now_ms) {
  ControlReply refusal;
  auto batch = CheckControlRequest(store, r, &refusal);
  if (!batch.ok()) return refusal;
  if (r.command == "cancel") {
    if (batch->cancelled_at_ms)
      return ControlReply{0, "batch " + r.batch + " was already cancelled"};
    return CancelOnState(store, *batch, r, peer, spool_dir, now_ms);
  }
  return HoldOnState(store, r, peer, now_ms);
}

}  // namespace payoutd
