#include "daemon/migrate_state.h"

#include <iostream>

#include "core/store/migrate.h"
#include "core/store/pg_connection.h"
#include "daemon/service.h"

namespace payoutd {
namespace {

constexpr const char* kHelp =
    "usage: payoutd migrate-state [--config FILE] --from sqlite:PATH --to postgresql://URL\n"
    "Moves a single-host state (the SQLite file of state.path) into an empty PostgreSQL\n"
    "database, all or nothing: every batch, payout, total, gateway outage, approval, audit line\n"
    "and hold. Stop the daemon first. The password comes from libpq's own means (~/.pgpass,\n"
    "PGPASSFILE); put none in the URL. Refuses a target that is not empty. Exit 0 moved,\n"
    "2 usage, 1 anything else.\n";

}  // namespace

int MigrateStateCommand(const std::vector<std::string>& args) {
  std::string from, to, config;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    std::string* out = s == "--from"     ? &from
                       : s == "--to"     ? &to
                       : s == "--config" ? &config  // accepted on every command; not needed here
                                         : nullptr;
    if (s == "--help" || s == "-h") {
      std::cout << kHelp;
      return kExitOk;
    }
    if (out == nullptr || i + 1 >= args.size()) {
      std::cerr << "payoutd: migrate-state: unexpected '" << s << "'\n\n" << kHelp;
      return kExitUsage;
    }
    *out = args[++i];
  }
  if (from.empty() || to.empty()) {
    std::cerr << "payoutd: migrate-state needs --from and --to\n\n" << kHelp;
    return kExitUsage;
  }
  auto report = MigrateState(from, to);
  if (!report.ok()) {
    std::cerr << "payoutd: migrate-state: " << report.error() << "\n";
    return report.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  std::cout << "moved from " << from << " to " << RedactUrl(to) << ":\n";
  for (const auto& [table, rows] : report->rows) std::cout << "  " << table << ": " << rows << "\n";
  std::cout << "set state.backend: postgresql and state.url, then start payoutd on every host\n";
  return kExitOk;
}

}  // namespace payoutd
