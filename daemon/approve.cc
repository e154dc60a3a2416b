#include "daemon/approve.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/base/log.h"
#include "core/money/money.h"
#include "daemon/approvals.h"
#include "daemon/files.h"

namespace payoutd {
namespace {

std::string LoginName() {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(::getuid(), &pw, buf, sizeof buf, &found) == 0 && found) return found->pw_name;
  return std::to_string(::getuid());
}

// a > b as amounts, each in its own currency's minor units (display order only; exact).
bool Larger(const Payout& a, const Payout& b, const CurrencyTable& t) {
  const int da = t.MinorUnits(a.currency).value_or(2);
  const int db = t.MinorUnits(b.currency).value_or(2);
  __int128 x = a.amount_minor, y = b.amount_minor;
  for (int i = da; i < db; ++i) x *= 10;
  for (int i = db; i < da; ++i) y *= 10;
  return x > y;
}

// Where else a batch file of that name may be, to say why it cannot be approved.
std::string Elsewhere(const std::string& spool, const std::string& batch_id) {
  for (const char* dir : {"inbox", "work", "done", "rejected"})
    if (FileExists(spool + "/" + dir + "/" + batch_id + ".csv")) return dir;
  return "";
}

void PrintBatch(const ValidatedBatch& batch, const ApproveOptions& o, const std::string& path,
                std::ostream& out) {
  const CurrencyTable& t = o.rules.currencies;
  out << "batch " << batch.batch_id << " (" << path << ")\n";
  out << "  sha256     " << batch.sha256 << "\n";
  out << "  rows       " << batch.payouts.size() << "\n";
  out << "  totals    ";
  for (const auto& [currency, total] : batch.totals)
    out << " " << FormatFixedAmount(total, t.MinorUnits(currency).value_or(2)) << " " << currency
        << ";";
  out << "\n";
  if (o.approvals_required >= 0)
    out << "  approvals  " << std::max(o.approvals_given, 0) << " of " << o.approvals_required
        << " so far\n";
  std::vector<size_t> order(batch.payouts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const size_t shown = std::min<size_t>(5, order.size());
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(shown), order.end(),
      [&](size_t a, size_t b) { return Larger(batch.payouts[a], batch.payouts[b], t); });
  out << "  the " << shown << " largest payouts:\n";
  for (size_t k = 0; k < shown; ++k) {
    const Payout p = batch.payouts[order[k]];
    out << "    line " << p.line << "  " << p.id << "  "
        << FormatFixedAmount(p.amount_minor, t.MinorUnits(p.currency).value_or(2)) << " "
        << p.currency << "  to " << MaskAccount(p.account_number) << "  " << p.account_name << "\n";
  }
}

}  // namespace

int RunApprove(const ApproveOptions& o, std::istream& in, std::ostream& out, std::ostream& err) {
  const std::string dir = o.spool_dir + "/approval";
  const std::string path = dir + "/" + o.batch_id + ".csv";
  if (!IsValidId(o.batch_id)) {
    err << "payoutd: '" << o.batch_id << "' is not a batch id\n";
    return 2;
  }
  if (!FileExists(path)) {
    const std::string where = Elsewhere(o.spool_dir, o.batch_id);
    if (!where.empty())
      err << "payoutd: batch " << o.batch_id << " is in " << where << "/, not awaiting approval\n";
    else
      err << "payoutd: no batch " << o.batch_id << " awaiting approval in " << dir << "\n";
    return 2;
  }
  std::string bytes;
  if (!o.accepted_sha256.empty()) {
    auto read = ReadApprovedBytes(path, o.accepted_sha256);
    if (!read.ok()) {
      err << "payoutd: " << read.error() << "\n";
      return 1;
    }
    bytes = std::move(*read);
  } else {
    std::ifstream file(path, std::ios::binary);
    std::stringstream ss;
    ss << file.rdbuf();
    if (!file) {
      err << "payoutd: cannot read " << path << "\n";
      return 1;
    }
    bytes = ss.str();
  }
  std::istringstream text(bytes);
  ValidatedBatch batch = BatchValidator(o.rules).Validate(o.batch_id, text);
  if (!batch.ok()) {
    err << "payoutd: " << path << " does not validate (" << batch.error_count
        << " errors; first at line " << batch.errors.front().line << ": "
        << batch.errors.front().message << "); not signing it\n";
    return 1;
  }
  PrintBatch(batch, o, "approval/" + o.batch_id + ".csv", out);

  const std::string user = o.user.empty() ? LoginName() : o.user;
  // Never over another signature (one user may sign with two keys; a shared account signs for
  // several people): the next free `<user>-N` label.
  std::string sig_name = o.batch_id + ".csv." + SignatureLabel(user) + ".sig";
  for (int n = 2; FileExists(dir + "/" + sig_name) || FileExists(dir + "/" + sig_name + ".invalid");
       ++n) {
    sig_name = o.batch_id + ".csv." + SignatureLabel(user) + "-" + std::to_string(n) + ".sig";
  }
  if (!o.yes) {
    out << "Sign this batch as " << user << " with " << o.key << "? [y/N] " << std::flush;
    std::string answer;
    std::getline(in, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      out << "not signed\n";
      return 1;
    }
  }
  auto signature = MakeSshSignature(o.key, kApprovalNamespace, bytes, o.ssh);
  if (!signature.ok()) {
    err << "payoutd: " << signature.error() << "\n";
    return 1;
  }
  // Under a name the daemon ignores until the rename: it never reads half a signature.
  if (Status st = WriteFileAtomically(dir + "/" + sig_name, *signature); !st.ok()) {
    err << "payoutd: " << st.message() << "\n";
    return 1;
  }
  out << "signed: " << dir << "/" << sig_name << "\n";
  return 0;
}

}  // namespace payoutd
