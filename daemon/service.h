// `payoutd run` and `payoutd process`: the engine wired to the world (spool or one file, signals,
// sd_notify, metrics, callbacks). Returns the process exit code (docs/cli.md#exit-codes).
#pragma once

#include <string>

#include "config/config.h"

namespace payoutd {

struct ServiceOptions {
  enum class Mode { kRun, kProcess } mode = Mode::kRun;
  Config config;
  std::string batch_path;  // kProcess: the batch file
  std::string out_dir;     // kProcess: where results (or errors) go
};

int RunService(ServiceOptions options);

// Exit codes (docs/cli.md#exit-codes).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotAllSuccess = 3;
constexpr int kExitBatchInvalid = 4;

}  // namespace payoutd
