// What hold, resume and cancel mean (docs/operator-control.md), shared by the running daemon and by
// the command line when no daemon runs:
// - CheckControlRequest: the request and the batch it names; a refusal is a reply with its exit
//   code (2: usage, unknown batch, a batch already finished or reported).
// - RunControlOnState: the whole command on the state itself, for the command line when no daemon
//   listens on control.socket (it holds the state's lock meanwhile, so no daemon can start).
//   The daemon does the same through its engine, so that a batch being paid stops at once.
// - Messages and audit entries are made here for both, so they read the same either way.
//
// Threading: blocking (the store); the daemon calls CheckControlRequest on the io thread with its
// read connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/store/payout_store.h"
#include "daemon/control.h"

namespace payoutd {

// Refuses what cannot be done (with the reply to send), or returns the batch (empty record with
// `all`) the request is about.
Result<BatchRecord> CheckControlRequest(PayoutStore& store, const ControlRequest& request,
                                        ControlReply* refusal);

AuditEntry ControlAudit(const ControlRequest& request, const ControlPeer& peer, int64_t now_ms);
Hold ControlHold(const ControlRequest& request, const ControlPeer& peer, int64_t now_ms);
// The error every payout a cancel ends carries in results.csv.
std::string CancelError(const ControlRequest& request, const ControlPeer& peer);

// "cancelled 8,230 unsent payouts; 1,770 already sent will finish"
std::string CancelMessage(const std::string& batch_id, const CancelOutcome& outcome);
std::string HoldMessage(const ControlRequest& request);

// 1234567 -> "1,234,567"
std::string WithThousands(int64_t n);

ControlReply RunControlOnState(PayoutStore& store, const ControlRequest& request,
                               const ControlPeer& peer, const std::string& spool_dir,
                               int64_t now_ms);

}  // namespace payoutd
