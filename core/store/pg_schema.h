// The PostgreSQL schema of payoutd's state: tables, indexes and the two server-side functions every
// write goes through, with a version so that an older payoutd refuses a newer schema.
//
// Guarantees:
// - EnsurePgSchema creates the schema at first start and upgrades an older one, in one
//   transaction under an advisory lock: several instances starting together create it once.
// - A database holding a newer schema_version than this payoutd knows is refused with a message
//   that says so, and nothing is written to it.
#pragma once

#include "core/base/status.h"
#include "core/store/pg_connection.h"

namespace payoutd {

// 1: the state, the lease, the instances; 2: control_requests (operator commands from any host).
constexpr int kPgSchemaVersion = 2;

// The schema version the database holds: 0 when it holds no payoutd state.
PgResult ReadPgSchemaVersion(PgConnection& conn, int* version);

// Creates or upgrades the schema (create = true), or only checks that it is there at this
// version (create = false, for read-only users such as `payoutd status`).
PgResult EnsurePgSchema(PgConnection& conn, bool create);

}  // namespace payoutd
