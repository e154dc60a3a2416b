// payoutd: one binary, subcommands (docs/cli.md). Every user-facing message about bad input or
// configuration is produced here, from the Status values the modules return.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/duration.h"
#include "config/listen_check.h"
#include "config/summary.h"
#include "core/base/log.h"
#include "core/batch/batch.h"
#include "core/engine/results.h"
#include "core/store/open_store.h"
#include "core/store/payout_store.h"
#include "core/store/pg_lease.h"
#include "daemon/control_command.h"
#include "daemon/intake.h"
#include "daemon/migrate_state.h"
#include "daemon/service.h"
#include "daemon/status_command.h"

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
    "  status [BATCH] [--json] [--watch]  progress of batches; --watch keeps it on screen\n"
    "  approve BATCH --key KEY [--yes]  show a batch awaiting approval and sign it\n"
    "  hold BATCH|--all [--reason T]    start no new payment for the batch (or every batch)\n"
    "  resume BATCH|--all [--reason T]  undo a hold\n"
    "  cancel BATCH [--reason T]        never send the batch's unsent payouts (CANCELLED)\n"
    "                               (hold, resume, cancel: --timeout D waits D for the answer)\n"
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
       "Validates a batch against the rules of the configuration (and, when the state exists, "
       "against\n"
       "batches and payout ids seen before). Sends nothing. Exit 0 valid (rows and totals "
       "printed),\n"
       "4 invalid (errors printed as line,column,error), 2 bad configuration.\n"},
      {"process",
       "usage: payoutd process [--config FILE] BATCH.csv [--out DIR]\n"
       "Pays one batch to completion in the foreground and writes BATCH.results.csv and\n"
       "BATCH.summary.json to DIR (default: the current folder). Exit 0 all SUCCESS, 3 some "
       "payouts\n"
       "not SUCCESS, 4 batch invalid or rejected (BATCH.errors.csv in DIR), 1 runtime failure.\n"},
      {"status",
       "usage: payoutd status [--config FILE] [BATCH] [--json] [--watch [--interval DURATION]]\n"
       "Shows progress from the state: per batch its status (approvals, holds, cancellation),\n"
       "counts per state, totals and the oldest pending payout. Reads only; safe while 'payoutd\n"
       "run' is running. --json: one JSON object (docs/cli.md gives its shape). --watch: again\n"
       "every second (or --interval) with payouts per second and the time left, until Ctrl-C.\n"},
      {"approve",
       "usage: payoutd approve [--config FILE] BATCH --key SSH_PRIVATE_KEY [--yes]\n"
       "Shows the batch waiting in spool.dir/approval (rows, totals per currency, sha256, the "
       "five\n"
       "largest payouts) and, once confirmed (or with --yes), signs its exact bytes with\n"
       "'ssh-keygen -Y sign -n payoutd-batch', writing approval/BATCH.csv.<user>.sig. Needs no\n"
       "running daemon. Exit 0 signed, 1 not signed, 2 no such batch awaiting approval.\n"},
      {"hold",
       "usage: payoutd hold [--config FILE] BATCH|--all [--reason TEXT] [--timeout DURATION]\n"
       "Starts no new payment for the batch (polls of payouts already sent go on); with --all for\n"
       "every batch, including those that arrive later. Takes effect before it returns and\n"
       "survives a restart. With a PostgreSQL state it works from any host: off the leader's\n"
       "host the request goes through the state. --timeout: how long to wait for the daemon's\n"
       "answer (default 60s). Exit 0 done, 2 usage or unknown/finished batch, 1 anything else\n"
       "(the message says whether the request may still take effect).\n"},
      {"resume",
       "usage: payoutd resume [--config FILE] BATCH|--all [--reason TEXT] [--timeout DURATION]\n"
       "Undoes a hold; --all resumes every batch. Exit codes as for hold.\n"},
      {"cancel",
       "usage: payoutd cancel [--config FILE] BATCH [--reason TEXT] [--timeout DURATION]\n"
       "Every payout of the batch not yet sent becomes final CANCELLED; those already sent finish\n"
       "as usual and the report follows. A batch awaiting approval goes to rejected/. Cannot be\n"
       "undone. Exit codes as for hold.\n"},
  };
  return help;
}

struct Args {
  std::string command;
  std::string config = kDefaultConfig;
  std::string out;
  std::vector<std::string> positional;
  bool help = false;
  bool all = false;                                              // hold, resume
  bool yes = false;                                              // approve
  std::string reason;                                            // hold, resume, cancel
  std::string key;                                               // approve
  std::chrono::milliseconds timeout = std::chrono::seconds(60);  // hold, resume, cancel
  bool has_reason = false;
  StatusOptions status;  // `status` only: --json, --watch, --interval
};

int Usage(const std::string& message) {
  std::cerr << "payoutd: " << message << "\n\n" << kUsage;
  return kExitUsage;
}

// The configuration; nullopt once every error in it is on stderr (exit with kExitUsage then).
// Commands that never talk to the gateway (validate, status) do not read the secret, so they
// work for people who may not read it.
std::optional<Config> Load(const Args& a, bool read_secret = true) {
  Result<Config> cfg = LoadConfig(a.config, read_secret);
  if (!cfg.ok()) {
    std::cerr << "payoutd: configuration " << a.config << " is not valid:\n" << cfg.error() << "\n";
    return std::nullopt;
  }
  return std::move(*cfg);
}

int Check(const Args& a) {
  std::optional<Config> cfg = Load(a);
  if (!cfg) return kExitUsage;
  if (Status st = CheckListenAddresses(*cfg); !st.ok()) {
    std::cerr << "payoutd: configuration " << a.config << " is not valid:\n"
              << st.message() << "\n";
    return kExitUsage;
  }
  std::cout << Summarize(*cfg) << "configuration OK\n";
  return kExitOk;
}

std::string Totals(const std::map<std::string, int64_t>& totals, const CurrencyTable& t) {
  std::string out;
  for (const auto& [cur, minor] : totals)
    out += "  " + cur + " " + FormatFixedAmount(minor, t.MinorUnits(cur).value_or(2)) + "\n";
  return out;
}

// A batch file named on the command line that cannot be read is a usage error (exit 2), not
// an invalid batch: nothing was checked. Says why on stderr.
bool BatchReadable(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  std::string why;
  if (fd < 0)
    why = std::strerror(errno);
  else if (::fstat(fd, &st) != 0)
    why = std::strerror(errno);
  else if (!S_ISREG(st.st_mode))
    why = "not a regular file";
  if (fd >= 0) ::close(fd);
  if (why.empty()) return true;
  std::cerr << "payoutd: cannot read batch " << path << ": " << why << "\n";
  return false;
}

int Validate(const Args& a) {
  std::optional<Config> cfg = Load(a, /*read_secret=*/false);
  if (!cfg) return kExitUsage;
  const std::string& path = a.positional[0];
  if (!BatchReadable(path)) return kExitUsage;
  struct stat st;
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
  Intake in =
      TakeBatch(store.get(), validator, BatchIdFromFileName(file_name), path, file_name, 0, false);
  if (in.kind == Intake::Kind::kFailed) {
    std::cerr << "payoutd: " << in.status.message() << "\n";
    return kExitFailure;
  }
  if (in.kind == Intake::Kind::kResumed) {
    std::cerr << "payoutd: batch " << BatchIdFromFileName(file_name)
              << " is already in the state (accepted earlier)\n";
    return kExitBatchInvalid;
  }
  if (in.kind == Intake::Kind::kRejected) {
    std::cout << FormatErrorsCsv(in.batch);
    std::cerr << "payoutd: " << path << ": " << in.batch.error_count
              << " error(s); the batch would be rejected\n";
    return kExitBatchInvalid;
  }
  std::cout << "batch " << in.batch.batch_id << ": valid, " << in.batch.payouts.size()
            << " payouts\n"
            << "sha256 " << in.batch.sha256 << "\n"
            << "totals:\n"
            << Totals(in.batch.totals, cfg->batches.currencies);
  return kExitOk;
}

int StatusCommand(const Args& a) {
  std::optional<Config> cfg = Load(a, /*read_secret=*/false);
  if (!cfg) return kExitUsage;
  StatusOptions o = a.status;
  o.batch = a.positional.empty() ? "" : a.positional[0];
  o.terminal = ::isatty(STDOUT_FILENO) == 1;
  return RunStatusCommand(*cfg, o, std::cout, std::cerr);
}

int Control(const Args& a) {
  ControlRequest r;
  r.command = a.command;
  r.all = a.all;
  r.reason = a.reason;
  if (!a.positional.empty()) r.batch = a.positional[0];
  if (a.command == "cancel" && a.all) return Usage("'cancel' takes one batch, not --all");
  if (a.all == !r.batch.empty())
    return Usage("'" + a.command + "' needs a batch" + (a.command == "cancel" ? "" : " or --all"));
  if (a.command != "cancel" && a.command != "hold" && a.command != "resume") return Usage("?");
  std::optional<Config> cfg = Load(a, /*read_secret=*/false);
  if (!cfg) return kExitUsage;
  return ControlCommand(*cfg, r, a.timeout, std::cout, std::cerr);
}

int Approve(const Args& a) {
  if (a.positional.size() != 1) return Usage("'approve' needs a batch");
  if (a.key.empty()) return Usage("'approve' needs --key SSH_PRIVATE_KEY");
  std::optional<Config> cfg = Load(a, /*read_secret=*/false);
  if (!cfg) return kExitUsage;
  return ApproveCommand(*cfg, a.positional[0], a.key, a.yes);
}

int Serve(const Args& a, ServiceOptions::Mode mode) {
  std::optional<Config> cfg = Load(a);
  if (!cfg) return kExitUsage;
  ServiceOptions o;
  o.mode = mode;
  o.config = std::move(*cfg);
  if (mode == ServiceOptions::Mode::kProcess) {
    o.batch_path = a.positional[0];
    if (!BatchReadable(o.batch_path)) return kExitUsage;
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
    // A duration option of at least `least`; false when it is missing, malformed or shorter.
    auto duration = [&](const std::string& flag, Duration least,
                        std::chrono::milliseconds* out) -> bool {
      std::string text;
      std::optional<Duration> d;
      if (value(flag, &text)) d = ParseDuration(text);
      if (!d.has_value() || d.value() < least) return false;
      *out = std::chrono::duration_cast<std::chrono::milliseconds>(d.value());
      return true;
    };
    if (s == "--help" || s == "-h") {
      a.help = true;
    } else if (s == "--config" || s.rfind("--config=", 0) == 0) {
      if (!value("--config", &a.config)) return Usage("--config needs a file");
    } else if (a.command == "process" && (s == "--out" || s.rfind("--out=", 0) == 0)) {
      if (!value("--out", &a.out)) return Usage("--out needs a folder");
    } else if ((a.command == "hold" || a.command == "resume" || a.command == "cancel") &&
               (s == "--reason" || s.rfind("--reason=", 0) == 0)) {
      if (!value("--reason", &a.reason)) return Usage("--reason needs a text");
      a.has_reason = true;
    } else if ((a.command == "hold" || a.command == "resume" || a.command == "cancel") &&
               s == "--all") {
      a.all = true;
    } else if ((a.command == "hold" || a.command == "resume" || a.command == "cancel") &&
               (s == "--timeout" || s.rfind("--timeout=", 0) == 0)) {
      if (!duration("--timeout", std::chrono::seconds(1), &a.timeout))
        return Usage("--timeout needs a duration of at least 1s, e.g. 30s");
    } else if (a.command == "approve" && (s == "--key" || s.rfind("--key=", 0) == 0)) {
      if (!value("--key", &a.key)) return Usage("--key needs a private key file");
    } else if (a.command == "approve" && s == "--yes") {
      a.yes = true;
    } else if (a.command == "status" && (s == "--json" || s == "--watch")) {
      (s == "--json" ? a.status.json : a.status.watch) = true;
    } else if (a.command == "status" && (s == "--interval" || s.rfind("--interval=", 0) == 0)) {
      if (!duration("--interval", std::chrono::milliseconds(100), &a.status.interval))
        return Usage("--interval needs a duration of at least 100ms, e.g. 5s");
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
  size_t want_min =
      (a.command == "validate" || a.command == "process" || a.command == "approve") ? 1 : 0;
  size_t want_max = (a.command == "run" || a.command == "check") ? 0 : 1;
  if (a.positional.size() < want_min) return Usage("'" + a.command + "' needs a batch file");
  if (a.positional.size() > want_max) return Usage("too many arguments for '" + a.command + "'");

  if (a.command == "check") return Check(a);
  if (a.command == "validate") return Validate(a);
  if (a.command == "status") return StatusCommand(a);
  if (a.command == "approve") return Approve(a);
  if (a.command == "hold" || a.command == "resume" || a.command == "cancel") return Control(a);
  if (a.command == "process") return Serve(a, ServiceOptions::Mode::kProcess);
  return Serve(a, ServiceOptions::Mode::kRun);
}
