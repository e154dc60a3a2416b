// Runs a helper program (ssh-keygen) the safe way: no shell, argv given word by word, stdin fed
// from memory, stdout and stderr captured up to a bound, and a deadline after which the child is
// killed. Nothing is interpreted: a file name in argv is one argument, whatever it contains.
//
// Threading: blocking; call it where blocking is allowed (a command-line subcommand, or a thread
// that is not the io thread).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"

namespace payoutd {

struct ProcessResult {
  int exit_code = -1;      // the child's exit status; 128 + signal when killed by one
  bool timed_out = false;  // killed at the deadline
  std::string out;         // stdout, at most max_output bytes
  std::string err;         // stderr, at most max_output bytes
};

struct ProcessOptions {
  std::chrono::milliseconds timeout{10000};
  size_t max_output = 64 * 1024;
  // Let the child use the terminal for stdin instead of `input` (ssh-keygen asking for a
  // passphrase); `input` is then ignored.
  bool inherit_stdin = false;
  bool inherit_stderr = false;  // the child's stderr goes to ours (its prompts and messages)
};

// Runs argv[0] (looked up in PATH) with argv. Fails only when the program cannot be started; a
// non-zero exit is a result, not an error. The first call sets SIGPIPE to be ignored in this
// process, so that a child that stops reading cannot kill it.
Result<ProcessResult> RunProcess(const std::vector<std::string>& argv, std::string_view input,
                                 const ProcessOptions& options = {});

}  // namespace payoutd
