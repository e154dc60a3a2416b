// A throwaway PostgreSQL 15 server for tests, and a fresh database in it for each test.
//
//   TEST(PgSomething, DoesWhat) {
//     PAYOUTD_REQUIRE_POSTGRES(server);          // skips only when PostgreSQL is not installed
//     std::string uri = server->CreateDatabase();  // postgresql:///t_..?host=<dir>&port=..
//     ... connect to uri ...
//     server->Restart();                          // pg_ctl restart -m fast: connections break
//   }
//
// One server per test binary (process), started at first use and stopped by a gtest
// Environment's TearDown (ctest runs each test in its own process, so each pays one start;
// starting costs a few tenths of a second because the data directory is copied from a template
// made once per machine by initdb, under a file lock, in /dev/shm or the temporary folder).
// The server listens on a Unix socket in its own temporary folder and on 127.0.0.1 at a port
// the OS chose free; local (socket) connections need no password, TCP ones use scram-sha-256
// with user "postgres" and password kPostgresTestPassword. As root it runs as the unprivileged
// user "nobody" (PostgreSQL refuses root), its folder chowned to that user. fsync is off: a
// Restart() or Kill() keeps every commit that returned (payoutd's sessions raise the server's
// synchronous_commit=off to on, which the restart tests prove), a crash of the machine would not.
//
// Binaries: $PAYOUTD_PG_BINDIR, else /usr/lib/postgresql/15/bin. When they are absent the tests
// skip with a message saying so, except under CI (CI set), where they fail: scripts/setup.sh
// installs them there.
//
// Link: libpq (payoutd_store brings it). Not thread-safe; use it from the test's thread.
#pragma once

#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

extern char** environ;

namespace payoutd::testing {

inline constexpr const char* kPostgresTestPassword = "payoutd-test-password";

class PostgresServer {
 public:
  static std::string BinDir() {
    const char* env = std::getenv("PAYOUTD_PG_BINDIR");
    return env && *env ? env : "/usr/lib/postgresql/15/bin";
  }
  static bool Installed() {
    for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
      if (::access((BinDir() + "/" + tool).c_str(), X_OK) != 0) return false;
    }
    return true;
  }

  PostgresServer() = default;
  ~PostgresServer() {
    if (!dir_.empty()) {
      if (running_) Ctl({"stop", "-m", "immediate", "-w"});
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Makes the data directory and starts the server. On failure returns false and says why.
  bool Init(std::string* error) {
    std::string tmpl = (TempBase() / "payoutd-pg.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return Fail(error, "mkdtemp failed");
    dir_ = tmpl;
    if (!GiveToServerUser(dir_)) return Fail(error, "cannot chown " + dir_);
    std::string tmpl_dir;
    if (!EnsureTemplate(&tmpl_dir, error)) return false;
    if (Run({"cp", "-a", tmpl_dir, data_dir()}, false) != 0) {
      return Fail(error, "cannot copy the template data directory " + tmpl_dir);
    }
    // The port is free when chosen, not necessarily when the server binds it (another test may
    // take it meanwhile): try a few. A later line of the file overrides an earlier one.
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreePort();
      if (port_ == 0) return Fail(error, "no free port on 127.0.0.1");
      std::ofstream conf(data_dir() + "/postgresql.auto.conf", std::ios::app);
      conf << "listen_addresses = '127.0.0.1'\n"
           << "port = " << port_ << "\n"
           << "unix_socket_directories = '" << dir_ << "'\n"
           << "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
           << "max_connections = 40\nshared_buffers = 32MB\n";
      conf.close();
      if (!conf) return Fail(error, "cannot write postgresql.auto.conf");
      if (Start()) return true;
    }
    return Fail(error, "pg_ctl start failed; see " + dir_ + "/server.log:\n" + Log());
  }

  bool Start() {
    running_ = Ctl({"start", "-w", "-t", "30", "-l", dir_ + "/server.log"}) == 0;
    return running_;
  }
  // A fast shutdown: open connections break, committed data stays.
  bool Stop() {
    bool ok = Ctl({"stop", "-m", "fast", "-w"}) == 0;
    if (ok) running_ = false;
    return ok;
  }
  // A crash of the server process (every backend killed, no checkpoint); data stays (WAL redo).
  bool Kill() {
    bool ok = Ctl({"stop", "-m", "immediate", "-w"}) == 0;
    if (ok) running_ = false;
    return ok;
  }
  bool Restart() {
    running_ = Ctl({"restart", "-m", "fast", "-w", "-t", "30", "-l", dir_ + "/server.log"}) == 0;
    return running_;
  }
  bool running() const { return running_; }

  // A new empty database; returns its URI (Unix socket, no password).
  std::string CreateDatabase() {
    std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(++databases_);
    std::string err = Admin("CREATE DATABASE " + name);
    if (!err.empty()) ADD_FAILURE() << "CREATE DATABASE " << name << ": " << err;
    return Uri(name);
  }
  // Runs one SQL statement as superuser in database `db`; returns the error, empty on success.
  std::string Admin(const std::string& sql, const std::string& db = "postgres") {
    PGconn* c = PQconnectdb(Uri(db).c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    PQfinish(c);
    return err;
  }

  std::string Uri(const std::string& db) const {
    return "postgresql:///" + db + "?host=" + dir_ + "&port=" + std::to_string(port_) +
           "&user=postgres";
  }
  // Over TCP: needs the password (kPostgresTestPassword), e.g. from a password file.
  std::string TcpUri(const std::string& db) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  // The database name of a URI made by Uri().
  static std::string DatabaseOf(const std::string& uri) {
    size_t start = uri.find(":///") + 4;
    return uri.substr(start, uri.find('?') - start);
  }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string Log() const {
    std::ifstream in(dir_ + "/server.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  static bool Fail(std::string* error, std::string why) {
    *error = std::move(why);
    return false;
  }
  static bool AsRoot() { return ::geteuid() == 0; }
  // Memory (/dev/shm) when there is one: the data directory is copied and written there at memory
  // speed, which keeps a test's start short on a machine whose disk is busy.
  // $PAYOUTD_PG_TMPDIR overrides.
  static std::filesystem::path TempBase() {
    const char* env = std::getenv("PAYOUTD_PG_TMPDIR");
    if (env && *env) return env;
    if (::access("/dev/shm", W_OK | X_OK) == 0) return "/dev/shm";
    return std::filesystem::temp_directory_path();
  }
  static bool GiveToServerUser(const std::string& path) {
    if (!AsRoot()) return true;
    struct passwd* pw = ::getpwnam("nobody");
    return pw != nullptr && ::chown(path.c_str(), pw->pw_uid, pw->pw_gid) == 0;
  }

  // Runs argv (as the server's user when `as_server_user` and root); returns its exit status.
  // Its output goes to <dir>/commands.log.
  int Run(std::vector<std::string> argv, bool as_server_user) const {
    if (as_server_user && AsRoot()) argv.insert(argv.begin(), {"runuser", "-u", "nobody", "--"});
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    std::string log = dir_.empty() ? "/dev/null" : dir_ + "/commands.log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return -1;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  int Ctl(std::vector<std::string> args) const {
    args.insert(args.begin(), {BinDir() + "/pg_ctl", "-D", data_dir()});
    return Run(args, true);
  }

  // The initdb'd template, made once per machine and PostgreSQL binary folder.
  bool EnsureTemplate(std::string* path, std::string* error) const {
    std::string key = BinDir();
    for (char& c : key) {
      if (c == '/') c = '_';
    }
    if (!AsRoot()) key += "-" + std::to_string(::getuid());
    std::string base = (TempBase() / ("payoutd-pg-template" + key)).string();
    *path = base + "/data";
    int lock = ::open((base + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
      return Fail(error, "cannot lock " + base + ".lock");
    }
    struct Unlock {
      int fd;
      ~Unlock() { ::close(fd); }
    } unlock{lock};
    if (::access((*path + "/PG_VERSION").c_str(), F_OK) == 0) return true;
    std::error_code ec;
    std::filesystem::remove_all(base, ec);
    std::string building = base + ".building";
    std::filesystem::remove_all(building, ec);
    std::filesystem::create_directories(building, ec);
    std::string pwfile = building + "/pw";
    std::ofstream(pwfile) << kPostgresTestPassword << "\n";
    if (!GiveToServerUser(building) || !GiveToServerUser(pwfile)) {
      return Fail(error, "cannot chown " + building);
    }
    int rc = Run({BinDir() + "/initdb", "-D", building + "/data", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                  "--pwfile=" + pwfile, "--wal-segsize=1", "--no-sync", "--no-instructions"},
                 true);
    if (rc != 0) return Fail(error, "initdb failed (exit " + std::to_string(rc) + ")");
    std::filesystem::remove(pwfile, ec);
    std::filesystem::rename(building, base, ec);
    if (ec) return Fail(error, "cannot rename " + building + ": " + ec.message());
    return true;
  }

  static int FreePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    ::close(fd);
    return port;
  }

  std::string dir_;
  int port_ = 0;
  bool running_ = false;
  int databases_ = 0;
};

// The one server of this test binary: started at first use, stopped after the last test.
class PostgresEnvironment : public ::testing::Environment {
 public:
  // The shared server, or nullptr when it cannot run (then *why says why, and *skip whether the
  // reason is that PostgreSQL is not installed outside CI).
  static PostgresServer* Get(std::string* why, bool* skip) {
    State& s = state();
    if (!s.tried) {
      s.tried = true;
      const char* ci = std::getenv("CI");
      bool in_ci = ci != nullptr && *ci != '\0';
      if (!PostgresServer::Installed()) {
        s.skip = !in_ci;
        s.why = "PostgreSQL is not installed (no initdb/pg_ctl/postgres in " +
                PostgresServer::BinDir() +
                "; scripts/setup.sh installs it, or set PAYOUTD_PG_BINDIR)";
      } else {
        auto started = std::chrono::steady_clock::now();
        s.server = std::make_unique<PostgresServer>();
        if (!s.server->Init(&s.why)) {
          s.server.reset();
        } else {
          s.start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - started)
                           .count();
        }
      }
    }
    *why = s.why;
    *skip = s.skip;
    return s.server.get();
  }
  // How long the shared server took to start (ms), for the record.
  static int64_t start_ms() { return state().start_ms; }
  void TearDown() override { state().server.reset(); }

 private:
  struct State {
    bool tried = false;
    bool skip = false;
    std::string why;
    std::unique_ptr<PostgresServer> server;
    int64_t start_ms = 0;
  };
  static State& state() {
    static State s;
    return s;
  }
};

inline ::testing::Environment* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

}  // namespace payoutd::testing

// Declares `PostgresServer* var`, the shared server; skips the test when PostgreSQL is not
// installed, fails it when the server does not start.
#define PAYOUTD_REQUIRE_POSTGRES(var)                                        \
  std::string var##_why;                                                     \
  bool var##_skip = false;                                                   \
  ::payoutd::testing::PostgresServer* var =                                  \
      ::payoutd::testing::PostgresEnvironment::Get(&var##_why, &var##_skip); \
  if (var == nullptr && var##_skip) GTEST_SKIP() << var##_why;               \
  if (var == nullptr) FAIL() << "PostgreSQL test server: " << var##_why
