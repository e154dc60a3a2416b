#include "daemon/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace payoutd {
namespace {

// Both ends close on exec; posix_spawn's dup2 gives the child its copies without the flag.
struct Pipe {
  int read = -1;
  int write = -1;
  bool Open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    read = fds[0];
    write = fds[1];
    return true;
  }
  static void Close(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  ~Pipe() {
    Close(read);
    Close(write);
  }
};

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Feeds `input` to the child and drains its output until both output pipes close or the deadline
// passes. Returns false at the deadline.
bool Exchange(Pipe& in, Pipe& out, Pipe& err, std::string_view input, const ProcessOptions& o,
              ProcessResult* r) {
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  size_t written = 0;
  if (in.write >= 0) ::fcntl(in.write, F_SETFL, O_NONBLOCK);
  if (in.write >= 0 && input.empty()) Pipe::Close(in.write);
  char buf[16384];
  while (out.read >= 0 || err.read >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd fds[3];
    int n = 0;
    if (in.write >= 0) fds[n++] = {in.write, POLLOUT, 0};
    if (out.read >= 0) fds[n++] = {out.read, POLLIN, 0};
    if (err.read >= 0) fds[n++] = {err.read, POLLIN, 0};
    if (::poll(fds, n, static_cast<int>(left.count())) < 0 && errno != EINTR) return false;
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == in.write) {
        const ssize_t w = ::write(in.write, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
          written = input.size();  // the child stopped reading
        if (written == input.size()) Pipe::Close(in.write);
        continue;
      }
      int& fd = fds[i].fd == out.read ? out.read : err.read;
      std::string& sink = fds[i].fd == out.read ? r->out : r->err;
      const ssize_t got = ::read(fd, buf, sizeof buf);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        Pipe::Close(fd);
        continue;
      }
      if (sink.size() < o.max_output)
        sink.append(buf, std::min(static_cast<size_t>(got), o.max_output - sink.size()));
    }
  }
  return true;
}

}  // namespace

Result<ProcessResult> RunProcess(const std::vector<std::string>& argv, std::string_view input,
                                 const ProcessOptions& options) {
  if (argv.empty()) return Status::InvalidArgument("no program to run");
  // A child that exits before reading all its input must not kill us with SIGPIPE; the daemon
  // ignores SIGPIPE anyway (network peers), and so does every payoutd that runs a helper.
  static const bool sigpipe_ignored = ::signal(SIGPIPE, SIG_IGN) != SIG_ERR;
  (void)sigpipe_ignored;
  Pipe in, out, err;
  if ((!options.inherit_stdin && !in.Open()) || !out.Open() ||
      (!options.inherit_stderr && !err.Open()))
    return Status::Unavailable(std::string("cannot make pipes: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!options.inherit_stdin) posix_spawn_file_actions_adddup2(&actions, in.read, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.write, STDOUT_FILENO);
  if (!options.inherit_stderr) posix_spawn_file_actions_adddup2(&actions, err.write, STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status::Unavailable("cannot run " + argv[0] + ": " + std::strerror(rc));
  // Our copies of the child's ends: without closing them we would never see end of file.
  Pipe::Close(in.read);
  Pipe::Close(out.write);
  Pipe::Close(err.write);

  ProcessResult r;
  if (!Exchange(in, out, err, options.inherit_stdin ? std::string_view() : input, options, &r)) {
    ::kill(pid, SIGKILL);
    r.timed_out = true;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = ExitCode(status);
  return r;
}

}  // namespace payoutd
