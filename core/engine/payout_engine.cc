#include "core/engine/payout_engine.h"

#include <algorithm>

#include <boost/asio/post.hpp>

#include "core/base/failpoint.h"
#include "core/base/log.h"

namespace payoutd {
namespace {

int64_t ToMs(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

constexpr size_t kPageSize = 256;

}  // namespace

PayoutEngine::PayoutEngine(boost::asio::io_context& io, PayoutStore& store, GatewayClient& client,
                           Clock& clock, EngineOptions options, EngineObserver* observer,
                           StoreThread* writer)
    : io_(io),
      store_(store),
      client_(client),
      clock_(clock),
      options_(std::move(options)),
      observer_(observer),
      writer_(writer),
      timer_(clock.NewTimer(io)) {
  client_.SetCircuitListener([this](const CircuitEvent& e) { OnCircuit(e); });
}

PayoutEngine::~PayoutEngine() {
  alive_.End();
  client_.SetCircuitListener(nullptr);
}

int64_t PayoutEngine::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.WallNow().time_since_epoch())
      .count();
}

bool PayoutEngine::IsFinalStatus(const std::string& s) const {
  return Contains(options_.polling.final_statuses, s);
}
bool PayoutEngine::IsSuccessStatus(const std::string& s) const {
  return Contains(options_.polling.success_statuses, s);
}
bool PayoutEngine::IsPendingStatus(const std::string& s) const {
  return Contains(options_.polling.pending_statuses, s);
}

Status PayoutEngine::Start() {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  // Outages that may still matter to give_up_after; one still open means we stopped during it.
  PAYOUTD_ASSIGN_OR_RETURN(outages_,
                           store_.LoadOutages(NowMs() - ToMs(options_.polling.give_up_after)));
  if (!outages_.empty() && outages_.back().ended_at_ms == 0) {
    const GatewayOutage& o = outages_.back();
    client_.OpenCircuit(WallTime(std::chrono::milliseconds(o.started_at_ms)), o.cause);
  }
  PAYOUTD_ASSIGN_OR_RETURN(const Hold hold_all, store_.GetHoldAll());
  hold_all_ = hold_all.held();
  PAYOUTD_ASSIGN_OR_RETURN(const std::vector<BatchRecord> batches, store_.ListBatches());
  for (const auto& b : batches) {
    if (b.hold.held() && b.status != BatchRecord::Status::kReported) holds_.insert(b.id);
    if (b.status != BatchRecord::Status::kActive) continue;
    // A POST cut off by a crash may or may not have reached the gateway: resolve with GET first.
    for (;;) {
      PAYOUTD_ASSIGN_OR_RETURN(std::vector<PayoutRow> rows,
                               store_.LoadByStage(b.id, Stage::kSubmitting, 0, 4096));
      if (rows.empty()) break;
      for (auto& row : rows) {
        row.progress.stage = Stage::kUnknown;
        row.progress.next_at_ms = NowMs();
        Record(row);
      }
      auto job = TakeCommitJob();
      Status written = WriteCommit(store_, *job);
      if (!FinishCommit(*job, written))
        return written.WithPrefix("cannot commit recovery of in-flight payouts: ");
    }
    AddBatch(b.id);
  }
  SchedulePump();
  return Status::Ok();
}

void PayoutEngine::AddBatch(const std::string& batch_id) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  if (batches_.count(batch_id)) return;
  auto progress = store_.Progress(batch_id);
  if (!progress.ok()) {
    log::Error("engine.batch_load_failed", {{"batch", batch_id}, {"error", progress.error()}});
    return;
  }
  int64_t finals = 0;
  for (const auto& [state, n] : progress->states) finals += n;
  Cursor c;
  c.batch_id = batch_id;
  c.remaining = progress->batch.rows - finals;
  c.cancelled = progress->batch.cancelled_at_ms != 0;
  log::Info("engine.batch_started", {{"batch", batch_id},
                                     {"rows", std::to_string(progress->batch.rows)},
                                     {"remaining", std::to_string(c.remaining)}});
  batches_.emplace(batch_id, std::move(c));
  if (batches_.at(batch_id).remaining <= 0) {
    pending_final_count_[batch_id] += 0;  // finished on the next commit
  }
  SchedulePump();
}

bool PayoutEngine::Nudge(const std::string& payout_id) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  if (draining_) return false;
  auto row = store_.GetPayout(payout_id);
  if (!row.ok()) log::Error("engine.load_failed", {{"payout", payout_id}, {"error", row.error()}});
  if (!row.ok() || !row->has_value()) return false;
  // A callback may overtake our own record of the POST's outcome: keep the hint until the payout
  // is waiting for a poll, then poll it at once.
  if ((*row)->progress.stage != Stage::kFinal) {
    nudged_.insert(payout_id);
    SchedulePump();
  }
  return true;
}

void PayoutEngine::Reconfigure(const PollingPolicy& polling) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  options_.polling = polling;
}

void PayoutEngine::Drain(std::function<void()> done) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  draining_ = true;
  drained_ = std::move(done);
  client_.Shutdown();
  SchedulePump();
}

PayoutEngine::Snapshot PayoutEngine::snapshot() const {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  return Snapshot{batches_.size(), submits_out_, polls_out_, pending_.size() + committing_};
}

// Pumps run at most once per commit_interval, so that state changes are committed in groups.
void PayoutEngine::SchedulePump() {
  ScheduleAt(std::max(clock_.Now(), last_pump_ + options_.commit_interval));
}

void PayoutEngine::ScheduleAt(SteadyTime at) {
  // Stopped by a store error, the engine pumps no more; a drain ends once its calls are back.
  if (stopped_) CheckDrained();
  if (stopped_ || (pump_scheduled_ && at >= wake_at_)) return;
  pump_scheduled_ = true;
  wake_at_ = at;
  timer_->WaitUntil(at, [this] {  // replaces an earlier wait, if any
    pump_scheduled_ = false;
    Pump();
  });
}

void PayoutEngine::Pump() {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  last_pump_ = clock_.Now();
  if (stopped_) return;
  if (!Commit()) return;
  if (!draining_ && !store_down_ && pending_.size() + committing_ < options_.max_uncommitted) {
    FillPolls();
    FillSubmissions();
  }
  CheckDrained();
  if (stopped_ || draining_ || store_down_) return;  // store down: the commit's retry wakes us
  // What was just recorded (submissions on their way out) is committed at the next pump, not only
  // once some answer comes back: a restart must find those POSTs as possibly under way.
  if (!pending_.empty()) SchedulePump();

  // Wake for the next due poll; completions wake us earlier through SchedulePump().
  auto next = store_.NextDueAt();
  if (!next.ok()) {
    // The state could not be read (a broken connection reconnects at the next call): look again.
    log::Error("engine.load_failed", {{"error", next.error()}});
    ScheduleAt(clock_.Now() + std::chrono::seconds(1));
    return;
  }
  if (!next->has_value()) {
    if (!batches_.empty() && submits_out_ == 0 && polls_out_ == 0) {
      // Nothing due and nothing outstanding: a safety net in case a row was skipped.
      next = std::optional<int64_t>(NowMs() + 1000);
    } else {
      return;
    }
  }
  int64_t delay = std::clamp<int64_t>(**next - NowMs(), ToMs(options_.commit_interval), 5000);
  ScheduleAt(clock_.Now() + std::chrono::milliseconds(delay));
}

bool PayoutEngine::Commit() {
  const bool nothing = pending_.empty() && pending_final_count_.empty() &&
                       pending_outages_.empty() && pending_controls_.empty();
  if (!writer_) {
    if (nothing) return true;
    auto job = TakeCommitJob();
    return FinishCommit(*job, WriteCommit(store_, *job));
  }
  if (commit_in_flight_) return true;  // these changes go with the next group
  if (retry_job_) {
    // The group the store did not take goes first, alone: what changed since comes after it.
    if (clock_.Now() < retry_at_) {
      ScheduleAt(retry_at_);  // an earlier pump came first: keep the retry's wake-up
      return true;
    }
    PostCommit(std::move(retry_job_));
    return true;
  }
  if (nothing) return true;
  PostCommit(TakeCommitJob());
  return true;
}

void PayoutEngine::PostCommit(std::shared_ptr<CommitJob> job) {
  commit_in_flight_ = true;
  committing_ = job->updates.size();
  writer_->Post(
      [job](PayoutStore& store) {
        const SteadyTime started = std::chrono::steady_clock::now();
        Status written = WriteCommit(store, *job);
        job->took = std::chrono::steady_clock::now() - started;
        return written;
      },
      [this, alive = alive_.token(), job](Status written) {
        if (!alive) return;
        commit_in_flight_ = false;
        committing_ = 0;
        if (observer_) observer_->OnCommit(job->took, written);
        if (written.code() == StatusCode::kUnavailable && options_.retry_unavailable_commits)
          return RetryCommitLater(job, written);
        if (store_down_ && written.ok()) {
          log::Info("engine.store_back", {{"action", "requests start again"}});
          store_down_ = false;
          retry_backoff_ = Duration::zero();
        }
        if (!FinishCommit(*job, written)) return;
        SchedulePump();  // the next group, and the payouts this one settled
      });
}

// The store is unreachable: nothing of the group is lost, it waits here (and counts against
// max_uncommitted); no new work starts until it is durable.
void PayoutEngine::RetryCommitLater(std::shared_ptr<CommitJob> job, const Status& why) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  retry_backoff_ = retry_backoff_ == Duration::zero()
                       ? Duration(std::chrono::milliseconds(100))
                       : std::min<Duration>(retry_backoff_ * 2, options_.store_retry_max);
  if (!store_down_) {
    log::Warn("engine.store_unavailable",
              {{"error", why.message()},
               {"uncommitted", std::to_string(job->updates.size() + pending_.size())},
               {"action", "no request starts; changes are kept and committed once it is back"}});
  }
  store_down_ = true;
  committing_ = job->updates.size();
  retry_job_ = std::move(job);
  retry_at_ = clock_.Now() + retry_backoff_;
  ScheduleAt(retry_at_);
}

std::shared_ptr<PayoutEngine::CommitJob> PayoutEngine::TakeCommitJob() {
  auto job = std::make_shared<CommitJob>();
  job->updates = std::move(pending_);
  pending_.clear();
  job->finals = std::move(pending_finals_);
  pending_finals_.clear();
  job->outages = std::move(pending_outages_);
  pending_outages_.clear();
  job->controls = std::move(pending_controls_);
  pending_controls_.clear();
  job->submissions = std::move(unrecorded_);
  unrecorded_.clear();
  job->now_ms = NowMs();
  for (const auto& [batch_id, n] : pending_final_count_) {
    auto it = batches_.find(batch_id);
    if (it == batches_.end()) continue;
    it->second.remaining -= n;
    PAYOUTD_CHECK(it->second.remaining >= 0);
    if (it->second.remaining == 0) job->finished.push_back(batch_id);
  }
  pending_final_count_.clear();
  return job;
}

// Runs on the writer's thread (or the io thread without one): nothing here touches the engine.
// Each write is one step, committed on its own; a retry of the job (after kUnavailable) skips
// the steps already durable. The step that failed is written again, which is safe: each writes
// values, not increments (a step whose COMMIT got no answer may have been durable already).
Status PayoutEngine::WriteCommit(PayoutStore& store, CommitJob& job) {
  size_t step = 0;
  auto run = [&](auto&& write) -> Status {
    if (step++ < job.steps_done) return Status::Ok();
    Status s = write();
    if (s.ok()) ++job.steps_done;
    return s;
  };
  if (!job.updates.empty()) PAYOUTD_RETURN_IF_ERROR(run([&] { return store.Apply(job.updates); }));
  for (const auto& outage : job.outages)
    PAYOUTD_RETURN_IF_ERROR(run([&] { return store.RecordOutage(outage); }));
  // After the updates: a payout whose submission was taken back is at kNew again, so a cancel
  // in the same group ends it too.
  for (ControlChange& c : job.controls) {
    for (const auto& h : c.holds)
      PAYOUTD_RETURN_IF_ERROR(run([&] { return store.SetHold(h.first, h.second); }));
    if (c.hold_all) PAYOUTD_RETURN_IF_ERROR(run([&] { return store.SetHoldAll(*c.hold_all); }));
    if (!c.cancel_batch.empty()) {
      PAYOUTD_RETURN_IF_ERROR(run([&]() -> Status {
        PAYOUTD_ASSIGN_OR_RETURN(c.cancel_outcome,
                                 store.CancelUnsent(c.cancel_batch, job.now_ms, c.cancel_error));
        return Status::Ok();
      }));
    }
    for (const auto& a : c.audit)
      PAYOUTD_RETURN_IF_ERROR(run([&] { return store.AddAudit(a.first, a.second); }));
  }
  // After the finals above: a batch is kFinished only once every payout's final state is durable.
  if (!job.finished.empty() && PAYOUTD_FAILPOINT("engine.before_finished"))
    return Status::Unavailable("failpoint engine.before_finished");
  for (const auto& batch_id : job.finished) {
    PAYOUTD_RETURN_IF_ERROR(run([&] {
      return store.SetBatchStatus(batch_id, BatchRecord::Status::kFinished, job.now_ms);
    }));
  }
  if (!job.finished.empty()) (void)PAYOUTD_FAILPOINT("engine.after_finished");  // reports not begun
  return Status::Ok();
}

bool PayoutEngine::FinishCommit(const CommitJob& job, const Status& written) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  if (!written.ok()) {
    stopped_ = true;
    log::Error("engine.commit_failed", {{"error", written.message()}});
    for (HeldSubmission& s : job.submissions) Release(s);
    for (const ControlChange& c : job.controls) {
      if (c.done) c.done(written);
      if (c.cancel_done) c.cancel_done(written);
    }
    if (observer_) observer_->OnStoreError(written.message());
    return false;
  }
  for (const auto& u : job.updates) {
    auto it = unsettled_.find(u.id);
    if (it != unsettled_.end() && --it->second == 0) unsettled_.erase(it);
    // A commit can land after the sweep of due rows has passed this row's next_at: step back.
    const PayoutProgress& p = u.progress;
    const bool waits_for_poll = p.stage == Stage::kPolling || p.stage == Stage::kUnknown;
    if (waits_for_poll && p.next_at_ms <= due_from_.next_at_ms)
      due_from_ = DuePosition{p.next_at_ms, INT64_MIN};
  }
  for (HeldSubmission& s : job.submissions) Release(s);
  if (observer_)
    for (const auto& row : job.finals) observer_->OnFinal(row);
  for (const auto& batch_id : job.finished) {
    if (rr_next_ == batch_id) rr_next_.clear();
    batches_.erase(batch_id);
    log::Info("engine.batch_finished", {{"batch", batch_id}});
    if (observer_) observer_->OnBatchFinished(batch_id);
  }
  for (const ControlChange& c : job.controls) {
    CancelOutcome outcome = c.cancel_outcome;
    if (!c.cancel_batch.empty()) {
      auto it = batches_.find(c.cancel_batch);
      if (it != batches_.end()) {
        // From the store's count of the payouts not final, not from the count it cancelled: a
        // cancel whose COMMIT landed but whose answer was lost is written again (WriteCommit),
        // finds nothing left to cancel and says 0, yet its count of what still runs is right.
        // Before the cancel, `remaining` was exactly what the store held not final.
        outcome.cancelled = std::max<int64_t>(0, it->second.remaining - outcome.still_running);
        it->second.remaining = outcome.still_running;
        if (it->second.remaining == 0) pending_final_count_[c.cancel_batch] += 0;  // finished next
      }
      SchedulePump();
    }
    if (c.done) c.done(Status::Ok());
    if (c.cancel_done) c.cancel_done(outcome);
  }
  CheckDrained();
  return true;
}

void PayoutEngine::QueueControl(ControlChange change) {
  pending_controls_.push_back(std::move(change));
  SchedulePump();
}

bool PayoutEngine::IsCancelled(const std::string& batch_id) const {
  auto it = batches_.find(batch_id);
  return it != batches_.end() && it->second.cancelled;
}

bool PayoutEngine::MaySubmit(const std::string& batch_id) const {
  if (hold_all_ || holds_.count(batch_id)) return false;
  auto it = batches_.find(batch_id);
  return it == batches_.end() || !it->second.cancelled;
}

// Submissions the client has not put on the wire yet come back as kCancelled (OnSubmitted puts
// them back in their batch's queue, or leaves them for a cancel to end).
void PayoutEngine::WithdrawSubmissions(
    const std::function<bool(const std::string& batch_id)>& which) {
  // Not yet committed, so not yet with the client: they end as kCancelled at once, ahead of what
  // the caller queues next (a cancel must find them new again).
  for (auto it = unrecorded_.begin(); it != unrecorded_.end();) {
    if (!which(it->batch_id)) {
      ++it;
      continue;
    }
    SubmitResult r;
    r.outcome = SubmitResult::Outcome::kCancelled;
    boost::asio::post(io_, [done = std::move(it->on_submitted), r]() mutable { done(r); });
    it = unrecorded_.erase(it);
  }
  client_.WithdrawSubmissions([&](const std::string& payout_id) {
    auto it = submitting_.find(payout_id);
    return it != submitting_.end() && which(it->second);
  });
}

void PayoutEngine::HoldBatch(const std::string& batch_id, const Hold& hold, const AuditEntry& audit,
                             std::function<void(Status)> done) {
  if (hold.held()) {
    holds_.insert(batch_id);
    WithdrawSubmissions([&](const std::string& b) { return b == batch_id; });
  } else {
    holds_.erase(batch_id);
  }
  ControlChange c;
  c.holds.emplace_back(batch_id, hold);
  c.audit.emplace_back(batch_id, audit);
  c.done = std::move(done);
  QueueControl(std::move(c));
}

void PayoutEngine::HoldAll(const Hold& hold, std::vector<std::pair<std::string, AuditEntry>> audit,
                           std::function<void(Status)> done) {
  hold_all_ = hold.held();
  ControlChange c;
  if (hold_all_) {
    WithdrawSubmissions([](const std::string&) { return true; });
  } else {
    // Resuming all resumes each batch held on its own too.
    for (const std::string& batch_id : holds_) c.holds.emplace_back(batch_id, Hold{});
    holds_.clear();
  }
  c.hold_all = hold;
  c.audit = std::move(audit);
  c.done = std::move(done);
  QueueControl(std::move(c));
}

void PayoutEngine::CancelBatch(const std::string& batch_id, std::string error,
                               const AuditEntry& audit,
                               std::function<void(Result<CancelOutcome>)> done) {
  auto it = batches_.find(batch_id);
  if (it == batches_.end()) {
    done(Status::NotFound("batch '" + batch_id + "' is not being paid"));
    return;
  }
  // From here nothing of the batch starts: no new submission, no re-send after a 404.
  it->second.cancelled = true;
  it->second.ready.clear();
  WithdrawSubmissions([&](const std::string& b) { return b == batch_id; });
  ControlChange c;
  c.cancel_batch = batch_id;
  c.cancel_error = std::move(error);
  c.audit.emplace_back(batch_id, audit);
  c.cancel_done = std::move(done);
  // The taken-back submissions report through posted handlers: queue the cancel after them, so
  // their return to kNew is in the same group, ahead of it.
  boost::asio::post(io_, [this, alive = alive_.token(), c = std::move(c)]() mutable {
    if (alive) QueueControl(std::move(c));
  });
}

void PayoutEngine::FillPolls() {
  for (auto it = nudged_.begin(); it != nudged_.end() && polls_out_ < options_.poll_window;) {
    if (!Settled(*it)) {
      ++it;  // its submission or poll is under way, or not committed yet; the hint waits
      continue;
    }
    auto row = store_.GetPayout(*it);
    if (!row.ok()) log::Error("engine.load_failed", {{"payout", *it}, {"error", row.error()}});
    it = nudged_.erase(it);
    if (!row.ok() || !row->has_value()) continue;
    const Stage stage = (*row)->progress.stage;
    if (stage == Stage::kPolling || stage == Stage::kUnknown) StartPoll(std::move(**row));
  }
  // The due rows are read as a sweep, on from where the last read stopped, so the rows with a call
  // at the client (or changes not yet committed) are passed over once per sweep instead of being
  // read again at every pump. A row passed over gets a later next_at_ms when its call ends, so the
  // sweep meets it again; a commit that lands a row behind the sweep steps it back (FinishCommit).
  // A new sweep from the start, at most once a second, picks up whatever was left behind (a poll
  // cancelled at shutdown, a wall clock stepped back).
  const int64_t now_ms = NowMs();
  const SteadyTime now = clock_.Now();
  for (int reads = 0; reads < 4 && polls_out_ < options_.poll_window; ++reads) {
    const size_t limit = options_.poll_window - polls_out_ + 64;
    auto rows = store_.LoadDueAfter(now_ms, due_from_, limit);
    if (!rows.ok()) {
      log::Error("engine.load_failed", {{"error", rows.error()}});
      return;
    }
    for (auto& due : *rows) {
      if (polls_out_ >= options_.poll_window) return;  // the sweep goes on from here next time
      due_from_ = due.position;
      if (!Settled(due.row.payout.id)) continue;
      StartPoll(std::move(due.row));
    }
    if (rows->size() < limit) {  // the end of what is due now
      if (now - sweep_started_ < std::chrono::seconds(1)) return;
      due_from_ = DuePosition{};
      sweep_started_ = now;
    }
  }
}

bool PayoutEngine::NextReady(Cursor& c, PayoutRow* out) {
  if (c.ready.empty() && !c.exhausted) {
    auto rows = store_.LoadByStage(c.batch_id, Stage::kNew, c.last_line, kPageSize);
    if (!rows.ok()) {
      log::Error("engine.load_failed", {{"batch", c.batch_id}, {"error", rows.error()}});
      return false;
    }
    if (rows->empty()) c.exhausted = true;
    for (auto& r : *rows) {
      c.last_line = std::max(c.last_line, r.payout.line);
      c.ready.push_back(std::move(r));
    }
  }
  if (c.ready.empty()) return false;
  *out = std::move(c.ready.front());
  c.ready.pop_front();
  return true;
}

void PayoutEngine::FillSubmissions() {
  if (batches_.empty()) return;
  auto it = batches_.lower_bound(rr_next_);
  size_t idle = 0;
  while (submits_out_ < options_.submit_window && idle < batches_.size()) {
    if (it == batches_.end()) it = batches_.begin();
    PayoutRow row;
    if (MaySubmit(it->first) && NextReady(it->second, &row)) {
      idle = 0;
      StartSubmit(std::move(row));
    } else {
      ++idle;
    }
    ++it;
  }
  rr_next_ = it == batches_.end() ? std::string() : it->first;
}

void PayoutEngine::StartSubmit(PayoutRow row) {
  PAYOUTD_CHECK(row.progress.stage == Stage::kNew || row.progress.stage == Stage::kUnknown);
  PAYOUTD_CHECK(!busy_.count(row.payout.id));
  row.progress.stage = Stage::kSubmitting;
  if (row.progress.since_ms == 0) row.progress.since_ms = NowMs();
  Record(row);
  busy_.insert(row.payout.id);
  submitting_[row.payout.id] = row.batch_id;
  ++submits_out_;
  HeldSubmission held{row.batch_id, row.payout, nullptr};
  held.on_submitted = [this, alive = alive_.token(), row = std::move(row)](SubmitResult r) mutable {
    if (!alive) return;
    OnSubmitted(std::move(row), r);
  };
  // It leaves once its record has been committed (Release, from FinishCommit).
  unrecorded_.push_back(std::move(held));
  SchedulePump();
}

void PayoutEngine::Release(HeldSubmission& s) {
  if (stopped_ || draining_ || !MaySubmit(s.batch_id)) {
    SubmitResult r;
    r.outcome = SubmitResult::Outcome::kCancelled;
    boost::asio::post(io_, [done = std::move(s.on_submitted), r]() mutable { done(r); });
    return;
  }
  client_.Submit(s.payout, std::move(s.on_submitted));
}

void PayoutEngine::StartPoll(PayoutRow row) {
  PAYOUTD_CHECK(row.progress.stage == Stage::kPolling || row.progress.stage == Stage::kUnknown);
  busy_.insert(row.payout.id);
  ++polls_out_;
  std::string id = row.payout.id;
  client_.Poll(id, [this, alive = alive_.token(), row = std::move(row)](PollResult r) mutable {
    if (!alive) return;
    OnPolled(std::move(row), r);
  });
}

void PayoutEngine::OnSubmitted(PayoutRow row, const SubmitResult& r) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  busy_.erase(row.payout.id);
  submitting_.erase(row.payout.id);
  --submits_out_;
  row.progress.attempts += r.post_attempts;
  using O = SubmitResult::Outcome;
  switch (r.outcome) {
    case O::kCreated:
      row.progress.error.clear();
      if (r.payout) {
        ApplyGatewayView(row, *r.payout);
      } else {
        row.progress.stage = Stage::kPolling;
        row.progress.next_at_ms = NowMs() + ToMs(options_.polling.initial_delay);
        Record(row);
      }
      break;
    case O::kRejected:
      Finalize(row, FinalState::kRejected,
               r.message.empty() ? "refused by the gateway" : r.message);
      break;
    case O::kConflict: Finalize(row, FinalState::kError, "id conflict: " + r.message); break;
    case O::kNotCreated:
      Finalize(row, FinalState::kError,
               "not created after " + std::to_string(r.post_attempts) + " attempts: " + r.message);
      break;
    case O::kUnknown:
      row.progress.error = r.message;
      ScheduleNextPoll(row, Stage::kUnknown);
      break;
    case O::kCancelled:
      // Shutting down, or taken back for a hold or a cancel. A payout never POSTed goes back to
      // new; otherwise its outcome is unknown.
      row.progress.stage = row.progress.attempts > 0 ? Stage::kUnknown : Stage::kNew;
      row.progress.next_at_ms = NowMs();
      if (row.progress.stage == Stage::kNew) row.progress.since_ms = 0;  // it was never submitted
      Record(row);
      if (row.progress.stage == Stage::kNew && !draining_) {
        // First in its batch's queue again, for when the hold ends (a cancel ends it instead).
        auto it = batches_.find(row.batch_id);
        if (it != batches_.end() && !it->second.cancelled)
          it->second.ready.push_front(std::move(row));
      }
      break;
  }
  SchedulePump();
}

void PayoutEngine::OnPolled(PayoutRow row, const PollResult& r) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  busy_.erase(row.payout.id);
  --polls_out_;
  using O = PollResult::Outcome;
  switch (r.outcome) {
    case O::kFound:
      row.progress.error.clear();
      ApplyGatewayView(row, r.payout);
      break;
    case O::kNotFound:
      if (row.progress.stage == Stage::kUnknown && !draining_ && MaySubmit(row.batch_id)) {
        // Our POST never reached the gateway: send it again, same id and same body.
        not_found_since_.erase(row.payout.id);
        StartSubmit(std::move(row));
      } else if (row.progress.stage == Stage::kUnknown && IsCancelled(row.batch_id)) {
        // Cancelled: it is never sent again. Once no POST of ours can still arrive, it is final.
        const SteadyTime now = clock_.Now();
        auto [first, fresh] = not_found_since_.emplace(row.payout.id, now);
        if (now - first->second >= options_.cancelled_unknown_settle) {
          not_found_since_.erase(first);
          Finalize(row, FinalState::kError,
                   "batch cancelled: the gateway never received this payout; not sent again");
        } else {
          row.progress.error = "the gateway reports no such payout";
          ScheduleNextPoll(row, row.progress.stage);
        }
      } else {
        // Held or cancelled: no POST now; the payout is asked about again, and sent again only
        // once its batch may send.
        row.progress.error = "the gateway reports no such payout";
        ScheduleNextPoll(row, row.progress.stage);
      }
      break;
    case O::kFailed:
      row.progress.error = r.message;
      ScheduleNextPoll(row, row.progress.stage);
      break;
    case O::kCancelled: break;  // the store still holds the stage it had before the poll
  }
  SchedulePump();
}

void PayoutEngine::ApplyGatewayView(PayoutRow& row, const GatewayPayout& view) {
  // The gateway must hold *our* payout under this id; an id conflict is a final ERROR.
  bool differs = (!view.currency.empty() && (view.amount_minor != row.payout.amount_minor ||
                                             view.currency != row.payout.currency)) ||
                 (!view.account_number.empty() && view.account_number != row.payout.account_number);
  if (differs) {
    Finalize(row, FinalState::kError,
             "id conflict: the gateway holds a different payout under this id");
    return;
  }
  // The gateway holds it, so at least one POST of ours reached it, even if a crash cut off our
  // count of it (attempts are counted when the POST's answer arrives).
  PayoutProgress& p = row.progress;
  if (p.attempts == 0) p.attempts = 1;
  p.gateway_status = view.status;
  p.has_fee = view.has_fee;
  p.fee_minor = view.fee_minor;
  p.fee_currency = view.fee_currency;
  p.processed_at = view.processed_at;
  if (IsFinalStatus(view.status)) {
    std::string note;
    if (!view.fee_problem.empty()) {
      // The outcome stands; the fee is left out of the totals, and the results row says why.
      note = "fee not recorded: " + view.fee_problem;
      log::Warn("engine.fee_not_recorded", {{"payout", row.payout.id}, {"why", view.fee_problem}});
    }
    Finalize(row, IsSuccessStatus(view.status) ? FinalState::kSuccess : FinalState::kFailed,
             std::move(note));
    return;
  }
  if (!IsPendingStatus(view.status)) {
    log::Warn("engine.unknown_status", {{"payout", row.payout.id}, {"status", view.status}});
    if (observer_) observer_->OnUnknownStatus(view.status);
  }
  if (p.stage == Stage::kUnknown || p.stage == Stage::kSubmitting) {
    // First sight of it at the gateway: the first poll comes after initial_delay.
    p.stage = Stage::kPolling;
    p.next_at_ms = NowMs() + ToMs(options_.polling.initial_delay);
    Record(row);
    return;
  }
  ScheduleNextPoll(row, Stage::kPolling);
}

// Polls back off by doubling: the next wait is the time since the first submission, clamped to
// [initial_delay, max_interval]. After give_up_after without a final status the payout is ERROR;
// the time the gateway circuit was open does not count (nobody could have got an answer then).
void PayoutEngine::ScheduleNextPoll(PayoutRow& row, Stage stage) {
  PayoutProgress& p = row.progress;
  int64_t now = NowMs();
  if (p.since_ms == 0) p.since_ms = now;
  int64_t elapsed = now - p.since_ms;
  if (elapsed - OutageMs(p.since_ms, now) >= ToMs(options_.polling.give_up_after)) {
    std::string why = stage == Stage::kUnknown
                          ? "outcome unknown after " + std::to_string(elapsed / 1000) + "s"
                          : "no final status after " + std::to_string(elapsed / 1000) + "s";
    if (!p.gateway_status.empty()) why += " (last status " + p.gateway_status + ")";
    if (!p.error.empty()) why += ": " + p.error;
    Finalize(row, FinalState::kError, why);
    return;
  }
  int64_t interval = std::clamp(elapsed, ToMs(options_.polling.initial_delay),
                                ToMs(options_.polling.max_interval));
  p.stage = stage;
  p.next_at_ms = now + interval;
  Record(row);
}

void PayoutEngine::Finalize(PayoutRow& row, FinalState state, std::string error) {
  PAYOUTD_CHECK(state != FinalState::kNone);
  PayoutProgress& p = row.progress;
  PAYOUTD_CHECK(p.stage != Stage::kFinal);
  p.stage = Stage::kFinal;
  p.state = state;
  p.error = std::move(error);
  p.next_at_ms = 0;
  Record(row);
  pending_finals_.push_back(row);
  pending_final_count_[row.batch_id] += 1;
}

void PayoutEngine::Record(const PayoutRow& row) {
  pending_.push_back(PayoutUpdate{row.payout.id, row.progress});
  ++unsettled_[row.payout.id];
}

void PayoutEngine::OnCircuit(const CircuitEvent& e) {
  PAYOUTD_DCHECK_ON_THREAD(io_thread_);
  const auto ms = [](WallTime t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  };
  switch (e.kind) {
    case CircuitEvent::Kind::kOpened:
      if (outages_.empty() || outages_.back().ended_at_ms != 0)
        outages_.push_back(GatewayOutage{ms(e.since), 0, ms(e.next_probe), e.cause});
      break;
    case CircuitEvent::Kind::kProbeScheduled:
      if (outages_.empty() || outages_.back().ended_at_ms != 0) return;
      outages_.back().next_probe_at_ms = ms(e.next_probe);
      break;
    case CircuitEvent::Kind::kClosed:
      if (outages_.empty() || outages_.back().ended_at_ms != 0) return;
      // Never an empty interval: an outage has ended once it has a non-zero end.
      outages_.back().ended_at_ms = std::max(NowMs(), outages_.back().started_at_ms + 1);
      outages_.back().next_probe_at_ms = 0;
      break;
  }
  pending_outages_.push_back(outages_.back());
  // Only recent ones matter to give_up_after; a daemon that runs for months keeps a bounded list.
  constexpr size_t kKeep = 1000;
  if (outages_.size() > kKeep) outages_.erase(outages_.begin(), outages_.end() - kKeep);
  SchedulePump();
}

int64_t PayoutEngine::OutageMs(int64_t from_ms, int64_t to_ms) const {
  int64_t down = 0;
  // Outages do not overlap and are kept in order, so their ends are in order too.
  for (auto it = outages_.rbegin(); it != outages_.rend(); ++it) {
    const int64_t end = std::min(it->ended_at_ms == 0 ? to_ms : it->ended_at_ms, to_ms);
    if (end <= from_ms) break;
    down += std::max<int64_t>(0, end - std::max(it->started_at_ms, from_ms));
  }
  return down;
}

void PayoutEngine::CheckDrained() {
  if (!draining_ || !drained_) return;
  if (submits_out_ != 0 || polls_out_ != 0 || commit_in_flight_ || retry_job_) return;
  // After a store error nothing more is committed: what waits is lost as in a crash, and the next
  // start resumes from the store.
  if (!stopped_ && (!pending_.empty() || !pending_outages_.empty() || !pending_controls_.empty()))
    return;
  auto done = std::move(drained_);
  drained_ = nullptr;
  boost::asio::post(io_, std::move(done));
}

}  // namespace payoutd
