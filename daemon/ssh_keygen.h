// Approval signatures are OpenSSH signatures (docs/approvals.md), checked and made by OpenSSH's
// own ssh-keygen (`-Y find-principals`, `-Y verify`, `-Y sign`), never by our own parsing: it
// already knows every key type, `namespaces=`, `valid-before`/`valid-after` and
// `cert-authority` in an allowed_signers file.
//
// ssh-keygen runs through RunProcess (daemon/process.h): no shell, a timeout, the signed bytes on
// stdin. The signature it reads is a private copy payoutd wrote (0600, in a 0700 folder of its
// own), so what is checked is exactly the bytes payoutd read, whatever happens to the file in the
// spool meanwhile.
//
// Threading: blocking (one ssh-keygen run is a few milliseconds); not on the io thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/base/status.h"

namespace payoutd {

// The namespace every batch approval is signed in (`ssh-keygen -Y sign -n payoutd-batch`).
inline constexpr std::string_view kApprovalNamespace = "payoutd-batch";

struct SshSigner {
  std::string principal;        // as named in allowed_signers, e.g. "alice@example.com"
  std::string key_fingerprint;  // "SHA256:..." of the key that signed
};

struct SshKeygenOptions {
  std::string program = "ssh-keygen";
  std::chrono::milliseconds timeout{10000};
};

// What ssh-keygen says of one signature.
struct SshVerdict {
  bool valid = false;
  std::string reason;  // when not valid: ssh-keygen's words, e.g. "namespace does not match"
  SshSigner signer;    // when valid
};

// Checks `signature` (the text of a .sig file) over `data` in namespace `ns` against the
// allowed_signers file. Not valid: an unknown key, other bytes, a wrong namespace, a key not
// valid now, not a signature at all. An error only when ssh-keygen cannot be run.
Result<SshVerdict> VerifySshSignature(const std::string& allowed_signers, std::string_view ns,
                                      std::string_view signature, std::string_view data,
                                      const SshKeygenOptions& options = {});

// Signs `data` in namespace `ns` with the private key file `key` (ssh-keygen may ask for its
// passphrase on the terminal). Returns the armored signature text.
Result<std::string> MakeSshSignature(const std::string& key, std::string_view ns,
                                     std::string_view data, const SshKeygenOptions& options = {});

}  // namespace payoutd
