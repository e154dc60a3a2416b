// Dual control (docs/approvals.md): which batches wait for signatures, how the signature files in
// `<spool>/approval/` are named and read, and what one check of them finds. What is recorded
// (approvals, audit) and when a batch starts paying is the service's; this file holds the rules
// and the file handling, so that both the daemon and `payoutd approve` follow the same ones.
//
// Threading: ApprovalsRequired and ParseSignatureName are pure. ReadSignatureFile and
// CheckSignatures block (file reads, ssh-keygen): not on the io thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"  // ApprovalPolicy
#include "core/base/clock.h"
#include "core/base/status.h"
#include "daemon/ssh_keygen.h"

namespace payoutd {

// How many distinct principals must sign a batch with these per-currency totals (minor units):
// `required`, or `large_required` when a total is above its currency's `large_above`, whichever
// is more. 0: the batch is paid at once.
int ApprovalsRequired(const ApprovalPolicy& policy, const std::map<std::string, int64_t>& totals);

// A signature's file name: `<batch>.csv.sig` or `<batch>.csv.<label>.sig`, label made of letters,
// digits, `_` and `-`, batch a valid batch id. nullopt for any other name (the batch file itself,
// `.sig.invalid`, temporary files).
struct SignatureName {
  std::string batch_id;
  std::string label;  // empty for `<batch>.csv.sig`
};
std::optional<SignatureName> ParseSignatureName(std::string_view file_name);

// A label for `payoutd approve`'s signature file from a user name: the allowed characters only.
std::string SignatureLabel(std::string_view user);

// A signature file is at most this big; a larger one counts for nothing (and is not read whole).
inline constexpr size_t kMaxSignatureFile = 64 * 1024;

// The bytes of `dir/name` when it is a regular file (not a symlink, a folder or a pipe) of at most
// kMaxSignatureFile bytes; otherwise why it is not usable, as `unusable`.
struct SignatureFile {
  std::string bytes;
  std::string unusable;  // empty when usable
};
Result<SignatureFile> ReadSignatureFile(const std::string& dir, const std::string& name);

// Reads `path` (the batch file in approval/) if it is a regular file; its SHA-256 must be
// `sha256` (the bytes accepted), else an error: signatures over other bytes must not count.
Result<std::string> ReadApprovedBytes(const std::string& path, std::string_view sha256);

// What one signature file came to.
struct SignatureCheck {
  std::string file;  // its name in approval/
  bool valid = false;
  SshSigner signer;    // when valid
  std::string reason;  // when not
};

// Checks each of `files` (names in `dir`, all for the batch whose bytes are `data`) against the
// policy's allowed_signers. An error only when ssh-keygen cannot be run at all.
Result<std::vector<SignatureCheck>> CheckSignatures(const ApprovalPolicy& policy,
                                                    const std::string& dir,
                                                    const std::vector<std::string>& files,
                                                    std::string_view data,
                                                    const SshKeygenOptions& ssh = {});

}  // namespace payoutd
