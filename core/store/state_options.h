// Where the durable state lives: the `state` section of the configuration
// (docs/configuration.md#state), as the store module takes it. The configuration holds this very
// struct; nothing here opens anything.
#pragma once

#include <chrono>
#include <string>

#include "core/base/clock.h"

namespace payoutd {

struct StateOptions {
  enum class Backend { kSqlite, kPostgresql };
  Backend backend = Backend::kSqlite;
  // SQLite: the state file.
  std::string path;
  // PostgreSQL: a libpq connection URI or key=value string. Multi-host URIs with
  // target_session_attrs=read-write and sslmode=... are libpq's business and pass through as given.
  // It should carry no password (use password_file, PGPASSFILE or ~/.pgpass).
  std::string url;
  // PostgreSQL: a file holding the password, readable by its owner only unless it lies under
  // $CREDENTIALS_DIRECTORY (the rule of auth.secret_file). Read at every connect, so a rotated
  // password is picked up by the next reconnection. Empty: libpq's own means.
  std::string password_file;
  // PostgreSQL: this instance's name in the `instances` table, `payoutd status` and the logs.
  // Empty: the host name.
  std::string instance;
  // PostgreSQL: the leader's lease (docs/several-hosts.md). Renewed every lease/3.
  Duration lease = std::chrono::seconds(15);
};

}  // namespace payoutd
