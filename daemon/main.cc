// payoutd: one binary, subcommands (docs/cli.md). Every user-facing message about bad input or
// configuration is produced here, from the Status values the modules return.
#include <sys/stat.h>

#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/summary.h"
#include "core/batch/batch.h"
#include "core/base/log.h"
#include "core/store/open_store.h"
#include "core/store/payout_store.h"
#include "core/store/pg_lease.h"
#include "core/engine/results.h"
#include "daemon/intake.h"
#include "daemon/migrate_state.h"
#include "daemon/service.h"

#ifndef PAYOUTD_VERSION
#define PAYOUTD_VERSION "dev"
#endif

namespace payoutd {
namespace {

constexpr const char* kDefaultConfig = "/etc/payoutd/payoutd.yaml";

constexpr const char* kUsage =
    "usage: payoutd <command> [--config FILE] [options]\n"
    "\n"
    "commands:\n"
    "  run                          run the daemon in the foreground (what systemd starts)\n"
    "  check                        validate the configuration and secret, print a summary\n"
    "  validate BATCH.csv           validate a batch and print its errors; sends nothing\n"
    "  process BATCH.csv [--out DIR] process one batch to completion, write its results to DIR\n"
    "  status [BATCH]               progress of batches: counts per state, totals, oldest pending\n"
    "  migrate-state --from sqlite:PATH --to postgresql://URL   move the state to PostgreSQL\n"
    "\n"
    "--config FILE defaults to /etc/payoutd/payoutd.yaml. 'payoutd <command> --help' for more.\n"
    "exit codes: 0 success; 1 runtime failure; 2 usage or configuration error;\n"
    "            3 batch finished with payouts not SUCCESS; 4 batch invalid or rejected\n";

const std::map<std::string, std::string>& CommandHelp() {
  static const std::map<std::string, std::string> help = {
      {"run",
       "usage: payoutd run [--config FILE]\n"
       "Runs the daemon in the foreground: watches spool.dir/inbox for *.csv batches, pays them,\n"
       "writes results to spool.dir/done. SIGTERM/SIGINT drain and exit 0; SIGHUP reloads limits,\n"
       "retry, polling and log settings.\n"},
      {"check",
       "usage: payoutd check [--config FILE]\n"
       "Validates the configuration and the secret file and prints a summary (never the secret).\n"
       "Exit 0 when valid, 2 with every error otherwise.\n"},
      {"validate",
       "usage: payoutd validate [--config FILE] BATCH.csv\n"
       "Validates a batch against the rules of the configuration (and, when the state exists, against\n"
       "batches and payout ids seen before). Sends nothing. Exit 0 valid (rows and totals printed),\n"
       "4 invalid (errors printed as line,column,error), 2 bad configuration.\n"},
      {"process",
       "usage: payoutd process [--config FILE] BATCH.csv [--out DIR]\n"
       "Pays one batch to completion in the foreground and writes BATCH.results.csv and\n"
       "BATCH.summary.json to DIR (default: the current folder). Exit 0 all SUCCESS, 3 some payouts\n"
       "not SUCCESS, 4 batch invalid or rejected (BATCH.errors.csv in DIR), 1 runtime failure.\n"},
      {"status",
       "usage: payoutd status [--config FILE] [BATCH]\n"
       "Shows progress from the state: per batch its status, counts per state, totals and the\n"
       "oldest pending payout. Reads only; safe while 'payoutd run' is running.\n"},
  };
  return help;
}

struct Args {
  std::string command;
  std::string config = kDefaultConfig;
  std::string out;
  std::vector<std::string> positional;
  bool help = false;
};

int Usage(const std::string& message) {
  std::cerr << "payoutd: " << message << "\n\n" << kUsage;
  return kExitUsage;
}

// The configuration; nullopt once every error in it is on stderr (exit with kExitUsage then).
std::optional<Config> Load(const Args& a) {
  Result<Config> cfg = LoadConfig(a.config);
  if (!cfg.ok()) {
    std::cerr << "payoutd: configuration " << a.config << " is not valid:\n" << cfg.error() << "\n";
    return std::nullopt;
  }
  return std::move(*cfg);
}

int Check(const Args& a) {
  std::optional<Config> cfg = Load(a);
  if (!cfg) return kExitUsage;
  std::cout << Summarize(*cfg) << "configuration OK\n";
  return kExitOk;
}

std::string Totals(const std::map<std::string, int64_t>& totals, const CurrencyTable& t) {
  std::string out;
  for (const auto& [cur, minor] : totals)
    out += "  " + cur + " " + FormatFixedAmount(minor, t.MinorUnits(cur).value_or(2)) + "\n";
  return out;
}

int Validate(const Args& a) {
  std::optional<Config> cfg = Load(a);
  if (!cfg) return kExitUsage;
  const std::string& path = a.positional[0];
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    std::cerr << "payoutd: cannot read batch " << path << ": " << std::strerror(errno) << "\n";
    return kExitBatchInvalid;
  }
  BatchValidator validator(cfg->batches);
  std::unique_ptr<PayoutStore> store;
  if (::stat(cfg->state.path.c_str(), &st) == 0) {
    auto s = PayoutStore::Open(cfg->state.path, /*read_only=*/true);
    if (s.ok()) {
      store = std::move(*s);
    } else {  // the rules are still checked; say that the history is not
      std::cerr << "payoutd: warning: " << s.error()
                << "; batches and payout ids seen before are not checked\n";
    }
  }
  std::string file_name = path.substr(path.find_last_of('/') + 1);
  Intake in = TakeBatch(store.get(), validator, BatchIdFromFileName(file_name), path, file_name, 0, false);
  if (in.kind == Intake::Kind::kFailed) {
    std::cerr << "payoutd: " << in.status.message() << "\n";
    return kExitFailure;
  }
  if (in.kind == Intake::Kind::kResumed) {
    std::cerr << "payoutd: batch " << BatchIdFromFileName(file_name) << " is already in the state (accepted earlier)\n";
    return kExitBatchInvalid;
  }
  if (in.kind == Intake::Kind::kRejected) {
    std::cout << FormatErrorsCsv(in.batch);
    std::cerr << "payoutd: " << path << ": " << in.batch.error_count << " error(s); the batch would be rejected\n";
    return kExitBatchInvalid;
  }
  std::cout << "batch " << in.batch.batch_id << ": valid, " << in.batch.payouts.size() << " payouts\n"
            << "sha256 " << in.batch.sha256 << "\n"
            << "totals:\n"
            << Totals(in.batch.totals, cfg->batches.currencies);
  return kExitOk;
}

void PrintProgress(const BatchProgress& p, const CurrencyTable& t, int64_t now_ms) {
  static const char* kStatus[] = {"active", "finished", "reported"};
  std::cout << "batch " << p.batch.id << " (" << kStatus[static_cast<int>(p.batch.status)] << "), "
            << p.batch.rows << " payouts, started " << FormatIsoTime(p.batch.started_at_ms);
  if (p.batch.finished_at_ms) std::cout << ", finished " << FormatIsoTime(p.batch.finished_at_ms);
  std::cout << "\n  states:";
  for (FinalState s : {FinalState::kSuccess, FinalState::kFailed, FinalState::kRejected, FinalState::kError}) {
    auto it = p.states.find(s);
    std::cout << " " << FinalStateName(s) << "=" << (it == p.states.end() ? 0 : it->second);
  }
  int64_t pending = 0;
  for (const auto& [stage, n] : p.stages)
    if (stage != Stage::kFinal) pending += n;
  std::cout << " pending=" << pending;
  if (pending) {
    std::cout << " (";
    bool first = true;
    for (const auto& [stage, n] : p.stages) {
      if (stage == Stage::kFinal || !n) continue;
      std::cout << (first ? "" : " ") << StageName(stage) << "=" << n;
      first = false;
    }
    std::cout << ")";
  }
  std::cout << "\n";
  for (const auto& [cur, tot] : p.totals) {
    int d = t.MinorUnits(cur).value_or(2);
    std::cout << "  " << cur << ": requested " << FormatFixedAmount(tot.requested, d) << ", succeeded "
              << FormatFixedAmount(tot.succeeded, d) << ", failed " << FormatFixedAmount(tot.failed, d)
              << ", pending " << FormatFixedAmount(tot.pending, d) << "\n";
  }
  if (p.oldest_pending_since_ms)
    std::cout << "  oldest pending payout: submitted " << FormatIsoTime(p.oldest_pending_since_ms) << " ("
              << (now_ms - p.oldest_pending_since_ms) / 1000 << "s ago)\n";
}

// The gateway circuit, as the running daemon last recorded it: an outage going on, or the last one
// of the past day.
void PrintGatewayOutage(PayoutStore& store, int64_t now_ms) {
  auto outages = store.LoadOutages(now_ms - 24 * 3600 * 1000);
  if (!outages.ok()) std::cerr << "payoutd: gateway outages: " << outages.error() << "\n";
  if (!outages.ok() || outages->empty()) return;
  const GatewayOutage& o = outages->back();
  if (o.ended_at_ms == 0) {
    std::cout << "gateway unreachable since " << FormatIsoTime(o.started_at_ms) << " ("
              << (now_ms - o.started_at_ms) / 1000 << "s), cause: " << o.cause;
    if (o.next_probe_at_ms)
      std::cout << "; next probe in " << std::max<int64_t>(0, (o.next_probe_at_ms - now_ms + 999) / 1000) << "s";
    std::cout << "\n  sending is paused; no payout fails for it, each is sent or checked once the gateway answers\n";
    return;
  }
  std::cout << "last gateway outage: " << FormatIsoTime(o.started_at_ms) << " to " << FormatIsoTime(o.ended_at_ms)
            << " (" << (o.ended_at_ms - o.started_at_ms) / 1000 << "s), cause: " << o.cause << "\n";
}

// A shared PostgreSQL state: who leads, and every instance with the time since it was last seen.
void PrintInstances(const StateOptions& state) {
  PgConnection conn(PgConnectOptionsFor(state));
  Result<ServiceInstances> s = ReadServiceInstances(conn);
  if (!s.ok()) {
    std::cerr << "payoutd: warning: " << s.error() << "\n";
    return;
  }
  auto secs = [](Duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + "s";
  };
  if (s->leader.empty()) {
    std::cout << "leader: none (no instance holds the lease; term " << s->fencing << ")\n";
  } else {
    std::cout << "leader: " << s->leader << " (term " << s->fencing << ", lease left "
              << secs(s->lease_left) << ")\n";
  }
  for (const InstanceInfo& i : s->instances) {
    std::cout << "  " << i.name << (i.leader ? " leader" : " standby") << ", last seen "
              << secs(i.since_seen) << " ago\n";
  }
}

int StatusCommand(const Args& a) {
  std::optional<Config> cfg = Load(a);
  if (!cfg) return kExitUsage;
  const bool shared = cfg->state.backend == StateOptions::Backend::kPostgresql;
  struct stat st;
  if (!shared && ::stat(cfg->state.path.c_str(), &st) != 0) {
    std::cout << "no batches yet (no state at " << cfg->state.path << ")\n";
    return kExitOk;
  }
  StoreAccess read_only;
  read_only.read_only = true;
  auto store = OpenStore(cfg->state, read_only);
  if (!store.ok()) {
    const std::string where =
        shared ? RedactUrl(std::string_view(cfg->state.url)) : cfg->state.path;
    std::cerr << "payoutd: state " << where << ": " << store.error() << "\n";
    return kExitFailure;
  }
  if (shared) PrintInstances(cfg->state);
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::string> ids;
  if (!a.positional.empty()) {
    ids.push_back(a.positional[0]);
  } else {
    auto batches = (*store)->ListBatches();
    if (!batches.ok()) {
      std::cerr << "payoutd: " << batches.error() << "\n";
      return kExitFailure;
    }
    for (const auto& b : *batches) ids.push_back(b.id);
    if (ids.empty()) std::cout << "no batches yet\n";
  }
  PrintGatewayOutage(**store, now_ms);
  for (const auto& id : ids) {
    auto p = (*store)->Progress(id);
    if (!p.ok()) {
      std::cerr << "payoutd: batch " << id << ": " << p.error() << "\n";
      return kExitFailure;
    }
    PrintProgress(*p, cfg->batches.currencies, now_ms);
  }
  return kExitOk;
}

int Serve(const Args& a, ServiceOptions::Mode mode) {
  std::optional<Config> cfg = Load(a);
  if (!cfg) return kExitUsage;
  ServiceOptions o;
  o.mode = mode;
  o.config = std::move(*cfg);
  if (mode == ServiceOptions::Mode::kProcess) {
    o.batch_path = a.positional[0];
    struct stat st;
    if (::stat(o.batch_path.c_str(), &st) != 0) {
      std::cerr << "payoutd: cannot read batch " << o.batch_path << ": " << std::strerror(errno) << "\n";
      return kExitBatchInvalid;
    }
    o.out_dir = a.out.empty() ? "." : a.out;
  }
  return RunService(std::move(o));
}

}  // namespace
}  // namespace payoutd

int main(int argc, char** argv) {
  using namespace payoutd;
  Args a;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage("no command given");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (args[0] == "--version") {
    std::cout << "payoutd " << PAYOUTD_VERSION << "\n";
    return kExitOk;
  }
  if (args[0] == "migrate-state") return MigrateStateCommand({args.begin() + 1, args.end()});
  a.command = args[0];
  if (!CommandHelp().count(a.command)) return Usage("unknown command '" + a.command + "'");
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& s = args[i];
    auto value = [&](const std::string& flag, std::string* out) -> bool {
      if (s == flag) {
        if (i + 1 >= args.size()) return false;
        *out = args[++i];
        return true;
      }
      *out = s.substr(flag.size() + 1);
      return true;
    };
    if (s == "--help" || s == "-h") {
      a.help = true;
    } else if (s == "--config" || s.rfind("--config=", 0) == 0) {
      if (!value("--config", &a.config)) return Usage("--config needs a file");
    } else if (a.command == "process" && (s == "--out" || s.rfind("--out=", 0) == 0)) {
      if (!value("--out", &a.out)) return Usage("--out needs a folder");
    } else if (!s.empty() && s[0] == '-') {
      return Usage("unknown option '" + s + "' for '" + a.command + "'");
    } else {
      a.positional.push_back(s);
    }
  }
  if (a.help) {
    std::cout << CommandHelp().at(a.command);
    return kExitOk;
  }
  size_t want_min = (a.command == "validate" || a.command == "process") ? 1 : 0;
  size_t want_max = (a.command == "run" || a.command == "check") ? 0 : 1;
  if (a.positional.size() < want_min) return Usage("'" + a.command + "' needs a batch file");
  if (a.positional.size() > want_max) return Usage("too many arguments for '" + a.command + "'");

  if (a.command == "check") return Check(a);
  if (a.command == "validate") return Validate(a);
  if (a.command == "status") return StatusCommand(a);
  if (a.command == "process") return Serve(a, ServiceOptions::Mode::kProcess);
  return Serve(a, ServiceOptions::Mode::kRun);
}
