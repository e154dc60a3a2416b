#include "core/batch/payout.h"

#include "core/base/status.h"

namespace payoutd {

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  auto alnum = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id[0])) return false;
  for (char c : id.substr(1))
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

bool IsAllowedTransition(Stage from, Stage to) {
  switch (from) {
    case Stage::kNew: return to == Stage::kSubmitting || to == Stage::kFinal;
    case Stage::kSubmitting:
      return to == Stage::kPolling || to == Stage::kUnknown || to == Stage::kNew ||
             to == Stage::kFinal;
    case Stage::kUnknown:
      return to == Stage::kSubmitting || to == Stage::kPolling || to == Stage::kUnknown ||
             to == Stage::kFinal;
    case Stage::kPolling: return to == Stage::kPolling || to == Stage::kFinal;
    case Stage::kFinal: return false;
  }
  return false;
}

std::string_view StageName(Stage s) {
  switch (s) {
    case Stage::kNew: return "new";
    case Stage::kSubmitting: return "submitting";
    case Stage::kUnknown: return "unknown";
    case Stage::kPolling: return "polling";
    case Stage::kFinal: return "final";
  }
  return "?";
}

std::string_view FinalStateName(FinalState s) {
  switch (s) {
    case FinalState::kSuccess: return "SUCCESS";
    case FinalState::kFailed: return "FAILED";
    case FinalState::kRejected: return "REJECTED";
    case FinalState::kError: return "ERROR";
    case FinalState::kCancelled: return "CANCELLED";
    case FinalState::kNone: return "";
  }
  return "";
}

Stage StageFromInt(int64_t v) {
  PAYOUTD_CHECK(v >= 0 && v <= static_cast<int64_t>(Stage::kFinal));
  return static_cast<Stage>(v);
}

FinalState FinalStateFromInt(int64_t v) {
  PAYOUTD_CHECK(v >= 0 && v <= static_cast<int64_t>(FinalState::kCancelled));
  return static_cast<FinalState>(v);
}

}  // namespace payoutd
