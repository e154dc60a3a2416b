// `payoutd approve BATCH --key KEY [--yes]` (docs/approvals.md): shows an approver what they are
// about to sign — the batch's rows, its total per currency, its sha256 and its five largest
// payouts with masked accounts — asks for confirmation, and signs the file's exact bytes with
// `ssh-keygen -Y sign -n payoutd-batch`, writing `<spool>/approval/<batch>.csv.<user>.sig`. It
// needs no running daemon: the daemon finds the signature in approval/ by itself.
//
// Threading: a command-line subcommand; blocking.
#pragma once

#include <iosfwd>
#include <string>

#include "core/batch/batch.h"
#include "daemon/ssh_keygen.h"

namespace payoutd {

struct ApproveOptions {
  std::string spool_dir;
  std::string batch_id;
  std::string key;   // the approver's private key file
  bool yes = false;  // sign without asking
  BatchRules rules;  // to read the batch as the daemon does
  std::string user;  // the signature file's label source; the login name by default
  // What the state says of the batch, when it can be read: how many signatures it needs, how
  // many it has, and the sha256 that was accepted. Unknown (-1, empty) otherwise.
  int approvals_required = -1;
  int approvals_given = -1;
  std::string accepted_sha256;
  SshKeygenOptions ssh;
};

// Runs the command; returns its exit code (0 signed; 1 not signed: declined or ssh-keygen
// failed; 2 no such batch awaiting approval). `in` is where the confirmation is read from.
int RunApprove(const ApproveOptions& options, std::istream& in, std::ostream& out,
               std::ostream& err);

}  // namespace payoutd
