#include "core/engine/results.h"

#include <ctime>
#include <map>

#include "core/base/csv_text.h"
#include "core/base/json_text.h"

namespace payoutd {
namespace {

int Digits(const CurrencyTable& t, const std::string& code) {
  return t.MinorUnits(code).value_or(2);
}

}  // namespace

std::string FormatIsoTime(int64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Status WriteResultsCsv(PayoutStore& store, std::string_view batch_id,
                       const CurrencyTable& currencies, std::ostream& out) {
  out << "line,id,amount,currency,state,gateway_status,fee,fee_currency,processed_at,attempts,"
         "error\n";
  std::string line;  // one row, reused
  PAYOUTD_RETURN_IF_ERROR(store.ForEachPayout(batch_id, [&](const PayoutRow& r) {
    const Payout& p = r.payout;
    const PayoutProgress& g = r.progress;
    line.clear();
    line += std::to_string(p.line);
    line += ',';
    AppendCsvField(line, p.id);
    line += ',';
    line += FormatFixedAmount(p.amount_minor, Digits(currencies, p.currency));
    line += ',';
    line += p.currency;
    line += ',';
    line += FinalStateName(g.state);
    line += ',';
    AppendCsvField(line, g.gateway_status);
    line += ',';
    if (g.has_fee) line += FormatFixedAmount(g.fee_minor, Digits(currencies, g.fee_currency));
    line += ',';
    if (g.has_fee) line += g.fee_currency;
    line += ',';
    AppendCsvField(line, g.processed_at);
    line += ',';
    line += std::to_string(g.attempts);
    line += ',';
    AppendCsvField(line, g.error);
    line += '\n';
    out << line;
  }));
  if (!out) return Status::Unavailable("cannot write results");
  return Status::Ok();
}

std::string SummaryJson(const BatchProgress& progress, const CurrencyTable& currencies,
                        const std::vector<Approval>& approvals,
                        const std::vector<AuditEntry>& audit) {
  const BatchRecord& b = progress.batch;
  std::string out = "{\"batch\": ";
  AppendJsonString(out, b.id);
  out += ", \"sha256\": ";
  AppendJsonString(out, b.sha256);
  out += ", \"rows\": " + std::to_string(b.rows);
  out += ",\n \"states\": {";
  bool first = true;
  for (FinalState s : {FinalState::kSuccess, FinalState::kFailed, FinalState::kRejected,
                       FinalState::kError, FinalState::kCancelled}) {
    auto it = progress.states.find(s);
    if (it == progress.states.end() || it->second == 0) continue;
    if (!first) out += ", ";
    first = false;
    AppendJsonString(out, FinalStateName(s));
    out += ": " + std::to_string(it->second);
  }
  out += "},\n \"totals\": {";

  // Fees are reported in the fee's own currency, whatever the payout's currency was.
  std::map<std::string, int64_t> fees;
  for (const auto& [cur, t] : progress.totals)
    for (const auto& [fee_cur, amount] : t.fees) fees[fee_cur] += amount;
  std::map<std::string, CurrencyTotals> totals = progress.totals;
  for (const auto& [fee_cur, amount] : fees) totals[fee_cur];
  first = true;
  for (const auto& [cur, t] : totals) {
    int d = Digits(currencies, cur);
    if (!first) out += ", ";
    first = false;
    AppendJsonString(out, cur);
    out += ": {\"requested\": \"" + FormatFixedAmount(t.requested, d) + "\", \"succeeded\": \"" +
           FormatFixedAmount(t.succeeded, d) + "\", \"failed\": \"" +
           FormatFixedAmount(t.failed, d) + "\", \"fees\": \"" +
           FormatFixedAmount(fees.count(cur) ? fees[cur] : 0, d) + "\"}";
  }
  out += "},\n \"started_at\": ";
  AppendJsonString(out, FormatIsoTime(b.started_at_ms));
  out += ", \"finished_at\": ";
  AppendJsonString(out, b.finished_at_ms ? FormatIsoTime(b.finished_at_ms) : std::string());
  // Who signed (docs/approvals.md) and who held, resumed or cancelled it, and when.
  out += ",\n \"approvals\": [";
  for (size_t i = 0; i < approvals.size(); ++i) {
    out += i ? ", {\"principal\": " : "{\"principal\": ";
    AppendJsonString(out, approvals[i].principal);
    out += ", \"key\": ";
    AppendJsonString(out, approvals[i].key_fingerprint);
    out += ", \"at\": ";
    AppendJsonString(out, FormatIsoTime(approvals[i].at_ms));
    out += "}";
  }
  out += "],\n \"audit\": [";
  for (size_t i = 0; i < audit.size(); ++i) {
    out += i ? ", {\"at\": " : "{\"at\": ";
    AppendJsonString(out, FormatIsoTime(audit[i].at_ms));
    out += ", \"action\": ";
    AppendJsonString(out, audit[i].action);
    out += ", \"by\": ";
    AppendJsonString(out, audit[i].by);
    out += ", \"reason\": ";
    AppendJsonString(out, audit[i].reason);
    out += "}";
  }
  out += "]}\n";
  return out;
}

}  // namespace payoutd
