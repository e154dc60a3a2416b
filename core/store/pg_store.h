// PayoutStore on PostgreSQL: the state shared by several payoutd instances (docs/several-hosts.md).
// The contract is payout_store.h's; the schema and what each table guarantees are in pg_schema.cc.
//
// What differs from SQLite, and what the daemon must know:
// - A store opened with a fencing token (the term of the lease this instance holds, see
//   pg_lease.h) checks it in every write: once another instance has taken the lease, every write
//   fails as "fenced" and nothing of it is committed. Token 0: writes are not fenced (operator
//   commands, migrate-state).
// - Losing the database is an error of its own kind ("unavailable", PgErrorKind::kUnavailable):
//   the call did nothing durable, or (for a COMMIT that got no answer) the caller cannot know.
//   Every write is safe to repeat: Apply, SetBatchStatus and RecordOutage write values, not
//   increments; a CreateBatch repeated after an unanswered COMMIT succeeds if that COMMIT did.
//   The next call after a broken connection reconnects (with libpq's multi-host failover).
// - One group commit (Apply) is one statement, one round trip: payoutd_apply over arrays.
//
// Threading: as PayoutStore, one thread at a time (the store thread); it holds one connection.
#pragma once

#include <cstdint>
#include <memory>

#include "core/base/status.h"
#include "core/store/payout_store.h"
#include "core/store/pg_connection.h"

namespace payoutd {

// Opens the store on `db`: connects, then creates or upgrades the schema (checks it when
// read_only). `fencing_token`: the lease term to check in every write, 0 for none.
Result<std::unique_ptr<PayoutStore>> OpenPgPayoutStore(PgConnectOptions db, int64_t fencing_token,
                                                       bool read_only);

}  // namespace payoutd
