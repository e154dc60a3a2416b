// payoutd migrate-state: moves a single-host state (SQLite) into an empty PostgreSQL state, so
// that several hosts can share it (docs/several-hosts.md).
//
// Guarantees:
// - Everything moves: every table of the SQLite state (batches, payouts with their progress and
//   stored order, batch totals, gateway outages, and whatever tables a later schema adds), row for
//   row and value for value. A SQLite table or column that the PostgreSQL schema has no place for
//   stops the move before anything is written, naming it.
// - All or nothing: one PostgreSQL transaction, read from one SQLite snapshot. The target's
//   batch_totals are checked against a recount of its payouts before COMMIT.
// - The target must be empty (no batch, payout, total or outage): a second run, or a target some
//   instance already uses, is refused and left as it was. The schema is created if missing.
// - The source is only read; it must be at the schema version this payoutd writes (payoutd run
//   upgrades an older file when it opens it). payoutd must not be running on it meanwhile.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "core/store/pg_connection.h"

namespace payoutd {

struct MigrationReport {
  std::map<std::string, int64_t> rows;  // rows moved, by table
};

// `from`: "sqlite:PATH". `to`: a libpq URI ("postgresql://..." or "postgres://...") or
// "postgresql:" followed by a key=value connection string. `password_file`: optional, with the
// rule of state.password_file (else libpq's own means: PGPASSFILE, ~/.pgpass).
// Errors: kInvalidArgument for a bad --from/--to, kFailedPrecondition for a target that is not
// empty or a source of another schema version, kUnavailable when either cannot be reached.
Result<MigrationReport> MigrateState(std::string_view from, std::string_view to,
                                     const std::string& password_file = "");

}  // namespace payoutd
