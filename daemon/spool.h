// The spool folder (docs/batches.md#the-spool-folder): inbox/ where finance ops drop batches,
// work/ for batches being paid, done/ for finished batches and their reports, rejected/ for
// refused batches and their errors.
//
// A `*.csv` file in inbox/ (not hidden, not *.tmp or *.part) is claimed once its size and mtime
// have been still for `settle`, by a rename into work/; with a settle of 0, in the scan that first
// sees it (for writers that rename complete files into inbox/). Changes are noticed through inotify
// and, for network filesystems and missed events, by a rescan every second.
//
// Threading: on the io_context's thread (asserted in debug and sanitizer builds), except the folder
// names (inbox() ... rejected()) and Finish(), which read only the folder fixed at construction and
// may be called from any thread: the store thread's report writing moves the input with Finish().
#pragma once

#include <sys/types.h>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/base/clock.h"
#include "core/base/liveness.h"
#include "core/base/status.h"
#include "core/base/thread_checker.h"
#include "daemon/files.h"

namespace payoutd {

class Spool {
 public:
  // `on_claimed(file_name)` runs for each file claimed into work/; `on_refused(batch)` for each
  // file refused at the claim because a batch of that name is in work/ (it goes to rejected/).
  Spool(boost::asio::io_context& io, std::string dir, Duration settle,
        std::function<void(const std::string& file_name)> on_claimed,
        std::function<void(const std::string& batch)> on_refused);
  ~Spool();

  // Creates inbox/, work/, done/, rejected/ and approval/ when missing.
  Status Prepare();
  // Starts watching inbox/. Stop() stops claiming (files already claimed are not affected).
  void Start();
  void Stop();

  std::string inbox() const { return dir_ + "/inbox"; }
  std::string work() const { return dir_ + "/work"; }
  std::string done() const { return dir_ + "/done"; }
  std::string rejected() const { return dir_ + "/rejected"; }
  std::string approval() const { return dir_ + "/approval"; }

  // Writes `<batch>.errors.csv` into rejected/ and moves work/<file_name> beside it (never
  // overwriting).
  Status Reject(const std::string& file_name, const std::string& errors_csv);
  // Adds the move of work/<file_name> into done/ (never overwriting) to `set`, after the reports
  // the caller wrote into it; the second form moves it on its own.
  void Finish(const std::string& file_name, FileSet* set) const;
  Status Finish(const std::string& file_name) const;

  // Moves work/<file_name> into approval/, where it waits for signatures (docs/approvals.md).
  Status AwaitApproval(const std::string& file_name) const;

  // Files names in work/ (`*.csv`), for recovery at start-up.
  std::vector<std::string> WorkFiles() const;

 private:
  // Writes `<batch>.errors.csv` into rejected/ and moves `from` beside it as `<batch>.csv` (or
  // `<batch>.N.csv`, never overwriting).
  Status MoveToRejected(const std::string& from, const std::string& batch,
                        const std::string& errors_csv);

  struct Seen {
    off_t size = 0;
    int64_t mtime_ns = 0;
    SteadyTime still_since{};
  };
  void Scan();
  void ArmTimer();
  void WatchInotify();
  void ReadInotify();
  void Claim(const std::string& name);

  boost::asio::io_context& io_;
  std::string dir_;
  Duration settle_;
  std::function<void(const std::string&)> on_claimed_;
  std::function<void(const std::string&)> on_refused_;
  std::map<std::string, Seen> seen_;
  boost::asio::steady_timer timer_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> inotify_;
  char inotify_buf_[4096];
  bool running_ = false;
  ThreadChecker io_thread_;  // binds to the io thread at the first call
  Liveness alive_;           // last: handlers check it before they touch anything else
};

// True for names the spool takes: `*.csv`, not hidden, not `*.tmp`/`*.part`.
bool IsBatchFileName(const std::string& name);

// Writes `<batch>.errors.csv` into `rejected_dir` and moves `from` beside it as `<batch>.csv` (or
// `<batch>.N.csv`, never overwriting), with the files in `also` (e.g. its signatures) before it.
// Blocking; used by the spool and by the approval round on the store thread.
Status RejectInto(const std::string& rejected_dir, const std::string& from,
                  const std::string& batch, const std::string& errors_csv,
                  const std::vector<std::string>& also = {});

}  // namespace payoutd
