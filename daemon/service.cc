#include "daemon/service.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/base/failpoint.h"
#include "core/base/log.h"
#include "core/batch/batch.h"
#include "core/engine/payout_engine.h"
#include "core/engine/results.h"
#include "core/store/open_store.h"
#include "core/store/payout_store.h"
#include "core/store/store_thread.h"
#include "daemon/approval_round.h"
#include "daemon/callbacks.h"
#include "daemon/control.h"
#include "daemon/control_actions.h"
#include "daemon/control_metrics.h"
#include "daemon/files.h"
#include "daemon/intake.h"
#include "daemon/leadership.h"
#include "daemon/metrics.h"
#include "daemon/remote_control.h"
#include "daemon/sd_notify.h"
#include "daemon/spool.h"
#include "daemon/state_metrics.h"

#ifndef PAYOUTD_VERSION
#define PAYOUTD_VERSION "dev"
#endif

namespace payoutd {

namespace {

// The engine runs with the configured polling policy, and hands the client enough calls to keep
// every connection busy while the rest wait in the store.
EngineOptions EngineOptionsFor(const Config& c) {
  EngineOptions o;
  o.polling = c.polling;
  o.submit_window = static_cast<size_t>(std::max(16, c.gateway.limits.max_in_flight * 4));
  o.poll_window = o.submit_window;
  o.cancelled_unknown_settle = 2 * c.gateway.timeout;
  // A PostgreSQL state comes back after a restart or a failover: wait for it, stop nothing.
  o.retry_unavailable_commits = c.state.backend == StateOptions::Backend::kPostgresql;
  return o;
}

int64_t WallMs(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.WallNow().time_since_epoch())
      .count();
}

// What writing a batch's reports came to (WriteReport, on the store thread).
struct ReportOutcome {
  Status status = Status::Ok();
  BatchProgress progress;
  std::string summary;  // the summary.json text
  std::string results_path;
};

ReportOutcome WriteReport(PayoutStore& store, const std::string& batch_id,
                          const CurrencyTable& currencies, const std::string& dir, Spool* spool);

class Service final : public EngineObserver {
 public:
  explicit Service(ServiceOptions options)
      : opt_(std::move(options)),
        cfg_(opt_.config),
        validator_(cfg_.batches),
        signals_(io_, SIGTERM, SIGINT),
        hup_(io_, SIGHUP),
        grace_timer_(io_),
        tick_timer_(io_),
        watchdog_timer_(io_),
        retry_timer_(io_),
        approval_timer_(io_) {}

  int Run();

  // EngineObserver
  void OnFinal(const PayoutRow& row) override;
  void OnUnknownStatus(const std::string& status) override;
  void OnBatchFinished(const std::string& batch_id) override;
  void OnStoreError(const std::string& message) override;
  void OnCommit(Duration took, const Status& written) override;

 private:
  bool Process() const { return opt_.mode == ServiceOptions::Mode::kProcess; }
  int StartupFailed(const Status& why);
  std::optional<int> StandBy();
  [[noreturn]] void StopAtOnce(const std::string& why);
  Status StartUp();
  Status OpenState();
  Status Lock();
  std::optional<int> TakeProcessBatch();
  int RefuseProcessBatch(const ValidatedBatch& batch);
  Status Resume();
  Status Recover();
  void Serve();
  std::string MetricsWhere() const;
  void OnClaimed(const std::string& file_name);
  void OnIntake(const std::string& file_name, Intake in);
  void RetryLater(const std::string& file_name);
  void Report(const std::string& batch_id);
  void OnReported(const std::string& batch_id, const ReportOutcome& out);
  void Shutdown(const std::string& why, int exit_code);
  void GiveUpOnAnUnreachableState();
  // Hands work to the store thread; a shutdown waits for its completion (the log line and metrics
  // of a batch whose reports were written must not be lost to a SIGTERM in between).
  template <typename Job, typename Done>
  void PostToStore(Job job, Done done) {
    ++store_jobs_;
    writer_->Post(std::move(job), [this, done = std::move(done)](auto result) mutable {
      --store_jobs_;
      done(std::move(result));
      StopWhenIdle();
    });
  }
  void StopWhenIdle();
  void Reload();
  void Tick();
  void Watchdog();
  // Finance controls (docs/approvals.md, docs/operator-control.md).
  void OnAwaitingApproval(const std::string& batch_id, const std::string& file_name, int required);
  void CheckApprovals();
  void OnApprovalRound(const payoutd::ApprovalRound& round);
  void OnControl(const ControlRequest& request, const ControlPeer& peer,
                 ControlServer::Reply reply);
  void HoldFromControl(const ControlRequest& request, const ControlPeer& peer,
                       ControlServer::Reply reply);
  void CancelFromControl(const BatchRecord& batch, const ControlRequest& request,
                         const ControlPeer& peer, ControlServer::Reply reply);
  void CancelActive(const std::string& batch_id, const ControlRequest& request,
                    const ControlPeer& peer, ControlServer::Reply reply);

  ServiceOptions opt_;
  Config cfg_;
  boost::asio::io_context io_;
  SystemClock clock_;
  SystemRandom random_;
  BatchValidator validator_;
  std::unique_ptr<PayoutStore> store_;  // the io thread's connection
  std::unique_ptr<StoreThread>
      writer_;  // commits off the io thread (own connection); outlives engine_
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<StateMetrics> state_metrics_;
  std::unique_ptr<Leadership> leadership_;  // PostgreSQL state only (daemon/leadership.h)
  std::unique_ptr<GatewayClient> client_;
  std::unique_ptr<PayoutEngine> engine_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<CallbackReceiver> callbacks_;
  std::unique_ptr<ControlMetrics> control_metrics_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<ControlInbox> control_inbox_;  // PostgreSQL: commands from other hosts
  boost::asio::signal_set signals_;
  boost::asio::signal_set hup_;
  boost::asio::steady_timer grace_timer_;
  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer watchdog_timer_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer approval_timer_;
  // The signature files already checked (the store thread's, between approval rounds).
  std::shared_ptr<std::set<std::string>> seen_signatures_ =
      std::make_shared<std::set<std::string>>();
  bool approvals_waiting_ = false;        // a batch awaits approval: the rounds run
  std::vector<std::string> retry_files_;  // claimed files whose intake failed for a passing reason
  int lock_fd_ = -1;
  int exit_code_ = kExitOk;
  int startup_exit_code_ = kExitFailure;  // what StartupFailed() exits with
  bool stopping_ = false;
  bool drained_ = false;       // the engine has drained (after Shutdown)
  int store_jobs_ = 0;         // PostToStore jobs whose completion has not run
  std::string process_batch_;  // kProcess: the batch id
  int64_t done_batches_ = 0;
};

Status Service::Lock() {
  std::string path = cfg_.state.path + ".lock";
  lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return Status::Unavailable("cannot open lock file " + path);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::FailedPrecondition("another payoutd (run or process) is using the state " +
                                      cfg_.state.path);
  }
  return Status::Ok();
}

// The daemon's life: start up, take the batch in (`process`), resume, then run until shutdown.
int Service::Run() {
  log::Configure(cfg_.log);
  if (std::optional<int> exit_code = StandBy()) return *exit_code;
  if (Status st = StartUp(); !st.ok()) return StartupFailed(st);
  if (Process()) {
    if (std::optional<int> exit_code = TakeProcessBatch()) return *exit_code;
  }
  if (Status st = Resume(); !st.ok()) return StartupFailed(st);
  Serve();
  io_.run();
  // Replies of requests from other hosts written, before the lease goes.
  if (control_inbox_) control_inbox_->Stop();
  if (leadership_) leadership_->Stop(/*release=*/true);  // after the last commit
  if (lock_fd_ >= 0) ::close(lock_fd_);
  return exit_code_;
}

// PostgreSQL: a standby until this instance takes the lease (daemon/leadership.h); metrics are
// served and systemd hears READY, nothing else runs. An exit code when it stops as a standby.
std::optional<int> Service::StandBy() {
  if (Process() || cfg_.state.backend != StateOptions::Backend::kPostgresql) return std::nullopt;
  auto metrics = Metrics::Create(cfg_.metrics.listen, PAYOUTD_VERSION);
  if (!metrics.ok()) {
    startup_exit_code_ = kExitUsage;  // metrics.listen cannot be served here: the config's to fix
    return StartupFailed(metrics.status());
  }
  metrics_ = std::move(*metrics);
  state_metrics_ = std::make_unique<StateMetrics>(*metrics_->registry());
  leadership_ = Leadership::ForState(cfg_.state, state_metrics_.get());
  auto leads = std::make_shared<bool>(false);
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) io_.stop();
  });
  leadership_->Start(
      io_,
      [this, leads] {
        *leads = true;
        signals_.cancel();  // Serve() waits for them again
        io_.stop();
      },
      [this] { StopAtOnce("the lease was lost"); });
  log::Info("payoutd.ready", {{"version", PAYOUTD_VERSION},
                              {"mode", "run"},
                              {"role", "standby"},
                              {"instance", leadership_->instance()},
                              {"metrics", MetricsWhere()}});
  systemd::Ready();
  systemd::Status("standby: waiting for the lease");
  Watchdog();  // a standby is alive too; Serve() arms it again once this instance leads
  io_.run();
  io_.restart();
  if (*leads) return std::nullopt;
  leadership_->Stop(/*release=*/true);
  log::Info("payoutd.stopped", {{"exit_code", "0"}, {"role", "standby"}});
  return kExitOk;
}

// A leader that lost its lease, or whose writes are refused, ends like a crash: nothing it holds
// could be committed, and the spool is the new leader's now. systemd starts it again as a standby.
void Service::StopAtOnce(const std::string& why) {
  log::Error("payoutd.exiting", {{"reason", why}, {"exit_code", std::to_string(kExitFailure)}});
  std::_Exit(kExitFailure);
}

int Service::StartupFailed(const Status& why) {
  log::Error("startup.failed", {{"error", why.message()}});
  return startup_exit_code_;
}

// Everything the daemon needs before it takes work: the state (locked, one connection for the io
// thread and one for the store thread), metrics, the gateway client, the engine, the callback
// receiver, and the spool or the output folder.
Status Service::StartUp() {
  PAYOUTD_RETURN_IF_ERROR(OpenState());
  if (!metrics_) {
    // A listener the configuration asks for and this host cannot give (the port is another
    // program's, the address not this host's) is the configuration's to fix: exit 2, which
    // systemd does not restart into the same failure.
    startup_exit_code_ = kExitUsage;
    PAYOUTD_ASSIGN_OR_RETURN(
        metrics_,
        Metrics::Create(Process() ? std::string() : cfg_.metrics.listen, PAYOUTD_VERSION));
    startup_exit_code_ = kExitFailure;
    state_metrics_ = std::make_unique<StateMetrics>(*metrics_->registry());
    state_metrics_->SetLeader(true);  // SQLite: the one instance
  }
  control_metrics_ = std::make_unique<ControlMetrics>(*metrics_->registry());
  if (leadership_) {
    // The gateway's logs show which instance sent what, and in which term.
    cfg_.gateway.user_agent = std::string("payoutd/") + PAYOUTD_VERSION + " (" +
                              leadership_->instance() + "; term " +
                              std::to_string(leadership_->term()) + ")";
  }
  PAYOUTD_ASSIGN_OR_RETURN(client_,
                           GatewayClient::Create(io_, cfg_.gateway, clock_, random_, metrics_.get())
                               .WithPrefix("gateway: "));
  engine_ = std::make_unique<PayoutEngine>(io_, *store_, *client_, clock_, EngineOptionsFor(cfg_),
                                           this, writer_.get());
  if (leadership_) {
    // Only while the lease holds (renewed less than lease*2/3 ago) and the state takes commits.
    client_->SetSendGate([this](SteadyTime) {
      const bool store_up = !engine_ || !engine_->store_down();
      return leadership_->MaySend(std::chrono::steady_clock::now()) && store_up;
    });
  }
  if (!cfg_.callbacks.listen.empty()) {
    auto nudge = [this](const std::string& id) { return engine_->Nudge(id); };
    startup_exit_code_ = kExitUsage;
    PAYOUTD_ASSIGN_OR_RETURN(
        callbacks_, CallbackReceiver::Create(io_, cfg_.callbacks.listen, nudge, metrics_.get())
                        .WithPrefix("callbacks.listen: "));
    startup_exit_code_ = kExitFailure;
  }

  if (Process()) return MakeDirs(opt_.out_dir);
  spool_ = std::make_unique<Spool>(
      io_, cfg_.spool.dir, cfg_.spool.settle, [this](const std::string& name) { OnClaimed(name); },
      [this](const std::string&) { metrics_->OnBatch(Metrics::BatchResult::kRejected); });
  return spool_->Prepare();
}

// The stores: one connection for the io thread, one for the store thread. SQLite: the file,
// locked against a second `payoutd run`; PostgreSQL: fenced with the lease's term.
Status Service::OpenState() {
  if (leadership_) {
    const std::string state = "state " + RedactUrl(std::string_view(cfg_.state.url)) + ": ";
    StoreAccess access;
    access.fencing_token = leadership_->term();
    PAYOUTD_ASSIGN_OR_RETURN(store_, OpenStore(cfg_.state, access).WithPrefix(state));
    PAYOUTD_ASSIGN_OR_RETURN(std::unique_ptr<PayoutStore> writer_store,
                             OpenStore(cfg_.state, access).WithPrefix(state));
    writer_ = std::make_unique<StoreThread>(io_, std::move(writer_store));
    return Status::Ok();
  }
  if (cfg_.state.backend != StateOptions::Backend::kSqlite) {
    // Without the lease it would write the shared state behind the leader's back.
    return Status::FailedPrecondition(
        "`payoutd process` keeps its state in SQLite; give it a configuration with "
        "state.backend: sqlite");
  }
  PAYOUTD_RETURN_IF_ERROR(MakeDirs(DirName(cfg_.state.path)));
  PAYOUTD_RETURN_IF_ERROR(Lock());
  const std::string state = "state " + cfg_.state.path + ": ";
  PAYOUTD_ASSIGN_OR_RETURN(store_, PayoutStore::Open(cfg_.state.path).WithPrefix(state));
  PAYOUTD_ASSIGN_OR_RETURN(std::unique_ptr<PayoutStore> writer_store,
                           PayoutStore::Open(cfg_.state.path).WithPrefix(state));
  writer_ = std::make_unique<StoreThread>(io_, std::move(writer_store));
  return Status::Ok();
}

// `payoutd process`: the batch is taken in before anything starts. An exit code when the run ends
// here (the batch is refused, or cannot be read or recorded); nullopt when it is to be paid.
std::optional<int> Service::TakeProcessBatch() {
  std::string file_name = BaseName(opt_.batch_path);
  process_batch_ = BatchIdFromFileName(file_name);
  // A batch that needs signatures is not paid by `process`: it is refused before it is recorded,
  // so that it can still be dropped into the spool of `payoutd run`, where it waits for them.
  if (cfg_.approvals.Enabled()) {
    Intake dry = TakeBatch(nullptr, validator_, process_batch_, opt_.batch_path, file_name,
                           WallMs(clock_), false, &cfg_.approvals);
    if (dry.kind == Intake::Kind::kAccepted && dry.approvals_required > 0) {
      dry.batch.errors.insert(
          dry.batch.errors.begin(),
          BatchError{0, "",
                     "needs " + std::to_string(dry.approvals_required) +
                         " approval(s): drop it into the spool of payoutd run"});
      dry.batch.error_count += 1;
      return RefuseProcessBatch(dry.batch);
    }
  }
  Intake in = TakeBatch(store_.get(), validator_, process_batch_, opt_.batch_path, file_name,
                        WallMs(clock_), true);
  if (in.kind == Intake::Kind::kResumed) {
    // The same batch again: an interrupted run is resumed; a finished one is a duplicate
    // (docs/batches.md).
    auto rec = store_->GetBatch(process_batch_);
    if (!rec.ok()) {
      in.kind = Intake::Kind::kFailed;
      in.status = rec.status();
    } else if (rec->has_value() && (*rec)->status == BatchRecord::Status::kFinished) {
      // Every payout final but the reports were cut off: write them and stop.
      boost::asio::post(io_, [this] { OnBatchFinished(process_batch_); });
    } else if (rec->has_value() && (*rec)->status == BatchRecord::Status::kReported) {
      const std::string again = "batch '" + process_batch_ + "' was already processed";
      in.batch.errors.insert(in.batch.errors.begin(), BatchError{0, "", again});
      in.batch.error_count += 1;
      in.kind = Intake::Kind::kRejected;
    }
  }
  switch (in.kind) {
    case Intake::Kind::kFailed:
      log::Error("batch.intake_failed",
                 {{"batch", process_batch_}, {"error", in.status.message()}});
      return kExitFailure;
    case Intake::Kind::kRejected: return RefuseProcessBatch(in.batch);
    case Intake::Kind::kAccepted:
    case Intake::Kind::kResumed:
      log::Info(in.kind == Intake::Kind::kResumed ? "batch.resumed" : "batch.accepted",
                {{"batch", process_batch_}, {"rows", std::to_string(in.batch.payouts.size())}});
      return std::nullopt;
  }
  return kExitFailure;
}

// A refused `process` batch: its errors.csv in the output folder and on stdout.
int Service::RefuseProcessBatch(const ValidatedBatch& batch) {
  std::string errors = FormatErrorsCsv(batch);
  std::string path = opt_.out_dir + "/" + process_batch_ + ".errors.csv";
  if (Status st = WriteFileAtomically(path, errors); !st.ok()) {
    // The errors still go to stdout below; the exit code says the batch was refused.
    log::Error("batch.errors_write_failed", {{"batch", process_batch_}, {"error", st.message()}});
  }
  std::cout << errors;
  log::Warn(
      "batch.rejected",
      {{"batch", process_batch_}, {"errors", std::to_string(batch.error_count)}, {"report", path}});
  return kExitBatchInvalid;
}

// The engine resumes what the state holds, then the spool what its folders hold. The engine's
// recovery writes through the io thread's connection, so it runs before anything is handed to the
// store thread (Recover's intakes and reports): no two writers at once.
Status Service::Resume() {
  PAYOUTD_RETURN_IF_ERROR(engine_->Start().WithPrefix("state: "));
  if (!spool_) return Status::Ok();
  PAYOUTD_RETURN_IF_ERROR(Recover().WithPrefix("recovery: "));
  spool_->Start();
  auto handler = [this](const ControlRequest& r, const ControlPeer& peer,
                        ControlServer::Reply reply) { OnControl(r, peer, std::move(reply)); };
  if (!cfg_.control.socket.empty()) {
    PAYOUTD_ASSIGN_OR_RETURN(
        control_,
        ControlServer::Create(io_, cfg_.control.socket, handler).WithPrefix("control.socket: "));
  }
  if (leadership_) {
    // The same commands from any other host, through the shared state (daemon/remote_control.h).
    control_inbox_ = ControlInbox::Start(io_, PgConnectOptionsFor(cfg_.state),
                                         leadership_->instance(), leadership_->term(), handler);
  }
  CheckApprovals();
  return Status::Ok();
}

std::string Service::MetricsWhere() const {
  if (!metrics_->port()) return "off";
  return cfg_.metrics.listen + " (port " + std::to_string(metrics_->port()) + ")";
}

// Signals, SIGHUP reloads, the ready line, and the periodic ticks.
void Service::Serve() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) Shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT", Process() ? kExitFailure : kExitOk);
  });
  Reload();  // arms the SIGHUP handler
  log::Info("payoutd.ready", {{"version", PAYOUTD_VERSION},
                              {"mode", Process() ? "process" : "run"},
                              {"gateway", cfg_.gateway.base_url},
                              {"metrics", MetricsWhere()},
                              {"spool", Process() ? "" : cfg_.spool.dir}});
  systemd::Ready();
  Tick();
  Watchdog();
}

// Recovery of the spool. The engine resumes unfinished payouts from the store by itself; here:
// finished batches whose reports were cut off are reported again, and files in work/ that have no
// complete batch record (a crash between claim and record) are taken in again.
Status Service::Recover() {
  PAYOUTD_RETURN_IF_ERROR(FinishApprovalMoves(*store_, cfg_.spool.dir));
  PAYOUTD_ASSIGN_OR_RETURN(const std::vector<BatchRecord> batches, store_->ListBatches());
  for (const auto& b : batches) {
    if (b.status == BatchRecord::Status::kFinished) Report(b.id);  // queued on the store thread
    if (b.status == BatchRecord::Status::kAwaitingApproval) approvals_waiting_ = true;
  }
  for (const auto& name : spool_->WorkFiles()) {
    std::string batch_id = BatchIdFromFileName(name);
    PAYOUTD_ASSIGN_OR_RETURN(const std::optional<BatchRecord> rec, store_->GetBatch(batch_id));
    if (rec) {
      if (rec->status == BatchRecord::Status::kReported)
        PAYOUTD_RETURN_IF_ERROR(spool_->Finish(name));
      // Recorded as awaiting approval, then cut off before its file moved on.
      if (rec->status == BatchRecord::Status::kAwaitingApproval)
        PAYOUTD_RETURN_IF_ERROR(spool_->AwaitApproval(name));
      continue;  // active: the engine resumes it
    }
    log::Info("spool.retake", {{"file", name}});
    OnClaimed(name);
  }
  return Status::Ok();
}

// Validation and the durable record of a batch (up to max_rows rows, seconds for a million) run on
// the store thread: the network loop keeps paying the batches already in progress meanwhile.
void Service::OnClaimed(const std::string& file_name) {
  if (stopping_) return;
  std::string batch_id = BatchIdFromFileName(file_name);
  std::string path = spool_->work() + "/" + file_name;
  int64_t now_ms = WallMs(clock_);
  PostToStore(
      [validator = validator_, batch_id, path, file_name, now_ms,
       approvals = cfg_.approvals](PayoutStore& store) {
        return TakeBatch(&store, validator, batch_id, path, file_name, now_ms, true, &approvals);
      },
      [this, file_name](Intake in) { OnIntake(file_name, std::move(in)); });
}

void Service::OnIntake(const std::string& file_name, Intake in) {
  std::string batch_id = BatchIdFromFileName(file_name);
  if (in.kind == Intake::Kind::kResumed) {
    // Claimed from inbox/ yet already known: the same batch dropped again after it was paid.
    in.batch.errors.insert(in.batch.errors.begin(),
                           BatchError{0, "", "batch '" + batch_id + "' was already processed"});
    in.batch.error_count += 1;
    in.kind = Intake::Kind::kRejected;
  }
  switch (in.kind) {
    case Intake::Kind::kAccepted:
      log::Info("batch.accepted", {{"batch", batch_id},
                                   {"rows", std::to_string(in.batch.payouts.size())},
                                   {"sha256", in.batch.sha256}});
      metrics_->OnBatch(Metrics::BatchResult::kAccepted);
      if (in.approvals_required > 0) {
        OnAwaitingApproval(batch_id, file_name, in.approvals_required);
        break;
      }
      // Shutting down: the batch is durable and its file in work/; the next start resumes it.
      if (!stopping_) engine_->AddBatch(batch_id);
      break;
    case Intake::Kind::kRejected: {
      const BatchError& first = in.batch.errors.front();
      log::Warn("batch.rejected", {{"batch", batch_id},
                                   {"errors", std::to_string(in.batch.error_count)},
                                   {"first_line", std::to_string(first.line)},
                                   {"first_error", first.message}});
      metrics_->OnBatch(Metrics::BatchResult::kRejected);
      if (Status st = spool_->Reject(file_name, FormatErrorsCsv(in.batch)); !st.ok())
        log::Error("spool.reject_failed", {{"batch", batch_id}, {"error", st.message()}});
      break;
    }
    case Intake::Kind::kFailed:
    case Intake::Kind::kResumed:
      log::Error("batch.intake_failed",
                 {{"batch", batch_id}, {"error", in.status.message()}, {"retry_in", "5s"}});
      RetryLater(file_name);
      break;
  }
}

void Service::RetryLater(const std::string& file_name) {
  if (stopping_) return;
  retry_files_.push_back(file_name);
  retry_timer_.expires_after(std::chrono::seconds(5));
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    auto files = std::move(retry_files_);
    retry_files_.clear();
    for (const auto& f : files) OnClaimed(f);
  });
}

// Runs on the store thread. Reports land in done/ with the input (results, summary, then the input,
// renamed back to back) before the batch is marked reported, so a crash in between only means
// writing them again.
ReportOutcome WriteReport(PayoutStore& store, const std::string& batch_id,
                          const CurrencyTable& currencies, const std::string& dir, Spool* spool) {
  ReportOutcome out;
  auto progress = store.Progress(batch_id);
  if (!progress.ok()) {
    out.status = progress.status();
    return out;
  }
  out.progress = std::move(*progress);
  out.results_path = dir + "/" + batch_id + ".results.csv";
  if (PAYOUTD_FAILPOINT("report.write")) {
    out.status = Status::Unavailable("failpoint report.write");
    return out;
  }
  FileSet set;  // results, summary, then the input: they appear in done/ together
  out.status = set.Write(out.results_path, [&](std::ostream& os) {
    return WriteResultsCsv(store, batch_id, currencies, os);
  });
  if (!out.status.ok()) return out;
  auto approvals = store.ListApprovals(batch_id);
  auto audit = store.ListAudit(batch_id);
  if (!approvals.ok() || !audit.ok()) {
    out.status = approvals.ok() ? audit.status() : approvals.status();
    return out;
  }
  out.summary = SummaryJson(out.progress, currencies, *approvals, *audit);
  if (out.status = set.Write(dir + "/" + batch_id + ".summary.json", out.summary); !out.status.ok())
    return out;
  if (spool) {
    const std::string& file_name = out.progress.batch.file_name;
    if (FileExists(spool->work() + "/" + file_name)) spool->Finish(file_name, &set);
  }
  if (out.status = set.Commit(); !out.status.ok()) return out;
  (void)PAYOUTD_FAILPOINT("report.before_mark_reported");
  out.status = store.SetBatchStatus(batch_id, BatchRecord::Status::kReported,
                                    out.progress.batch.finished_at_ms);
  return out;
}

void Service::Report(const std::string& batch_id) {
  std::string dir = Process() ? opt_.out_dir : spool_->done();
  PostToStore(
      [batch_id, dir, currencies = cfg_.batches.currencies, spool = spool_.get()](
          PayoutStore& store) { return WriteReport(store, batch_id, currencies, dir, spool); },
      [this, batch_id](ReportOutcome out) { OnReported(batch_id, out); });
}

void Service::OnReported(const std::string& batch_id, const ReportOutcome& out) {
  if (!out.status.ok()) {
    log::Error("batch.report_failed",
               {{"batch", batch_id}, {"error", out.status.message()}, {"retry_in", "30s"}});
    if (Process()) {
      Shutdown("report failed", kExitFailure);
      return;
    }
    // The batch stays kFinished: try again (and again at the next start) rather than forget it.
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, std::chrono::seconds(30));
    timer->async_wait([this, timer, batch_id](const boost::system::error_code& ec) {
      if (!ec && !stopping_) Report(batch_id);
    });
    return;
  }
  int64_t not_success = 0;
  for (const auto& [s, n] : out.progress.states)
    if (s != FinalState::kSuccess) not_success += n;
  log::Info("batch.done", {{"batch", batch_id},
                           {"rows", std::to_string(out.progress.batch.rows)},
                           {"not_success", std::to_string(not_success)},
                           {"results", out.results_path}});
  ++done_batches_;
  metrics_->OnBatch(Metrics::BatchResult::kDone);
  if (Process() && batch_id == process_batch_) {
    std::cout << out.summary;
    Shutdown("batch finished", not_success ? kExitNotAllSuccess : kExitOk);
  }
}

void Service::OnFinal(const PayoutRow& row) {
  int digits = cfg_.batches.currencies.MinorUnits(row.payout.currency).value_or(2);
  metrics_->OnPayoutFinal(row.progress.state, row.payout.currency, row.payout.amount_minor, digits);
  bool ok = row.progress.state == FinalState::kSuccess;
  log::Write(ok ? log::Level::kDebug : log::Level::kInfo, "payout.final",
             {{"batch", row.batch_id},
              {"payout", row.payout.id},
              {"state", std::string(FinalStateName(row.progress.state))},
              {"gateway_status", row.progress.gateway_status},
              {"account", MaskAccount(row.payout.account_number)},
              {"attempts", std::to_string(row.progress.attempts)},
              {"error", row.progress.error}});
}

void Service::OnUnknownStatus(const std::string&) {
  metrics_->OnUnknownGatewayStatus();
}

void Service::OnBatchFinished(const std::string& batch_id) {
  Report(batch_id);
}

// After shutdown_grace, a leader whose shared state is unreachable stops like a crash rather than
// wait for it without end (systemd would kill it at its stop timeout): what is not committed
// cannot be, and the next leader recovers it from the state (GET before any re-send). Looked at
// every second until the drain ends, since a commit under way may find the state gone later.
void Service::GiveUpOnAnUnreachableState() {
  if (!leadership_ || drained_) return;
  if (engine_->store_down()) {
    StopAtOnce(
        "stopping while the state is unreachable: the changes not committed are left to "
        "the next leader, which asks the gateway about them");
  }
  grace_timer_.expires_after(std::chrono::seconds(1));
  grace_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) GiveUpOnAnUnreachableState();
  });
}

void Service::OnStoreError(const std::string& message) {
  log::Error("state.write_failed", {{"error", message}});
  // A shared state that refuses our writes (fenced: another instance leads) or fails for good.
  if (leadership_) StopAtOnce("state write failed");
  Shutdown("state write failed", kExitFailure);
}

void Service::OnCommit(Duration took, const Status& written) {
  state_metrics_->OnCommit(took, written);
}

void Service::Shutdown(const std::string& why, int exit_code) {
  if (stopping_) return;
  stopping_ = true;
  exit_code_ = exit_code;
  log::Info("payoutd.stopping",
            {{"reason", why}, {"in_flight", std::to_string(client_->in_flight())}});
  systemd::Stopping();
  if (spool_) spool_->Stop();
  if (callbacks_) callbacks_->Stop();
  if (control_) control_->Stop();
  approval_timer_.cancel();
  signals_.cancel();
  hup_.cancel();
  tick_timer_.cancel();
  watchdog_timer_.cancel();
  retry_timer_.cancel();
  grace_timer_.expires_after(cfg_.shutdown_grace);
  grace_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    log::Warn("payoutd.grace_expired", {{"in_flight", std::to_string(client_->in_flight())}});
    client_->Cancel();
    GiveUpOnAnUnreachableState();
  });
  engine_->Drain([this] {
    drained_ = true;
    StopWhenIdle();
  });
}

void Service::StopWhenIdle() {
  if (!drained_ || store_jobs_ != 0) return;
  grace_timer_.cancel();
  log::Info("payoutd.stopped", {{"exit_code", std::to_string(exit_code_)}});
  io_.stop();
}

void Service::Reload() {
  hup_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec || stopping_) return;
    systemd::Reloading();
    auto fresh = LoadConfig(cfg_.path);
    if (!fresh.ok()) {
      log::Error("config.reload_failed", {{"error", fresh.error()}});
    } else {
      cfg_.gateway.limits = fresh->gateway.limits;
      cfg_.gateway.retry = fresh->gateway.retry;
      cfg_.polling = fresh->polling;
      cfg_.log = fresh->log;
      log::Configure(cfg_.log);
      client_->Reconfigure(cfg_.gateway.limits, cfg_.gateway.retry);
      engine_->Reconfigure(cfg_.polling);
      log::Info("config.reloaded",
                {{"requests_per_second", std::to_string(cfg_.gateway.limits.requests_per_second)},
                 {"burst", std::to_string(cfg_.gateway.limits.burst)},
                 {"max_in_flight", std::to_string(cfg_.gateway.limits.max_in_flight)}});
    }
    systemd::Ready();
    Reload();
  });
}

// Every few seconds: pending gauges, the oldest pending payout, and systemd's STATUS line.
void Service::Tick() {
  if (stopping_) return;
  auto started = std::chrono::steady_clock::now();
  std::map<Stage, int64_t> pending;
  int64_t oldest = 0;
  int64_t active = 0;
  auto batches = store_->ListBatches();
  if (!batches.ok()) log::Warn("tick.read_failed", {{"error", batches.error()}});
  int64_t held = 0;
  bool hold_all = false;
  if (auto all = store_->GetHoldAll(); all.ok()) hold_all = all->held();
  if (batches.ok()) {
    for (const auto& b : *batches) {
      bool waiting = b.status == BatchRecord::Status::kActive ||
                     b.status == BatchRecord::Status::kAwaitingApproval;
      if (waiting && (hold_all || b.hold.held()) && !b.cancelled_at_ms) ++held;
      if (b.status != BatchRecord::Status::kActive) continue;
      ++active;
      auto p = store_->Progress(b.id);
      if (!p.ok()) {
        log::Warn("tick.read_failed", {{"batch", b.id}, {"error", p.error()}});
        continue;
      }
      for (const auto& [stage, n] : p->stages)
        if (stage != Stage::kFinal) pending[stage] += n;
      if (p->oldest_pending_since_ms && (!oldest || p->oldest_pending_since_ms < oldest))
        oldest = p->oldest_pending_since_ms;
    }
  }
  int64_t total_pending = 0;
  for (Stage s : {Stage::kNew, Stage::kSubmitting, Stage::kUnknown, Stage::kPolling}) {
    metrics_->SetPending(s, pending[s]);
    total_pending += pending[s];
  }
  metrics_->SetOldestPendingAge(oldest ? (WallMs(clock_) - oldest) / 1000.0 : 0.0);
  control_metrics_->SetHeld(held);
  std::string status = std::to_string(active) + " batch(es) active, " +
                       std::to_string(total_pending) + " payout(s) pending, " +
                       std::to_string(done_batches_) + " batch(es) done";
  if (held) status += ", " + std::to_string(held) + " batch(es) HELD";
  if (client_->paused()) status += ", SENDING PAUSED (gateway refuses our token)";
  if (CircuitState c = client_->circuit(); c.open) {
    status += ", GATEWAY UNREACHABLE since " +
              FormatIsoTime(
                  std::chrono::duration_cast<std::chrono::milliseconds>(c.since.time_since_epoch())
                      .count()) +
              " (" + c.cause + ")";
  }
  metrics_->CountOutageSoFar();
  systemd::Status(status);
  // The counts are aggregates over the active batches; on very large batches keep their cost
  // under 5% of the event loop.
  auto cost = std::chrono::steady_clock::now() - started;
  tick_timer_.expires_after(std::max<Duration>(std::chrono::seconds(2), cost * 20));
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

// A batch recorded as awaiting approval: its file waits in approval/ for signatures.
void Service::OnAwaitingApproval(const std::string& batch_id, const std::string& file_name,
                                 int required) {
  log::Info("batch.awaiting_approval",
            {{"batch", batch_id}, {"approvals_required", std::to_string(required)}});
  if (Status st = spool_->AwaitApproval(file_name); !st.ok()) {
    // The state says it waits; the next start moves the file (Recover).
    log::Error("spool.move_failed", {{"batch", batch_id}, {"error", st.message()}});
  }
  approvals_waiting_ = true;
  CheckApprovals();
}

// Once a second while a batch awaits approval: the store thread checks new signatures, starts
// the approved batches and rejects the expired ones (daemon/approval_round.h).
void Service::CheckApprovals() {
  if (stopping_ || !approvals_waiting_ || !spool_) return;
  approval_timer_.cancel();
  approvals_waiting_ = false;  // set again by the round when something still waits
  PostToStore(
      [policy = cfg_.approvals, dir = cfg_.spool.dir, now_ms = WallMs(clock_),
       seen = seen_signatures_](PayoutStore& store) {
        return RunApprovalRound(store, policy, dir, now_ms, *seen);
      },
      [this](payoutd::ApprovalRound round) { OnApprovalRound(round); });
}

void Service::OnApprovalRound(const payoutd::ApprovalRound& round) {
  for (const auto& c : round.checked) {
    if (c.check.valid) {
      log::Info(c.counted ? "approval.counted" : "approval.repeated",
                {{"batch", c.batch_id},
                 {"principal", c.check.signer.principal},
                 {"key", c.check.signer.key_fingerprint},
                 {"file", c.check.file}});
    } else {
      log::Warn("approval.invalid",
                {{"batch", c.batch_id}, {"file", c.check.file}, {"reason", c.check.reason}});
      control_metrics_->OnInvalidApproval();
    }
  }
  for (const auto& problem : round.problems)
    log::Error("approval.round_failed", {{"error", problem}});
  for (const auto& id : round.expired) {
    log::Warn("batch.approval_expired", {{"batch", id}});
    metrics_->OnBatch(Metrics::BatchResult::kRejected);
  }
  for (const auto& id : round.approved) {
    log::Info("batch.approved", {{"batch", id}});
    if (!stopping_) engine_->AddBatch(id);
  }
  double oldest = round.oldest_awaiting_since_ms
                      ? (WallMs(clock_) - round.oldest_awaiting_since_ms) / 1000.0
                      : 0.0;
  control_metrics_->SetAwaitingApproval(round.awaiting, oldest);
  if (stopping_) return;
  approvals_waiting_ = approvals_waiting_ || round.awaiting > 0 || !round.problems.empty();
  if (!approvals_waiting_) return;
  approval_timer_.expires_after(std::chrono::seconds(1));
  approval_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) CheckApprovals();
  });
}

// hold, resume, cancel from the control socket (docs/operator-control.md). The reply goes out once
// the change is durable and in force: from then on, no new POST of the batch starts.
void Service::OnControl(const ControlRequest& request, const ControlPeer& peer,
                        ControlServer::Reply reply) {
  if (stopping_) {
    reply(ControlReply{1, "payoutd is shutting down; try again once it has stopped or restarted"});
    return;
  }
  ControlReply refusal;
  Result<BatchRecord> batch = CheckControlRequest(*store_, request, &refusal);
  log::Info("control.request", {{"command", request.command},
                                {"batch", request.all ? "--all" : request.batch},
                                {"by", peer.Describe()},
                                {"reason", request.reason},
                                {"refused", batch.ok() ? "" : refusal.message}});
  if (!batch.ok()) {
    reply(refusal);
    return;
  }
  if (request.command == "cancel") {
    CancelFromControl(*batch, request, peer, std::move(reply));
  } else {
    HoldFromControl(request, peer, std::move(reply));
  }
}

void Service::HoldFromControl(const ControlRequest& request, const ControlPeer& peer,
                              ControlServer::Reply reply) {
  const int64_t now_ms = WallMs(clock_);
  const Hold hold = ControlHold(request, peer, now_ms);
  const AuditEntry audit = ControlAudit(request, peer, now_ms);
  auto done = [request, peer, reply = std::move(reply)](Status st) {
    if (!st.ok()) {
      reply(ControlReply{1, "cannot change the state: " + st.message()});
      return;
    }
    log::Info(request.command == "hold" ? "batch.held" : "batch.resumed",
              {{"batch", request.all ? "--all" : request.batch},
               {"by", peer.Describe()},
               {"reason", request.reason}});
    reply(ControlReply{0, HoldMessage(request)});
  };
  if (!request.all) {
    engine_->HoldBatch(request.batch, hold, audit, std::move(done));
    return;
  }
  std::vector<std::pair<std::string, AuditEntry>> audits;
  auto batches = store_->ListBatches();
  if (!batches.ok()) {
    done(batches.status());
    return;
  }
  for (const BatchRecord& b : *batches) {
    if (b.status == BatchRecord::Status::kActive ||
        b.status == BatchRecord::Status::kAwaitingApproval)
      audits.emplace_back(b.id, audit);
  }
  engine_->HoldAll(hold, std::move(audits), std::move(done));
}

void Service::CancelFromControl(const BatchRecord& batch, const ControlRequest& request,
                                const ControlPeer& peer, ControlServer::Reply reply) {
  if (batch.cancelled_at_ms) {
    reply(ControlReply{0, "batch " + batch.id + " was already cancelled"});
    return;
  }
  if (batch.status != BatchRecord::Status::kAwaitingApproval) {
    CancelActive(batch.id, request, peer, std::move(reply));
    return;
  }
  // Awaiting approval: rejected on the store thread, where the approval rounds run, so that a
  // round cannot start it meanwhile; if one already did, it is cancelled as an active batch.
  const int64_t now_ms = WallMs(clock_);
  const AuditEntry audit = ControlAudit(request, peer, now_ms);
  const std::string why =
      "cancelled: " + (request.reason.empty() ? "by " + peer.Describe() : request.reason);
  PostToStore(
      [id = batch.id, dir = cfg_.spool.dir, now_ms, why,
       audit](PayoutStore& store) -> Result<std::optional<int64_t>> {
        PAYOUTD_ASSIGN_OR_RETURN(std::optional<BatchRecord> rec, store.GetBatch(id));
        if (!rec || rec->status != BatchRecord::Status::kAwaitingApproval)
          return std::optional<int64_t>();
        PAYOUTD_ASSIGN_OR_RETURN(int64_t n,
                                 RejectAwaitingBatch(store, *rec, dir, now_ms, why, audit));
        return std::optional<int64_t>(n);
      },
      [this, id = batch.id, request, peer,
       reply = std::move(reply)](Result<std::optional<int64_t>> out) mutable {
        if (!out.ok()) {
          reply(ControlReply{1, "cannot change the state: " + out.error()});
          return;
        }
        if (!out->has_value()) {
          CancelActive(id, request, peer, std::move(reply));
          return;
        }
        log::Info("batch.cancelled", {{"batch", id},
                                      {"by", peer.Describe()},
                                      {"reason", request.reason},
                                      {"cancelled", std::to_string(**out)},
                                      {"awaiting_approval", "true"}});
        metrics_->OnBatch(Metrics::BatchResult::kRejected);
        metrics_->OnPayoutsCancelled(**out);
        reply(ControlReply{0, "cancelled batch " + id + " awaiting approval (" +
                                  WithThousands(**out) +
                                  " payouts, none sent); it is in rejected/"});
      });
}

void Service::CancelActive(const std::string& batch_id, const ControlRequest& request,
                           const ControlPeer& peer, ControlServer::Reply reply) {
  if (stopping_) {
    reply(ControlReply{1, "payoutd is shutting down; try again once it has stopped or restarted"});
    return;
  }
  // Recorded and active but not yet handed to the engine (its intake's completion is queued): the
  // engine takes it now, so that the cancel reaches every payout.
  if (!engine_->IsActive(batch_id)) engine_->AddBatch(batch_id);
  const AuditEntry audit = ControlAudit(request, peer, WallMs(clock_));
  engine_->CancelBatch(
      batch_id, CancelError(request, peer), audit,
      [this, batch_id, request, peer, reply = std::move(reply)](Result<CancelOutcome> out) {
        if (!out.ok()) {
          reply(ControlReply{1, "cannot cancel: " + out.error()});
          return;
        }
        log::Info("batch.cancelled", {{"batch", batch_id},
                                      {"by", peer.Describe()},
                                      {"reason", request.reason},
                                      {"cancelled", std::to_string(out->cancelled)},
                                      {"still_running", std::to_string(out->still_running)}});
        metrics_->OnPayoutsCancelled(out->cancelled);
        reply(ControlReply{0, CancelMessage(batch_id, *out)});
      });
}

// WATCHDOG=1 from the event loop itself: if the loop stalls, systemd notices.
void Service::Watchdog() {
  auto interval = systemd::WatchdogInterval();
  if (interval.count() == 0 || stopping_) return;
  systemd::Watchdog();
  watchdog_timer_.expires_after(interval / 2);
  watchdog_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Watchdog();
  });
}

}  // namespace

int RunService(ServiceOptions options) {
  ::signal(SIGPIPE, SIG_IGN);
  Service service(std::move(options));
  return service.Run();
}

}  // namespace payoutd
