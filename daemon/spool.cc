#include "daemon/spool.h"

#include <dirent.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <boost/asio/post.hpp>

#include "core/base/failpoint.h"
#include "core/base/log.h"
#include "core/base/thread_checker.h"
#include "daemon/files.h"
#include "daemon/intake.h"

namespace payoutd {

bool IsBatchFileName(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  auto ends = [&](const std::string& ext) {
    return name.size() >= ext.size() &&
           name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
  };
  return ends(".csv") && name.size() > 4;
}

Spool::Spool(boost::asio::io_context& io, std::string dir, Duration settle,
             std::function<void(const std::string&)> on_claimed,
             std::function<void(const std::string&)> on_refused)
    : io_(io),
      dir_(std::move(dir)),
      settle_(settle),
      on_claimed_(std::move(on_claimed)),
      on_refused_(std::move(on_refused)),
      timer_(io) {}

Spool::~Spool() {
  alive_.End();
  Stop();
}

Status Spool::Prepare() {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  for (const auto& d : {inbox(), work(), done(), rejected(), approval()})
    PAYOUTD_RETURN_IF_ERROR(MakeDirs(d));
  return Status::Ok();
}

void Spool::Start() {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  running_ = true;
  WatchInotify();
  Scan();
}

void Spool::Stop() {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  running_ = false;
  timer_.cancel();
  if (inotify_) {
    boost::system::error_code ec;
    inotify_->close(ec);
    inotify_.reset();
  }
}

void Spool::WatchInotify() {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    log::Warn("spool.inotify_unavailable",
              {{"reason", "inotify_init1 failed; rescanning every second"}});
    return;
  }
  if (::inotify_add_watch(fd, inbox().c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB) < 0) {
    ::close(fd);
    log::Warn("spool.inotify_unavailable",
              {{"reason", "cannot watch inbox; rescanning every second"}});
    return;
  }
  inotify_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  ReadInotify();
}

// One read of inotify events at a time; each batch of events is a reason to scan the inbox.
void Spool::ReadInotify() {
  if (!inotify_) return;
  auto on_events = [this, alive = alive_.token()](const boost::system::error_code& ec, size_t) {
    if (!alive || ec || !running_) return;
    Scan();
    ReadInotify();
  };
  inotify_->async_read_some(boost::asio::buffer(inotify_buf_), std::move(on_events));
}

void Spool::ArmTimer() {
  // Rescan at least every second: settle deadlines and missed events (network filesystems). With
  // no settle time there is no deadline to meet, only events to catch up on.
  const Duration second = std::chrono::seconds(1);
  Duration wait = settle_ > Duration::zero() ? std::min<Duration>(settle_, second) : second;
  if (wait < std::chrono::milliseconds(50)) wait = std::chrono::milliseconds(50);
  timer_.expires_after(wait);
  timer_.async_wait([this, alive = alive_.token()](const boost::system::error_code& ec) {
    if (!alive || ec || !running_) return;
    Scan();
  });
}

void Spool::Scan() {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  if (!running_) return;
  auto now = std::chrono::steady_clock::now();
  std::map<std::string, Seen> still_there;
  if (DIR* d = ::opendir(inbox().c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (!IsBatchFileName(name)) continue;
      struct stat st;
      if (::stat((inbox() + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      int64_t mtime_ns = int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
      Seen s{st.st_size, mtime_ns, now};
      auto it = seen_.find(name);
      if (it != seen_.end() && it->second.size == s.size && it->second.mtime_ns == s.mtime_ns)
        s.still_since = it->second.still_since;
      still_there[name] = s;
    }
    ::closedir(d);
  } else {
    log::Error("spool.scan_failed", {{"dir", inbox()}});
  }
  seen_ = std::move(still_there);
  std::vector<std::string> ready;
  for (const auto& [name, s] : seen_)
    if (now - s.still_since >= settle_) ready.push_back(name);
  for (const auto& name : ready) {
    seen_.erase(name);
    Claim(name);
  }
  ArmTimer();
}

void Spool::Claim(const std::string& name) {
  std::string from = inbox() + "/" + name;
  std::string to = work() + "/" + name;
  if (FileExists(to)) {
    // A batch of that name is being paid: refuse the newcomer without touching the one in work/.
    std::string batch = BatchIdFromFileName(name);
    Status st = MoveToRejected(
        from, batch,
        "line,column,error\n0,,\"batch id '" + batch + "' is already being processed\"\n");
    if (!st.ok()) {  // left in inbox/: the next scan tries again
      log::Error("spool.reject_failed", {{"batch", batch}, {"error", st.message()}});
      return;
    }
    log::Warn("batch.rejected",
              {{"batch", batch}, {"reason", "a batch with this name is in progress"}});
    on_refused_(batch);
    return;
  }
  if (Status st = MoveFile(from, to); !st.ok()) {
    log::Error("spool.claim_failed", {{"file", name}, {"error", st.message()}});
    return;
  }
  log::Info("spool.claimed", {{"file", name}});
  (void)PAYOUTD_FAILPOINT("spool.claimed");  // in work/, not recorded: the next start retakes it
  on_claimed_(name);
}

Status Spool::Reject(const std::string& file_name, const std::string& errors_csv) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  return MoveToRejected(work() + "/" + file_name, BatchIdFromFileName(file_name), errors_csv);
}

Status Spool::MoveToRejected(const std::string& from, const std::string& batch,
                             const std::string& errors_csv) {
  return RejectInto(rejected(), from, batch, errors_csv);
}

Status RejectInto(const std::string& rejected_dir, const std::string& from,
                  const std::string& batch, const std::string& errors_csv,
                  const std::vector<std::string>& also) {
  std::string dest = FreePath(rejected_dir, batch, ".csv");
  std::string stem = BaseName(dest).substr(0, BaseName(dest).size() - 4);
  // The reasons first, then the batch, back to back: a batch in rejected/ always has its reasons
  // beside it.
  FileSet set;
  PAYOUTD_RETURN_IF_ERROR(set.Write(rejected_dir + "/" + stem + ".errors.csv", errors_csv));
  for (const std::string& path : also) set.Move(path, rejected_dir + "/" + BaseName(path));
  set.Move(from, dest);
  return set.Commit();
}

void Spool::Finish(const std::string& file_name, FileSet* set) const {
  std::string batch = BatchIdFromFileName(file_name);
  // Its approvals' signature files (`<batch>.csv.<label>.sig`) go to done/ with it: the proof of
  // who signed stays beside the batch.
  const std::string prefix = file_name + ".";
  if (DIR* d = ::opendir(work().c_str())) {
    std::vector<std::string> companions;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind(prefix, 0) == 0) companions.push_back(name);
    }
    ::closedir(d);
    std::sort(companions.begin(), companions.end());
    for (const std::string& name : companions) {
      if (!FileExists(done() + "/" + name)) set->Move(work() + "/" + name, done() + "/" + name);
    }
  }
  std::string dest = done() + "/" + file_name;
  if (FileExists(dest)) dest = FreePath(done(), batch, ".input.csv");
  set->Move(work() + "/" + file_name, dest);
}

Status Spool::Finish(const std::string& file_name) const {
  FileSet set;
  Finish(file_name, &set);
  return set.Commit();
}

Status Spool::AwaitApproval(const std::string& file_name) const {
  FileSet set;
  set.Move(work() + "/" + file_name, approval() + "/" + file_name);
  return set.Commit();
}

std::vector<std::string> Spool::WorkFiles() const {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  std::vector<std::string> out;
  if (DIR* d = ::opendir(work().c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (IsBatchFileName(name)) out.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace payoutd
