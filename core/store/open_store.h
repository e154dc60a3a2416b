// Opens the state the configuration names (state.backend): the one place that picks SQLite or
// PostgreSQL, so the daemon and the commands need not know which.
//
//   StateOptions state = config.state;                 // backend, path or url, password_file...
//   auto lease = MakeLeaderLease(state);               // PostgreSQL only: leadership (pg_lease.h)
//   lease->Start(on_change);                           // ... wait until lease->IsLeader()
//   auto store = OpenStore(state, {.fencing_token = lease->fencing()});
//
// With SQLite there is no lease (one host, one `payoutd run`): MakeLeaderLease returns nullptr
// and the fencing token is ignored.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/base/status.h"
#include "core/store/payout_store.h"
#include "core/store/pg_connection.h"
#include "core/store/pg_lease.h"
#include "core/store/state_options.h"

namespace payoutd {

// How this process uses the state.
struct StoreAccess {
  // Reads only (payoutd status): the schema is checked, never created or upgraded.
  bool read_only = false;
  // PostgreSQL: the term of the lease this instance holds (LeaderLease::fencing()). Every write
  // checks it and fails as fenced once another instance has taken over. 0: writes are not fenced
  // (operator commands acting on the state directly, migrate-state).
  int64_t fencing_token = 0;
};

Result<std::unique_ptr<PayoutStore>> OpenStore(const StateOptions& state,
                                               const StoreAccess& access = {});

// The leader's lease of this instance on a PostgreSQL state; nullptr for SQLite.
std::unique_ptr<LeaderLease> MakeLeaderLease(const StateOptions& state);

// state.instance, or the host name when it is empty.
std::string InstanceName(const StateOptions& state);

// The libpq options of a PostgreSQL state (url, password_file).
PgConnectOptions PgConnectOptionsFor(const StateOptions& state);

// Checks state.url without connecting (libpq's own parser); the message never holds a password.
Status CheckPgUrl(const std::string& url);

}  // namespace payoutd
