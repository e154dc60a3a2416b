// Runs the real `payoutd` binary for end-to-end tests: a scratch folder with a config and a secret,
// `payoutd run` as a child process, the other subcommands as one-shot commands, and parsers for
// what the daemon writes (results.csv, summary.json, errors.csv).
//
//   payoutd::testing::SandboxProcess sandbox({"--final-after-ms", "0"});
//   payoutd::testing::TempDir dir;                       // removed at the end (PAYOUTD_TEST_KEEP=1
//   keeps it) payoutd::testing::DaemonConfig cfg = DaemonConfig::For(sandbox);   // fast test
//   defaults cfg.extra_yaml = "callbacks:\n  listen: 127.0.0.1:0\n";           // any more
//   top-level keys std::string config = cfg.Write(dir.path());          // dir/payoutd.yaml +
//   dir/secret.key (0600)
//
//   payoutd::testing::DaemonProcess daemon(config);      // not started yet
//   daemon.Start();                                      // payoutd run --config ...; log in dir
//   ASSERT_TRUE(daemon.WaitReady(std::chrono::seconds(20)));   // "payoutd.ready" logged
//   daemon.metrics_port();                               // port from the ready line (0 = off)
//   DropBatch(cfg.spool_dir(dir.path()), "b1", csv_text);  // writes inbox/b1.csv.part, renames
//   ASSERT_TRUE(WaitForFile(dir.path() + "/spool/done/b1.summary.json", std::chrono::seconds(30)));
//   auto rows = ReadResultsCsv(dir.path() + "/spool/done/b1.results.csv");
//   auto summary = ReadSummary(dir.path() + "/spool/done/b1.summary.json");
//   int code = daemon.Terminate(std::chrono::seconds(15)); // SIGTERM, wait; exit code or
//   128+signal daemon.Kill();                                       // SIGKILL, wait (for crash
//   tests) daemon.Start();                                      // again, same config; a new log
//   file daemon.Start({"PAYOUTD_FAILPOINTS=spool.claimed=crash"});   // this start with more
//   environment
//
//   CommandResult r = RunPayoutd({"status", "--config", config});    // one-shot: exit code, out,
//   err
//
// DaemonProcess keeps every start's log (stdout + stderr) as <dir of config>/payoutd.<n>.log;
// log() returns the current one, all_logs() every start's text. The destructor SIGKILLs a child
// that is still running. WaitFor(pred, timeout) polls pred every 20 ms (a condition wait, not a
// sleep); the file and parsing helpers throw std::runtime_error on unreadable input.
//
// Link: payoutd_jwt simdjson::simdjson (with sandbox_process.h). Not thread-safe.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "tests/support/sandbox_process.h"

#ifndef PAYOUTD_BIN
#error "PAYOUTD_BIN must name the payoutd binary (payoutd_test defines it)"
#endif

namespace payoutd::testing {

// ---------------------------------------------------------------------------------------------
// Waiting and files

// Polls pred every 20 ms until it is true (returns true) or timeout passes (returns pred()).
inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

inline bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

inline bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout) {
  return WaitFor([&] { return FileExists(path); }, timeout);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes the file whole (mode 0600).
inline void WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + path);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("cannot write " + path);
    }
    off += static_cast<size_t>(n);
  }
  ::close(fd);
}

// File names in `dir` (no "." / ".."), sorted; empty when the folder does not exist.
inline std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline void RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& n : ListDir(path)) RemoveTree(path + "/" + n);
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

// A fresh folder under /tmp, removed with everything in it by the destructor, unless the
// environment has PAYOUTD_TEST_KEEP=1 (then its path is printed for a look after a failure).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/payoutd-e2e-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    const char* keep = std::getenv("PAYOUTD_TEST_KEEP");
    if (keep && std::string(keep) == "1") {
      std::fprintf(stderr, "kept %s\n", path_.c_str());
      return;
    }
    RemoveTree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Puts a batch into <spool>/inbox as the spool expects: written as "<name>.csv.part", then renamed.
inline void DropBatch(const std::string& spool_dir, const std::string& batch_id,
                      const std::string& csv) {
  std::string inbox = spool_dir + "/inbox";
  ::mkdir(spool_dir.c_str(), 0700);
  ::mkdir(inbox.c_str(), 0700);
  std::string part = inbox + "/" + batch_id + ".csv.part";
  WriteFile(part, csv);
  if (::rename(part.c_str(), (inbox + "/" + batch_id + ".csv").c_str()) != 0)
    throw std::runtime_error("cannot rename " + part);
}

// ---------------------------------------------------------------------------------------------
// Configuration

// A payoutd configuration with defaults that keep tests fast. Write() creates the files.
struct DaemonConfig {
  std::string base_url;
  std::string merchant = "TEST_MERCHANT";
  std::string secret = "sandbox-test-secret";
  std::string gateway_timeout = "5s";
  std::string connect_timeout = "2s";
  int requests_per_second = 2000;
  int burst = 200;
  int max_in_flight = 64;
  int max_attempts = 8;
  std::string initial_backoff = "20ms";
  std::string max_backoff = "200ms";
  std::string polling_initial_delay = "50ms";
  std::string polling_max_interval = "200ms";
  std::string settle = "100ms";
  std::string shutdown_grace = "5s";
  std::string metrics_listen = "127.0.0.1:0";
  std::string log_level = "info";
  std::string log_format = "text";
  std::string extra_yaml;  // appended as is: more top-level sections (callbacks:, batches:, ...)

  // Relative to the config's folder (payoutd resolves relative paths from there).
  std::string spool = "spool";
  std::string state = "state/payoutd.db";
  // Lines added to the `state` section as is, e.g. "  backend: postgresql\n  url: ...\n".
  std::string state_extra;
  // Each test's daemon its own control.socket (the default, /run/payoutd/control.sock, is one
  // per machine: daemons of tests running side by side would refuse each other's).
  std::string control_socket = "control.sock";

  static DaemonConfig For(const SandboxProcess& sandbox) {
    DaemonConfig c;
    c.base_url = sandbox.base_url();
    c.merchant = sandbox.merchant();
    c.secret = sandbox.secret();
    return c;
  }

  std::string spool_dir(const std::string& dir) const {
    return spool[0] == '/' ? spool : dir + "/" + spool;
  }
  std::string state_path(const std::string& dir) const {
    return state[0] == '/' ? state : dir + "/" + state;
  }

  std::string Yaml() const {
    std::string y;
    y += "gateway:\n  base_url: " + base_url + "\n  timeout: " + gateway_timeout +
         "\n  connect_timeout: " + connect_timeout + "\n";
    y += "auth:\n  merchant_code: " + merchant + "\n  secret_file: secret.key\n";
    y += "limits:\n  requests_per_second: " + std::to_string(requests_per_second) +
         "\n  burst: " + std::to_string(burst) +
         "\n  max_in_flight: " + std::to_string(max_in_flight) + "\n";
    y += "retry:\n  max_attempts: " + std::to_string(max_attempts) +
         "\n  initial_backoff: " + initial_backoff + "\n  max_backoff: " + max_backoff + "\n";
    y += "polling:\n  initial_delay: " + polling_initial_delay +
         "\n  max_interval: " + polling_max_interval + "\n";
    y += "spool:\n  dir: " + spool + "\n  settle: " + settle + "\n";
    y += "state:\n  path: " + state + "\n" + state_extra;
    y += "metrics:\n  listen: " + metrics_listen + "\n";
    y += "log:\n  level: " + log_level + "\n  format: " + log_format + "\n";
    y += "shutdown_grace: " + shutdown_grace + "\n";
    if (!control_socket.empty()) y += "control:\n  socket: " + control_socket + "\n";
    y += extra_yaml;
    return y;
  }

  // Writes dir/secret.key (0600) and dir/<name>; returns the config's path.
  std::string Write(const std::string& dir, const std::string& name = "payoutd.yaml") const {
    WriteFile(dir + "/secret.key", secret + "\n");
    std::string path = dir + "/" + name;
    WriteFile(path, Yaml());
    return path;
  }
};

// ---------------------------------------------------------------------------------------------
// Processes

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed; -1 when it did not end in time (then killed)
  std::string out;
  std::string err;
};

namespace detail {

// Our environment with `env`'s "NAME=value" entries added (replacing ones of the same NAME).
inline std::vector<std::string> EnvironmentWith(const std::vector<std::string>& env) {
  std::vector<std::string> out;
  auto name_of = [](const std::string& e) { return e.substr(0, e.find('=')); };
  for (char** e = environ; *e; ++e) {
    std::string entry = *e;
    bool replaced = std::any_of(env.begin(), env.end(),
                                [&](const std::string& x) { return name_of(x) == name_of(entry); });
    if (!replaced) out.push_back(std::move(entry));
  }
  out.insert(out.end(), env.begin(), env.end());
  return out;
}

// fork + exec PAYOUTD_BIN args, stdout/stderr to the given fds (they are dup'ed, not closed), with
// `env` ("NAME=value") added to the environment.
inline pid_t Spawn(const std::vector<std::string>& args, int out_fd, int err_fd,
                   const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv_s = {PAYOUTD_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  // Built before the fork: the child only calls async-signal-safe functions.
  std::vector<std::string> env_s = EnvironmentWith(env);
  std::vector<char*> envp;
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Waits up to timeout for pid; the exit code (or 128 + signal), or nullopt if still running.
inline std::optional<int> WaitPid(pid_t pid, std::chrono::milliseconds timeout) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    ::close(pidfd);
    if (r <= 0) return std::nullopt;
  } else {
    int status = 0;
    bool done = WaitFor([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout);
    if (!done) return std::nullopt;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return std::nullopt;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline int TempFd(std::string* path) {
  char tmpl[] = "/tmp/payoutd-cmd-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  *path = tmpl;
  return fd;
}

}  // namespace detail

// Runs `payoutd <args...>` to completion (killed after timeout) and returns its exit code and
// output. `env` ("NAME=value", e.g. "PAYOUTD_FAILPOINTS=...") is added to its environment.
inline CommandResult RunPayoutd(const std::vector<std::string>& args,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60),
                                const std::vector<std::string>& env = {}) {
  std::string out_path, err_path;
  int out_fd = detail::TempFd(&out_path);
  int err_fd = detail::TempFd(&err_path);
  pid_t pid = detail::Spawn(args, out_fd, err_fd, env);
  ::close(out_fd);
  ::close(err_fd);
  CommandResult r;
  auto code = detail::WaitPid(pid, timeout);
  if (!code) {
    ::kill(pid, SIGKILL);
    detail::WaitPid(pid, std::chrono::seconds(10));
    r.exit_code = -1;
  } else {
    r.exit_code = *code;
  }
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  return r;
}

// `payoutd run --config CONFIG` as a child process that can be started again after it ends.
class DaemonProcess {
 public:
  explicit DaemonProcess(std::string config_path, std::vector<std::string> extra_args = {})
      : config_(std::move(config_path)), extra_(std::move(extra_args)) {
    size_t slash = config_.find_last_of('/');
    dir_ = slash == std::string::npos ? "." : config_.substr(0, slash);
  }
  ~DaemonProcess() {
    if (pid_ > 0) Kill();
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Starts payoutd run (throws if one is running). Its output goes to a fresh log file. `env`
  // ("NAME=value") is added to the environment of this start only, e.g. failpoints to arm
  // (core/base/failpoint.h): {"PAYOUTD_FAILPOINTS=spool.claimed=crash"}.
  void Start(const std::vector<std::string>& env = {}) {
    if (pid_ > 0) throw std::runtime_error("payoutd is already running");
    ++starts_;
    log_path_ = dir_ + "/payoutd." + std::to_string(starts_) + ".log";
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open " + log_path_);
    std::vector<std::string> args = {"run", "--config", config_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = detail::Spawn(args, fd, fd, env);
    ::close(fd);
    metrics_port_ = 0;
    exit_code_.reset();
  }

  // True once the current run logged payoutd.ready; false on timeout or if it exited first.
  bool WaitReady(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    return WaitFor(
               [&] {
                 std::string text = log();
                 size_t at = text.find("payoutd.ready");
                 if (at != std::string::npos) {
                   size_t p = text.find("(port ", at);
                   size_t eol = text.find('\n', at);
                   if (p != std::string::npos && p < eol)
                     metrics_port_ = static_cast<uint16_t>(std::atoi(text.c_str() + p + 6));
                   return true;
                 }
                 return Exited().has_value();
               },
               timeout) &&
           log().find("payoutd.ready") != std::string::npos;
  }

  // The exit code if the child ended (reaps it), nullopt while it runs.
  std::optional<int> Exited() {
    if (pid_ <= 0) return exit_code_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
    }
    return exit_code_;
  }
  bool running() { return !Exited().has_value() && pid_ > 0; }

  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // Waits for the child to end by itself; its exit code, or nullopt if still running after timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return exit_code_;
    auto code = detail::WaitPid(pid_, timeout);
    if (code) {
      exit_code_ = code;
      pid_ = -1;
    }
    return code;
  }

  // SIGTERM, then waits up to timeout (SIGKILL after that). The exit code, or 128 + signal.
  int Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    if (pid_ <= 0) return exit_code_.value_or(-1);
    ::kill(pid_, SIGTERM);
    if (auto code = Wait(timeout)) return *code;
    return Kill();
  }

  // SIGKILL and reap. 128 + 9 normally.
  int Kill() {
    if (pid_ <= 0) return exit_code_.value_or(-1);
    ::kill(pid_, SIGKILL);
    auto code = detail::WaitPid(pid_, std::chrono::seconds(30));
    exit_code_ = code.value_or(-1);
    pid_ = -1;
    return *exit_code_;
  }

  pid_t pid() const { return pid_; }
  int starts() const { return starts_; }
  uint16_t metrics_port() const { return metrics_port_; }
  const std::string& config_path() const { return config_; }
  const std::string& log_path() const { return log_path_; }
  // The current (latest) run's log; "" before the first start.
  std::string log() const {
    if (log_path_.empty()) return "";
    try {
      return ReadFile(log_path_);
    } catch (const std::exception&) {
      return "";
    }
  }
  // Every run's log, in start order.
  std::string all_logs() const {
    std::string all;
    for (int i = 1; i <= starts_; ++i) {
      try {
        all += ReadFile(dir_ + "/payoutd." + std::to_string(i) + ".log");
      } catch (const std::exception&) {
      }
    }
    return all;
  }

 private:
  std::string config_;
  std::vector<std::string> extra_;
  std::string dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  int starts_ = 0;
  uint16_t metrics_port_ = 0;
  std::optional<int> exit_code_;
};

// ---------------------------------------------------------------------------------------------
// Parsing what the daemon writes

// RFC 4180: rows of fields (quoted fields may hold commas, quotes and newlines). LF or CRLF.
inline std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\r') {
      continue;
    } else if (c == '\n') {
      row.push_back(std::move(field));
      field.clear();
      rows.push_back(std::move(row));
      row.clear();
      any = false;
    } else {
      field.push_back(c);
      any = true;
    }
  }
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

// One row of <batch>.results.csv (docs/results.md).
struct ResultRow {
  int line = 0;
  std::string id, amount, currency, state, gateway_status, fee, fee_currency, processed_at;
  int attempts = 0;
  std::string error;
};

inline const char* kResultsHeader =
    "line,id,amount,currency,state,gateway_status,fee,fee_currency,processed_at,attempts,error";

// Parses results.csv; throws when the header or a row's width is wrong.
inline std::vector<ResultRow> ReadResultsCsv(const std::string& path) {
  std::string text = ReadFile(path);
  if (text.compare(0, std::strlen(kResultsHeader), kResultsHeader) != 0)
    throw std::runtime_error(path + ": unexpected header");
  auto rows = ParseCsv(text);
  std::vector<ResultRow> out;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& f = rows[i];
    if (f.size() != 11)
      throw std::runtime_error(path + ": row " + std::to_string(i) + " has " +
                               std::to_string(f.size()) + " fields");
    ResultRow r;
    r.line = std::atoi(f[0].c_str());
    r.id = f[1];
    r.amount = f[2];
    r.currency = f[3];
    r.state = f[4];
    r.gateway_status = f[5];
    r.fee = f[6];
    r.fee_currency = f[7];
    r.processed_at = f[8];
    r.attempts = std::atoi(f[9].c_str());
    r.error = f[10];
    out.push_back(std::move(r));
  }
  return out;
}

// One row of <batch>.errors.csv (line,column,error).
struct ErrorRow {
  int line = 0;
  std::string column, error;
};

inline std::vector<ErrorRow> ReadErrorsCsv(const std::string& path) {
  auto rows = ParseCsv(ReadFile(path));
  if (rows.empty() || rows[0] != std::vector<std::string>{"line", "column", "error"})
    throw std::runtime_error(path + ": unexpected header");
  std::vector<ErrorRow> out;
  for (size_t i = 1; i < rows.size(); ++i) {
    if (rows[i].size() != 3) throw std::runtime_error(path + ": bad row " + std::to_string(i));
    out.push_back({std::atoi(rows[i][0].c_str()), rows[i][1], rows[i][2]});
  }
  return out;
}

struct SummaryTotals {
  std::string requested, succeeded, failed, fees;  // exact decimal strings, as written
};

// <batch>.summary.json (docs/results.md).
struct Summary {
  std::string batch, sha256, started_at, finished_at;
  int64_t rows = 0;
  std::map<std::string, int64_t> states;
  std::map<std::string, SummaryTotals> totals;
  int64_t StateCount(const std::string& s) const {
    auto it = states.find(s);
    return it == states.end() ? 0 : it->second;
  }
};

inline Summary ParseSummary(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) throw std::runtime_error("summary: bad JSON");
  auto str = [](simdjson::dom::element e, const char* key) {
    std::string_view v;
    if (e[key].get_string().get(v))
      throw std::runtime_error(std::string("summary: no string ") + key);
    return std::string(v);
  };
  Summary s;
  s.batch = str(doc, "batch");
  s.sha256 = str(doc, "sha256");
  if (doc["rows"].get_int64().get(s.rows)) throw std::runtime_error("summary: no rows");
  simdjson::dom::object states, totals;
  if (doc["states"].get_object().get(states)) throw std::runtime_error("summary: no states");
  for (simdjson::dom::key_value_pair kv : states) {
    int64_t n = 0;
    if (kv.value.get_int64().get(n)) throw std::runtime_error("summary: bad state count");
    s.states[std::string(kv.key)] = n;
  }
  if (doc["totals"].get_object().get(totals)) throw std::runtime_error("summary: no totals");
  for (simdjson::dom::key_value_pair kv : totals) {
    SummaryTotals t;
    t.requested = str(kv.value, "requested");
    t.succeeded = str(kv.value, "succeeded");
    t.failed = str(kv.value, "failed");
    t.fees = str(kv.value, "fees");
    s.totals[std::string(kv.key)] = t;
  }
  s.started_at = str(doc, "started_at");
  s.finished_at = str(doc, "finished_at");
  return s;
}

inline Summary ReadSummary(const std::string& path) {
  return ParseSummary(ReadFile(path));
}

// Exact decimal text of `minor` units with `digits` decimals: (12345, 2) -> "123.45", (5, 0) ->
// "5".
inline std::string FormatMinor(int64_t minor, int digits) {
  std::string s = std::to_string(minor);
  if (digits == 0) return s;
  if (s.size() <= static_cast<size_t>(digits))
    s.insert(0, static_cast<size_t>(digits) + 1 - s.size(), '0');
  s.insert(s.size() - static_cast<size_t>(digits), ".");
  return s;
}

}  // namespace payoutd::testing
