// What a paid batch must come to, against the sandbox gateway's rules (payout-sandbox --help):
// input rows, their CSV, and checks of the reports (docs/results.md) and of the sandbox's ledger
// (every payout reached the gateway with one body, created once, nothing else sent).
//
//   std::vector<PayoutIn> rows = SandboxRows("B", 40);      // some FAILED, some REJECTED
//   DropBatch(spool, "b", PayoutCsv(rows));
//   ... the daemon pays it ...
//   ExpectReports("b", rows, ReadResultsCsv(done + "/b.results.csv"), ReadSummary(...));
//   ExpectLedgerExactlyOnce(rows, sandbox);
//
// Link: as daemon_process.h.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {

// One input row.
struct PayoutIn {
  std::string id, amount, currency, account, name, op;
};

inline int MinorDigits(const std::string& currency) {
  if (currency == "JPY") return 0;
  if (currency == "KWD" || currency == "BHD") return 3;
  return 2;
}

// "42.5" with 2 digits -> 4250. The test's own parser: input amounts are well formed.
inline int64_t ParseMinor(const std::string& amount, int digits) {
  size_t dot = amount.find('.');
  std::string whole = amount.substr(0, dot);
  std::string frac = dot == std::string::npos ? "" : amount.substr(dot + 1);
  frac.resize(static_cast<size_t>(digits), '0');
  return std::stoll(whole + frac);
}

// The sandbox's rules: operator BNK_REJECT is refused (422), an account ending in 13 FAILED.
inline std::string SandboxState(const PayoutIn& r) {
  if (r.op == "BNK_REJECT") return "REJECTED";
  const size_t n = r.account.size();
  return n >= 2 && r.account.compare(n - 2, 2, "13") == 0 ? "FAILED" : "SUCCESS";
}

inline std::string PayoutCsv(const std::vector<PayoutIn>& rows) {
  std::string s = "id,amount,currency,account_number,account_name,operator_code\n";
  for (const auto& r : rows) {
    s += r.id + "," + r.amount + "," + r.currency + "," + r.account + "," + r.name + "," + r.op;
    s += "\n";
  }
  return s;
}

// n USD payouts "<prefix>-<i>"; every `fail_every`th FAILS by the account rule, every
// `refuse_every`th is refused (0: none).
inline std::vector<PayoutIn> SandboxRows(const std::string& prefix, int n, int fail_every = 7,
                                         int refuse_every = 11) {
  std::vector<PayoutIn> rows;
  for (int i = 1; i <= n; ++i) {
    PayoutIn r;
    r.id = prefix + "-" + std::to_string(i);
    r.amount = std::to_string(1 + i % 500) + "." + (i % 10 ? std::to_string(10 + i % 90) : "05");
    r.currency = "USD";
    const bool fails = fail_every > 0 && i % fail_every == 0;
    r.account = "DE" + std::to_string(100000 + i) + (fails ? "13" : "44");
    r.name = "Payee " + std::to_string(i);
    r.op = refuse_every > 0 && i % refuse_every == 0 ? "BNK_REJECT" : "BNK_000";
    rows.push_back(r);
  }
  return rows;
}

// Against the sandbox ledger: every input payout reached the gateway with one body, its exact
// amount, currency and account, created once (refused ones never); nothing else was sent.
inline void ExpectLedgerExactlyOnce(const std::vector<PayoutIn>& rows, SandboxProcess& sandbox) {
  auto ledger = sandbox.Ledger();
  EXPECT_EQ(ledger.size(), rows.size()) << "payouts outside the batch were sent, or some were not";
  int64_t want_created = 0;
  int problems = 0;
  for (const auto& r : rows) {
    auto it = ledger.find(r.id);
    if (it == ledger.end()) {
      ADD_FAILURE() << r.id << " never reached the gateway";
      if (++problems > 10) return;
      continue;
    }
    const SandboxLedgerEntry& e = it->second;
    const bool refused = SandboxState(r) == "REJECTED";
    if (!refused) ++want_created;
    const int64_t minor = ParseMinor(r.amount, MinorDigits(r.currency));
    const bool ok = e.created == !refused && e.distinct_bodies == 1 && e.amount_minor == minor &&
                    e.currency == r.currency && e.account_number == r.account;
    if (!ok) {
      ADD_FAILURE() << r.id << ": created=" << e.created << " distinct_bodies=" << e.distinct_bodies
                    << " amount_minor=" << e.amount_minor << " (want " << minor
                    << ") currency=" << e.currency << " account=" << e.account_number
                    << " post_count=" << e.post_count;
      if (++problems > 10) return;
    }
  }
  EXPECT_EQ(sandbox.Stat("created"), want_created) << "a payout was created more than once";
  EXPECT_EQ(sandbox.Stat("conflicts"), 0);
}

// docs/results.md: one results row per input row in input order, states by the sandbox's rules,
// amounts and fees exact (the sandbox's fee: 1%, rounded down, at least one minor unit); the
// summary's counts and per-currency totals exact to the minor unit.
inline void ExpectReports(const std::string& batch_id, const std::vector<PayoutIn>& rows,
                          const std::vector<ResultRow>& results, const Summary& summary) {
  ASSERT_EQ(results.size(), rows.size());
  std::map<std::string, int64_t> states;
  struct Totals {
    int64_t requested = 0, succeeded = 0, failed = 0, fees = 0;
  };
  std::map<std::string, Totals> totals;
  int problems = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const PayoutIn& in = rows[i];
    const ResultRow& r = results[i];
    const int d = MinorDigits(in.currency);
    const int64_t minor = ParseMinor(in.amount, d);
    const std::string want_state = SandboxState(in);
    const bool refused = want_state == "REJECTED";
    const int64_t fee = refused ? 0 : std::max<int64_t>(1, minor / 100);
    const std::string want_fee = refused ? "" : FormatMinor(fee, d);
    const bool ok = r.line == static_cast<int>(i) + 2 && r.id == in.id &&
                    r.amount == FormatMinor(minor, d) && r.currency == in.currency &&
                    r.state == want_state && r.gateway_status == (refused ? "" : want_state) &&
                    r.fee == want_fee && r.fee_currency == (refused ? "" : in.currency) &&
                    (refused ? !r.error.empty() : !r.processed_at.empty() && r.error.empty()) &&
                    r.attempts >= 1;
    if (!ok && ++problems <= 10) {
      ADD_FAILURE() << "results row " << i << ": line=" << r.line << " id=" << r.id
                    << " amount=" << r.amount << " currency=" << r.currency << " state=" << r.state
                    << " (want " << want_state << ") gateway_status=" << r.gateway_status
                    << " fee=" << r.fee << " (want " << want_fee
                    << ") fee_currency=" << r.fee_currency << " processed_at=" << r.processed_at
                    << " attempts=" << r.attempts << " error=" << r.error;
    }
    ++states[want_state];
    Totals& t = totals[in.currency];
    t.requested += minor;
    (want_state == "SUCCESS" ? t.succeeded : t.failed) += minor;
    t.fees += fee;
  }
  EXPECT_EQ(summary.batch, batch_id);
  EXPECT_EQ(summary.rows, static_cast<int64_t>(rows.size()));
  EXPECT_EQ(summary.states, states);
  EXPECT_EQ(summary.sha256.size(), 64u);
  EXPECT_FALSE(summary.started_at.empty());
  EXPECT_FALSE(summary.finished_at.empty());
  ASSERT_EQ(summary.totals.size(), totals.size());
  for (const auto& [cur, t] : totals) {
    ASSERT_TRUE(summary.totals.count(cur)) << cur;
    const SummaryTotals& s = summary.totals.at(cur);
    const int d = MinorDigits(cur);
    EXPECT_EQ(s.requested, FormatMinor(t.requested, d)) << cur;
    EXPECT_EQ(s.succeeded, FormatMinor(t.succeeded, d)) << cur;
    EXPECT_EQ(s.failed, FormatMinor(t.failed, d)) << cur;
    EXPECT_EQ(s.fees, FormatMinor(t.fees, d)) << cur;
  }
}

}  // namespace payoutd::testing
