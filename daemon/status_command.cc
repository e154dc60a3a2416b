#include "daemon/status_command.h"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>

#include "config/duration.h"
#include "core/base/json_text.h"
#include "core/engine/results.h"
#include "core/money/money.h"
#include "core/store/open_store.h"

namespace payoutd {
namespace {

constexpr FinalState kStates[] = {FinalState::kSuccess, FinalState::kFailed, FinalState::kRejected,
                                  FinalState::kError, FinalState::kCancelled};
constexpr Stage kPendingStages[] = {Stage::kNew, Stage::kSubmitting, Stage::kUnknown,
                                    Stage::kPolling};

int64_t WallMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "active", "finished", "reported", "awaiting approval", "rejected".
std::string StatusWord(BatchRecord::Status s) {
  switch (s) {
    case BatchRecord::Status::kActive: return "active";
    case BatchRecord::Status::kFinished: return "finished";
    case BatchRecord::Status::kReported: return "reported";
    case BatchRecord::Status::kAwaitingApproval: return "awaiting approval";
    case BatchRecord::Status::kRejected: return "rejected";
  }
  return "unknown";
}

// The header's status: "awaiting approval (1 of 2)", "active, held", "active, cancelled".
std::string StatusText(const BatchStatus& b) {
  const BatchRecord& r = b.progress.batch;
  std::string text = StatusWord(r.status);
  if (r.status == BatchRecord::Status::kAwaitingApproval) {
    text +=
        " (" + std::to_string(b.approvals) + " of " + std::to_string(r.approvals_required) + ")";
  }
  if (r.hold.held()) text += ", held";
  if (r.cancelled_at_ms) text += ", cancelled";
  return text;
}

int64_t Count(const std::map<FinalState, int64_t>& m, FinalState s) {
  auto it = m.find(s);
  return it == m.end() ? 0 : it->second;
}

int64_t Count(const std::map<Stage, int64_t>& m, Stage s) {
  auto it = m.find(s);
  return it == m.end() ? 0 : it->second;
}

// "SUCCESS=3 FAILED=0 REJECTED=1 ERROR=0" (CANCELLED only when there are some) and
// "pending=9 (polling=9)".
std::string Counts(const BatchStatus& b) {
  std::string out;
  for (FinalState s : kStates) {
    int64_t n = Count(b.progress.states, s);
    if (s == FinalState::kCancelled && n == 0) continue;
    out.append(FinalStateName(s)).append("=").append(std::to_string(n)).append(" ");
  }
  out += "pending=" + std::to_string(b.pending_count());
  std::string stages;
  for (Stage s : kPendingStages) {
    int64_t n = Count(b.progress.stages, s);
    if (n == 0) continue;
    if (!stages.empty()) stages += ' ';
    stages.append(StageName(s)).append("=").append(std::to_string(n));
  }
  if (!stages.empty()) out += " (" + stages + ")";
  return out;
}

std::string Seconds(double s) {
  return FormatDuration(std::chrono::seconds(static_cast<int64_t>(std::llround(std::max(0.0, s)))));
}

std::string HoldText(const Hold& h) {
  std::string text = "held since " + FormatIsoTime(h.at_ms) + " by " + h.by;
  if (!h.reason.empty()) text += ": " + h.reason;
  return text;
}

// --- text ----------------------------------------------------------------------------------------

std::string OutageText(const GatewayOutage& o, int64_t now_ms) {
  if (o.ended_at_ms != 0) {
    return "last gateway outage: " + FormatIsoTime(o.started_at_ms) + " to " +
           FormatIsoTime(o.ended_at_ms) + " (" +
           std::to_string((o.ended_at_ms - o.started_at_ms) / 1000) + "s), cause: " + o.cause +
           "\n";
  }
  std::string text = "gateway unreachable since " + FormatIsoTime(o.started_at_ms) + " (" +
                     std::to_string((now_ms - o.started_at_ms) / 1000) + "s), cause: " + o.cause;
  if (o.next_probe_at_ms) {
    text += "; next probe in " +
            std::to_string(std::max<int64_t>(0, (o.next_probe_at_ms - now_ms + 999) / 1000)) + "s";
  }
  return text +
         "\n  sending is paused; no payout fails for it, each is sent or checked once the gateway "
         "answers\n";
}

// "leader: db-a (term 7, lease 12s left); standby: db-b (seen 1s ago)".
std::string InstancesText(const ServiceInstances& in) {
  std::string text =
      in.leader.empty()
          ? "leader: none (no instance holds the lease)"
          : "leader: " + in.leader + " (term " + std::to_string(in.fencing) + ", lease " +
                Seconds(std::chrono::duration<double>(in.lease_left).count()) + " left)";
  std::string standbys;
  for (const InstanceInfo& i : in.instances) {
    if (i.leader) continue;
    standbys += (standbys.empty() ? "" : ", ") + i.name + " (seen " +
                Seconds(std::chrono::duration<double>(i.since_seen).count()) + " ago)";
  }
  return text + "; standby: " + (standbys.empty() ? "none" : standbys) + "\n";
}

// The lines above the batches: the service's instances, a hold on every batch, the gateway.
std::string HeaderText(const StatusSnapshot& s) {
  std::string out;
  if (s.instances) out += InstancesText(*s.instances);
  if (!s.instances_error.empty()) out += "instances: cannot read them: " + s.instances_error + "\n";
  if (s.hold_all.held()) out += "all batches " + HoldText(s.hold_all) + "\n";
  if (s.outage) out += OutageText(*s.outage, s.now_ms);
  return out;
}

std::string BatchText(const BatchStatus& b, const CurrencyTable& t, int64_t now_ms) {
  const BatchProgress& p = b.progress;
  std::string out = "batch " + p.batch.id + " (" + StatusText(b) + "), " +
                    std::to_string(p.batch.rows) + " payouts, started " +
                    FormatIsoTime(p.batch.started_at_ms);
  if (p.batch.finished_at_ms) out += ", finished " + FormatIsoTime(p.batch.finished_at_ms);
  out += "\n";
  if (p.batch.hold.held()) out += "  " + HoldText(p.batch.hold) + "\n";
  if (p.batch.cancelled_at_ms)
    out += "  cancelled " + FormatIsoTime(p.batch.cancelled_at_ms) + "\n";
  out += "  states: " + Counts(b) + "\n";
  for (const auto& [cur, tot] : p.totals) {
    int d = t.MinorUnits(cur).value_or(2);
    out += "  " + cur + ": requested " + FormatFixedAmount(tot.requested, d) + ", succeeded " +
           FormatFixedAmount(tot.succeeded, d) + ", failed " + FormatFixedAmount(tot.failed, d) +
           ", pending " + FormatFixedAmount(tot.pending, d) + "\n";
  }
  if (p.oldest_pending_since_ms) {
    out += "  oldest pending payout: submitted " + FormatIsoTime(p.oldest_pending_since_ms) + " (" +
           std::to_string((now_ms - p.oldest_pending_since_ms) / 1000) + "s ago)\n";
  }
  return out;
}

// --- JSON ----------------------------------------------------------------------------------------

class Json {
 public:
  std::string text;
  Json& Key(std::string_view k) {
    Comma();
    AppendJsonString(text, k);
    text += ':';
    fresh_ = true;
    return *this;
  }
  Json& Str(std::string_view v) { return Raw(nullptr, v); }
  Json& Int(int64_t v) { return Raw(std::to_string(v).c_str(), {}); }
  Json& Null() { return Raw("null", {}); }
  Json& Time(int64_t ms) { return ms ? Str(FormatIsoTime(ms)) : Null(); }
  Json& Number(std::optional<double> v) {
    if (!v) return Null();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", *v);
    return Raw(buf, {});
  }
  Json& Open(char c) {
    Comma();
    text += c;
    fresh_ = true;
    return *this;
  }
  Json& Close(char c) {
    text += c;
    fresh_ = false;
    return *this;
  }

 private:
  // A literal (`raw`) or a string (`s`).
  Json& Raw(const char* raw, std::string_view s) {
    Comma();
    if (raw)
      text += raw;
    else
      AppendJsonString(text, s);
    fresh_ = false;
    return *this;
  }
  void Comma() {
    if (!fresh_ && !text.empty()) text += ',';
    fresh_ = false;
  }
  bool fresh_ = true;  // after '{', '[' or a key: no comma before the next item
};

void HoldJson(Json& j, const Hold& h) {
  if (!h.held()) {
    j.Null();
    return;
  }
  j.Open('{').Key("since").Time(h.at_ms).Key("by").Str(h.by).Key("reason").Str(h.reason).Close('}');
}

void OutageJson(Json& j, const std::optional<GatewayOutage>& o) {
  if (!o) {
    j.Null();
    return;
  }
  j.Open('{').Key("started_at").Time(o->started_at_ms).Key("ended_at").Time(o->ended_at_ms);
  j.Key("next_probe_at").Time(o->ended_at_ms ? 0 : o->next_probe_at_ms).Key("cause").Str(o->cause);
  j.Close('}');
}

void InstancesJson(Json& j, const std::optional<ServiceInstances>& in) {
  if (!in) {
    j.Null();
    return;
  }
  j.Open('{').Key("leader");
  if (in->leader.empty())
    j.Null();
  else
    j.Str(in->leader);
  j.Key("term").Int(in->fencing);
  j.Key("lease_left_s").Number(std::chrono::duration<double>(in->lease_left).count());
  j.Key("instances").Open('[');
  for (const InstanceInfo& i : in->instances) {
    j.Open('{').Key("name").Str(i.name).Key("role").Str(i.leader ? "leader" : "standby");
    j.Key("seen_s_ago").Number(std::chrono::duration<double>(i.since_seen).count()).Close('}');
  }
  j.Close(']').Close('}');
}

std::string StatusKey(BatchRecord::Status s) {
  std::string word = StatusWord(s);
  std::replace(word.begin(), word.end(), ' ', '_');
  return word;
}

void BatchJson(Json& j, const BatchStatus& b, const CurrencyTable& t) {
  const BatchProgress& p = b.progress;
  j.Open('{').Key("id").Str(p.batch.id).Key("status").Str(StatusKey(p.batch.status));
  j.Key("rows").Int(p.batch.rows).Key("started_at").Time(p.batch.started_at_ms);
  j.Key("finished_at").Time(p.batch.finished_at_ms);
  j.Key("approvals");
  if (p.batch.approvals_required > 0) {
    j.Open('{').Key("required").Int(p.batch.approvals_required).Key("received").Int(b.approvals);
    j.Close('}');
  } else {
    j.Null();
  }
  j.Key("hold");
  HoldJson(j, p.batch.hold);
  j.Key("cancelled_at").Time(p.batch.cancelled_at_ms);
  j.Key("states").Open('{');
  for (FinalState s : kStates) j.Key(FinalStateName(s)).Int(Count(p.states, s));
  j.Close('}').Key("pending").Int(b.pending_count()).Key("stages").Open('{');
  for (Stage s : kPendingStages) j.Key(StageName(s)).Int(Count(p.stages, s));
  j.Close('}').Key("totals").Open('{');
  for (const auto& [cur, tot] : p.totals) {
    int d = t.MinorUnits(cur).value_or(2);
    j.Key(cur).Open('{').Key("requested").Str(FormatFixedAmount(tot.requested, d));
    j.Key("succeeded").Str(FormatFixedAmount(tot.succeeded, d));
    j.Key("failed").Str(FormatFixedAmount(tot.failed, d));
    j.Key("pending").Str(FormatFixedAmount(tot.pending, d)).Close('}');
  }
  j.Close('}').Key("oldest_pending_since").Time(p.oldest_pending_since_ms);
  j.Key("payouts_per_second").Number(b.per_second).Key("seconds_left").Number(b.seconds_left);
  j.Close('}');
}

// --- watch ---------------------------------------------------------------------------------------

std::string Bar(double fraction, int width) {
  int full = static_cast<int>(std::floor(std::clamp(fraction, 0.0, 1.0) * width));
  return "[" + std::string(full, '#') + std::string(width - full, '-') + "]";
}

std::string Percent(const BatchStatus& b) {
  double f = b.progress.batch.rows ? 100.0 * b.final_count() / b.progress.batch.rows : 100.0;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", f);
  return buf;
}

std::string Pace(const BatchStatus& b, bool terminal) {
  char rate[32] = "-";
  if (b.per_second) std::snprintf(rate, sizeof rate, "%.1f", *b.per_second);
  std::string left = b.seconds_left ? Seconds(*b.seconds_left) : "-";
  if (!terminal) return std::string(rate) + "/s left " + left;
  if (b.pending_count() == 0) return "all final";
  if (!b.per_second) return "measuring the pace...";
  return std::string(rate) + " payouts/s, " +
         (b.seconds_left ? "about " + left + " left" : "no progress now");
}

std::string WatchBatchLines(const BatchStatus& b) {
  const BatchRecord& r = b.progress.batch;
  std::string out = r.id + "  " + StatusText(b) + ", " + std::to_string(r.rows) + " payouts\n";
  double fraction = r.rows ? static_cast<double>(b.final_count()) / r.rows : 1.0;
  out += "  " + Bar(fraction, 40) + " " + Percent(b) + "  " + std::to_string(b.final_count()) +
         " of " + std::to_string(r.rows) + " final\n";
  out += "  " + Counts(b) + "\n";
  out += "  " + Pace(b, true) + "\n";
  if (r.hold.held()) out += "  " + HoldText(r.hold) + "\n";
  return out;
}

std::string WatchPlainLine(const BatchStatus& b, const std::string& at) {
  const BatchRecord& r = b.progress.batch;
  std::string status = StatusText(b);
  std::replace(status.begin(), status.end(), ' ', '_');
  return at + " " + r.id + " " + status + " " + std::to_string(b.final_count()) + "/" +
         std::to_string(r.rows) + " " + Percent(b) + " " + Counts(b) + " " + Pace(b, false) + "\n";
}

// --- reading -------------------------------------------------------------------------------------

Result<BatchStatus> ReadBatch(PayoutStore& store, const std::string& id) {
  BatchStatus b;
  PAYOUTD_ASSIGN_OR_RETURN(b.progress, store.Progress(id));
  if (b.progress.batch.status == BatchRecord::Status::kAwaitingApproval) {
    PAYOUTD_ASSIGN_OR_RETURN(std::vector<Approval> approvals, store.ListApprovals(id));
    b.approvals = static_cast<int>(approvals.size());
  }
  return b;
}

using BatchFilter = std::function<bool(const BatchRecord&)>;

Result<StatusSnapshot> Read(PayoutStore& store, const BatchFilter& wanted, int64_t now_ms) {
  StatusSnapshot s;
  s.now_ms = now_ms;
  PAYOUTD_ASSIGN_OR_RETURN(std::vector<GatewayOutage> outages,
                           store.LoadOutages(now_ms - 24 * 3600 * 1000));
  if (!outages.empty()) s.outage = outages.back();
  PAYOUTD_ASSIGN_OR_RETURN(s.hold_all, store.GetHoldAll());
  PAYOUTD_ASSIGN_OR_RETURN(std::vector<BatchRecord> batches, store.ListBatches());
  for (const BatchRecord& r : batches) {
    if (!wanted(r)) continue;
    PAYOUTD_ASSIGN_OR_RETURN(BatchStatus b,
                             ReadBatch(store, r.id).WithPrefix("batch " + r.id + ": "));
    s.batches.push_back(std::move(b));
  }
  return s;
}

// The PostgreSQL service's instances, read into the snapshot (an error there is shown, not fatal:
// the batches are still worth seeing).
class InstancesReader {
 public:
  explicit InstancesReader(const StateOptions& state) {
    if (state.backend == StateOptions::Backend::kPostgresql)
      conn_ = std::make_unique<PgConnection>(PgConnectOptionsFor(state));
  }
  void Into(StatusSnapshot& s) {
    if (!conn_) return;
    Result<ServiceInstances> in = ReadServiceInstances(*conn_);
    if (in.ok())
      s.instances = std::move(*in);
    else
      s.instances_error = in.error();
  }

 private:
  std::unique_ptr<PgConnection> conn_;
};

// Waits `interval` or until SIGINT/SIGTERM (blocked by the caller); true when a signal came.
bool WaitForStop(const sigset_t& stop, std::chrono::milliseconds interval) {
  timespec ts{static_cast<time_t>(interval.count() / 1000),
              static_cast<long>(interval.count() % 1000) * 1'000'000};
  for (;;) {
    int sig = ::sigtimedwait(&stop, nullptr, &ts);
    if (sig > 0) return true;
    if (errno == EAGAIN) return false;
    // EINTR: another signal; the time left is not known, wait the interval again
  }
}

class Watcher {
 public:
  Watcher(PayoutStore& store, InstancesReader& instances, const Config& config,
          const StatusOptions& o, std::ostream& out)
      : store_(store), instances_(instances), config_(config), o_(o), out_(out) {}

  // One reading and its frame; false when the state cannot be read.
  bool Frame(std::ostream& err) {
    auto wanted = [this](const BatchRecord& r) { return Track(r); };
    Result<StatusSnapshot> s = Read(store_, wanted, WallMsNow());
    if (!s.ok()) {
      err << "payoutd: " << s.error() << "\n";
      return false;
    }
    instances_.Into(*s);
    pace_.Measure(*s);
    if (o_.json) {
      out_ << FormatStatusJson(*s, config_.batches.currencies);
    } else if (o_.terminal) {
      out_ << "\x1b[H\x1b[J" << FormatWatchFrame(*s, true, o_.interval);
    } else {
      // Plain lines: "no batch in progress" once, not every interval.
      const bool idle = s->batches.empty();
      if (!idle || !was_idle_) out_ << FormatWatchFrame(*s, false, o_.interval);
      was_idle_ = idle;
    }
    out_.flush();
    return true;
  }

 private:
  // The named batch; else every batch not yet done when first seen, kept until the watch ends
  // (so that one is seen to reach 100%).
  bool Track(const BatchRecord& r) {
    if (!o_.batch.empty()) return r.id == o_.batch;
    if (tracked_.count(r.id)) return true;
    if (r.status == BatchRecord::Status::kReported || r.status == BatchRecord::Status::kRejected)
      return false;
    tracked_.insert(r.id);
    return true;
  }

  PayoutStore& store_;
  InstancesReader& instances_;
  const Config& config_;
  const StatusOptions& o_;
  std::ostream& out_;
  PaceMeter pace_;
  std::set<std::string> tracked_;
  bool was_idle_ = false;
};

int Watch(PayoutStore& store, InstancesReader& instances, const Config& config,
          const StatusOptions& o, std::ostream& out, std::ostream& err) {
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &stop, &old);
  if (o.terminal && !o.json) out << "\x1b[?25l";  // no cursor blinking over the bars
  Watcher watcher(store, instances, config, o, out);
  int code = 0;
  for (;;) {
    if (!watcher.Frame(err)) {
      code = 1;
      break;
    }
    if (WaitForStop(stop, o.interval)) break;
  }
  if (o.terminal && !o.json) out << "\x1b[?25h";
  out.flush();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return code;
}

}  // namespace

int64_t BatchStatus::final_count() const {
  return Count(progress.stages, Stage::kFinal);
}

int64_t BatchStatus::pending_count() const {
  int64_t n = 0;
  for (Stage s : kPendingStages) n += Count(progress.stages, s);
  return n;
}

Result<StatusSnapshot> ReadStatus(PayoutStore& store, const std::string& only, int64_t now_ms) {
  if (!only.empty()) {
    PAYOUTD_ASSIGN_OR_RETURN(std::optional<BatchRecord> rec, store.GetBatch(only));
    if (!rec) return Status::NotFound("batch " + only + ": no such batch in the state");
  }
  return Read(
      store, [&only](const BatchRecord& r) { return only.empty() || r.id == only; }, now_ms);
}

std::string FormatStatusText(const StatusSnapshot& s, const CurrencyTable& currencies) {
  std::string out = HeaderText(s);
  if (s.batches.empty()) out += "no batches yet\n";
  for (const BatchStatus& b : s.batches) out += BatchText(b, currencies, s.now_ms);
  return out;
}

std::string FormatStatusJson(const StatusSnapshot& s, const CurrencyTable& currencies) {
  Json j;
  j.Open('{').Key("now").Time(s.now_ms).Key("instances");
  InstancesJson(j, s.instances);
  j.Key("hold_all");
  HoldJson(j, s.hold_all);
  j.Key("gateway_outage");
  OutageJson(j, s.outage);
  j.Key("batches").Open('[');
  for (const BatchStatus& b : s.batches) BatchJson(j, b, currencies);
  j.Close(']').Close('}');
  return j.text + "\n";
}

std::string FormatWatchFrame(const StatusSnapshot& s, bool terminal,
                             std::chrono::milliseconds interval) {
  const std::string at = FormatIsoTime(s.now_ms);
  if (!terminal) {
    if (s.batches.empty()) return at + " no batch in progress\n";
    std::string out;
    for (const BatchStatus& b : s.batches) out += WatchPlainLine(b, at);
    return out;
  }
  std::string out = "payoutd status  " + at + "  (every " + FormatDuration(interval) +
                    "; Ctrl-C stops)\n" + HeaderText(s) + "\n";
  if (s.batches.empty()) out += "no batch in progress\n";
  for (const BatchStatus& b : s.batches) out += WatchBatchLines(b) + "\n";
  return out;
}

void PaceMeter::Measure(StatusSnapshot& s) {
  for (BatchStatus& b : s.batches) {
    std::deque<Reading>& r = readings_[b.progress.batch.id];
    r.push_back({s.now_ms, b.final_count()});
    // Keep the oldest reading within the window, and one just before it: the pace spans it.
    while (r.size() > 2 && s.now_ms - r[1].at_ms >= window_.count()) r.pop_front();
    if (b.pending_count() == 0) {
      b.seconds_left = 0;
      continue;
    }
    if (r.size() < 2 || r.back().at_ms <= r.front().at_ms) continue;
    double seconds = (r.back().at_ms - r.front().at_ms) / 1000.0;
    b.per_second = (r.back().final_count - r.front().final_count) / seconds;
    if (*b.per_second > 0) b.seconds_left = b.pending_count() / *b.per_second;
  }
}

int RunStatusCommand(const Config& config, const StatusOptions& options, std::ostream& out,
                     std::ostream& err) {
  if (config.state.backend == StateOptions::Backend::kSqlite) {
    struct stat st;
    if (::stat(config.state.path.c_str(), &st) != 0) {  // nothing has run yet: nothing to show
      if (!options.batch.empty()) {
        err << "payoutd: batch " << options.batch << ": no such batch (no state at "
            << config.state.path << ")\n";
        return 1;
      }
      StatusSnapshot empty;
      empty.now_ms = WallMsNow();
      if (options.json)
        out << FormatStatusJson(empty, config.batches.currencies);
      else
        out << "no batches yet (no state at " << config.state.path << ")\n";
      return 0;
    }
  }
  Result<std::unique_ptr<PayoutStore>> store = OpenStore(config.state, {.read_only = true});
  if (!store.ok()) {
    err << "payoutd: state: " << store.error() << "\n";
    return 1;
  }
  InstancesReader instances(config.state);
  Result<StatusSnapshot> s = ReadStatus(**store, options.batch, WallMsNow());
  if (!s.ok()) {
    err << "payoutd: " << s.error() << "\n";
    return 1;
  }
  if (options.watch) return Watch(**store, instances, config, options, out, err);
  instances.Into(*s);
  out << (options.json ? FormatStatusJson(*s, config.batches.currencies)
                       : FormatStatusText(*s, config.batches.currencies));
  return 0;
}

}  // namespace payoutd
