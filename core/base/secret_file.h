// Where a secret comes from, and who may read it: the merchant secret (auth.secret_file,
// docs/configuration.md#auth) and the PostgreSQL password (state.password_file). One rule for
// both, so that neither can be looser than the other.
//
// The rule: the secret file must be readable by its owner only (mode 0600 or stricter), unless it
// lies under $CREDENTIALS_DIRECTORY, the private folder in which systemd passes credentials
// (LoadCredential=). It holds one line (a trailing line break is ignored), is not empty and is at
// most 64 KiB. Nothing here ever puts the secret's content into a message. Thread-safe.
#pragma once

#include <optional>
#include <string>

#include "core/base/status.h"

namespace payoutd {

// A `secret_file` value may start with "$CREDENTIALS_DIRECTORY/" or "${CREDENTIALS_DIRECTORY}/",
// which YAML cannot expand, or with "${CREDENTIALS_DIRECTORY:-DIR}/", which falls back to DIR
// when the variable is not set (the service reads systemd's copy of the credential, an
// administrator's `payoutd check` the file itself). Returns the file with that prefix replaced by
// the variable's value (or DIR), nullopt when it starts with one of the first two and the
// variable is not set, and any other file as it is.
std::optional<std::string> ExpandCredentialsDirectory(const std::string& file);

// Reads the secret from `file` under the rule above. Fails naming the file, never its content.
Result<std::string> ReadSecretFile(const std::string& file);

}  // namespace payoutd
