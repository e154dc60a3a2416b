// The reports of a finished batch (docs/results.md): <batch>.results.csv and <batch>.summary.json.
// Pure formatting from the store; the daemon writes them to files atomically. WriteResultsCsv
// reads `store`, so it runs on the thread that uses that store; the rest is pure and thread-safe.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "core/money/money.h"
#include "core/store/payout_store.h"

namespace payoutd {

// results.csv: header
// `line,id,amount,currency,state,gateway_status,fee,fee_currency,processed_at,attempts,error` and
// one row per payout in input order. Amounts use the currency's fixed minor digits.
Status WriteResultsCsv(PayoutStore& store, std::string_view batch_id,
                       const CurrencyTable& currencies, std::ostream& out);

// summary.json: {"batch","sha256","rows","states":{STATE:n, non-zero only},
// "totals":{CUR:{"requested","succeeded","failed","fees"}}, "started_at","finished_at"}.
// `failed` is every final payout not SUCCESS; `fees` sums the fees reported in that currency.
// `approvals` and `audit` (PayoutStore::ListApprovals, ListAudit) become its lists of the same
// names, empty when there were none.
std::string SummaryJson(const BatchProgress& progress, const CurrencyTable& currencies,
                        const std::vector<Approval>& approvals = {},
                        const std::vector<AuditEntry>& audit = {});

// 1764000000123 -> "2025-11-24T16:00:00Z" (UTC, whole seconds).
std::string FormatIsoTime(int64_t unix_ms);

}  // namespace payoutd
