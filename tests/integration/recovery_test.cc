// Recovery on purpose, one durable step at a time (docs/operations.md#crash-recovery): the real
// daemon against the sandbox gateway, made to die (or fail) at a named failpoint
// (core/base/failpoint.h, armed with PAYOUTD_FAILPOINTS), then started again without it. Each test
// checks what the crash left behind, then the end state exactly: every payout final once with
// the gateway's outcome, the reports in done/ once and exact, nothing created twice or sent with
// another body, no POST sent again without a GET that found nothing first, the exit codes.
//
// Failpoints used (where they sit):
//   spool.claimed                the file is in work/, the batch not recorded (daemon/spool.cc)
//   intake.record                recording the batch fails (daemon/intake.cc)
//   gateway.post_created         a POST answered 201, before the engine hears of it
//   gateway.post_refused         a POST answered 422, likewise (core/gateway/gateway_client.cc)
//   sqlite_store.apply           a commit of payout changes fails (core/store/sqlite_store.cc)
//   engine.before_finished       every payout final and durable, the batch not yet finished
//   engine.after_finished        the batch finished, its reports not begun (payout_engine.cc)
//   report.write                 writing the reports fails
//   report.before_mark_reported  the reports are in done/, the batch not marked reported
//                                (daemon/service.cc)
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/batch_expectations.h"
#include "tests/support/daemon_process.h"
#include "tests/support/sandbox_process.h"

namespace payoutd::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kKilled = 128 + SIGKILL;

std::vector<std::string> Failpoints(const std::string& spec) {
  return {"PAYOUTD_FAILPOINTS=" + spec};
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The POSTs of each id, with a gateway that answers every request: after the first, a POST
// follows a GET that found nothing (404; docs/gateway.md), or, when `or_unasked_harmless`, is
// answered 409 or 422 (sent again unasked, same id and body: the gateway created nothing).
void ExpectNoPostAgainWithoutA404(const std::vector<SandboxArrival>& arrivals,
                                  bool or_unasked_harmless) {
  std::map<std::string, std::vector<const SandboxArrival*>> by_id;
  for (const auto& a : arrivals) by_id[a.id].push_back(&a);
  for (const auto& [id, seq] : by_id) {
    bool posted = false;
    bool not_found = false;  // since the last POST
    for (const SandboxArrival* a : seq) {
      if (a->method == "GET") {
        not_found = not_found || a->status == 404;
        continue;
      }
      const bool harmless = a->status == 409 || a->status == 422;
      const bool ok = !posted || not_found || (or_unasked_harmless && harmless);
      EXPECT_TRUE(ok) << id << ": POSTed again (answered " << a->status
                      << ") without a GET answered 404";
      posted = true;
      not_found = false;
    }
  }
}

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { UseSandbox({"--final-after-ms", "0"}); }

  // A sandbox started with `args`, and the daemon's config pointing at it.
  void UseSandbox(std::vector<std::string> args) {
    daemon_.reset();
    sandbox_ = std::make_unique<SandboxProcess>(std::move(args));
    cfg_ = DaemonConfig::For(*sandbox_);
    config_ = cfg_.Write(dir_.path());
    daemon_ = std::make_unique<DaemonProcess>(config_);
  }

  std::string spool() const { return cfg_.spool_dir(dir_.path()); }
  std::string done(const std::string& name) const { return spool() + "/done/" + name; }
  std::string LogTail() const {
    std::string log = daemon_->all_logs();
    return log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
  }

  // Starts the daemon with `spec` armed and drops the batch; waits for the daemon to end by itself.
  std::optional<int> RunArmed(const std::string& spec, const std::string& batch,
                              const std::vector<PayoutIn>& rows, milliseconds wait = seconds(60)) {
    daemon_->Start(Failpoints(spec));
    if (!daemon_->WaitReady()) {
      ADD_FAILURE() << "not ready:\n" << LogTail();
      return std::nullopt;
    }
    DropBatch(spool(), batch, PayoutCsv(rows));
    std::optional<int> code = daemon_->Wait(wait);
    if (!code) ADD_FAILURE() << "payoutd did not stop at " << spec << ":\n" << LogTail();
    return code;
  }

  // RunArmed, and the daemon must have died at `point` (SIGKILL, as by a power cut).
  void CrashAt(const std::string& point, const std::string& batch,
               const std::vector<PayoutIn>& rows, int nth = 1) {
    std::optional<int> code = RunArmed(point + "=crash@" + std::to_string(nth), batch, rows);
    ASSERT_EQ(code, kKilled) << LogTail();
    ASSERT_THAT(daemon_->log(), HasSubstr("failpoint " + point + ": crashing"));
  }

  // Waits for the running daemon to log `event`.
  bool WaitLogged(const std::string& event, milliseconds timeout = seconds(30)) {
    bool ok = WaitFor([&] { return daemon_->log().find(event) != std::string::npos; }, timeout);
    if (!ok) ADD_FAILURE() << "no " << event << " in time:\n" << LogTail();
    return ok;
  }

  // Waits for the batch to be in done/ and logged as done by the running daemon.
  bool WaitReported(const std::string& batch, milliseconds timeout = seconds(60)) {
    bool ok = WaitFor(
        [&] {
          return FileExists(done(batch + ".csv")) &&
                 daemon_->log().find("batch.done batch=" + batch) != std::string::npos;
        },
        timeout);
    if (!ok) ADD_FAILURE() << batch << " not reported in time:\n" << LogTail();
    return ok;
  }

  // Starts the daemon without failpoints and waits until it has reported the batch.
  bool RestartAndWaitReported(const std::string& batch) {
    daemon_->Start();
    if (!daemon_->WaitReady()) {
      ADD_FAILURE() << "not ready after the restart:\n" << LogTail();
      return false;
    }
    return WaitReported(batch);
  }

  // The end state: reports exact and in done/ once with the input, the spool otherwise empty,
  // the batch logged as done once over every run, every payout created once with one body.
  void ExpectPaidAndReportedOnce(const std::string& batch, const std::vector<PayoutIn>& rows) {
    ExpectReports(batch, rows, ReadResultsCsv(done(batch + ".results.csv")),
                  ReadSummary(done(batch + ".summary.json")));
    EXPECT_EQ(ListDir(spool() + "/done"),
              (std::vector<std::string>{batch + ".csv", batch + ".results.csv",
                                        batch + ".summary.json"}));
    EXPECT_EQ(ReadFile(done(batch + ".csv")), PayoutCsv(rows)) << "the input moves unchanged";
    EXPECT_TRUE(ListDir(spool() + "/inbox").empty());
    EXPECT_TRUE(ListDir(spool() + "/work").empty());
    EXPECT_TRUE(ListDir(spool() + "/rejected").empty()) << "a restart made the batch a duplicate";
    EXPECT_EQ(Count(daemon_->all_logs(), "batch.done batch=" + batch), 1u);
    ExpectLedgerExactlyOnce(rows, *sandbox_);
    ExpectNoPostAgainWithoutA404(sandbox_->Arrivals(), /*or_unasked_harmless=*/true);
  }

  // `payoutd status BATCH` on the state, with no daemon running.
  std::string BatchStatus(const std::string& batch) {
    CommandResult r = RunPayoutd({"status", "--config", config_, batch});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return r.out;
  }

  int64_t FinalAtTheGateway() {
    int64_t n = 0;
    for (const auto& [id, e] : sandbox_->Ledger())
      n += e.status == "SUCCESS" || e.status == "FAILED" || e.status == "REJECTED";
    return n;
  }

  TempDir dir_;
  std::unique_ptr<SandboxProcess> sandbox_;
  DaemonConfig cfg_;
  std::string config_;
  std::unique_ptr<DaemonProcess> daemon_;
};

// Claimed into work/ but never recorded: nothing was sent, and the next start takes the file in
// again (daemon/service.cc, Recover).
TEST_F(RecoveryTest, ClaimedButUnrecordedFileIsTakenInAgainAtRestart) {
  const auto rows = SandboxRows("CLM", 30);
  CrashAt("spool.claimed", "claimed", rows);
  EXPECT_EQ(ListDir(spool() + "/work"), std::vector<std::string>{"claimed.csv"});
  EXPECT_TRUE(ListDir(spool() + "/inbox").empty());
  EXPECT_TRUE(sandbox_->Arrivals().empty()) << "sent before the batch was recorded";
  CommandResult st = RunPayoutd({"status", "--config", config_, "claimed"});
  EXPECT_NE(st.exit_code, 0) << "the crash left a batch record: " << st.out;

  ASSERT_TRUE(RestartAndWaitReported("claimed"));
  EXPECT_THAT(daemon_->log(), HasSubstr("spool.retake file=claimed.csv"));
  ExpectPaidAndReportedOnce("claimed", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// POST answers come 300 ms late, long after each payout's kSubmitting stage is durable; the
// daemon dies as the first 201 arrives. The restart asks the gateway with GET about every payout
// whose POST may have been under way, finds each created (POSTs are done at once, only the answer
// waits), and sends none of them again.
TEST_F(RecoveryTest, PostCutOffAfterItsRecordIsDurableIsAskedForWithGetAndNeverSentAgain) {
  UseSandbox({"--final-after-ms", "0", "--latency-ms", "300", "--faults-on", "post"});
  const auto rows = SandboxRows("PSB", 40, 7, 0);
  CrashAt("gateway.post_created", "submitted", rows);
  EXPECT_THAT(BatchStatus("submitted"), HasSubstr("(submitting=40)"));
  const auto at_crash = sandbox_->Ledger();
  ASSERT_EQ(at_crash.size(), rows.size());

  ASSERT_TRUE(RestartAndWaitReported("submitted"));
  ExpectPaidAndReportedOnce("submitted", rows);
  ExpectNoPostAgainWithoutA404(sandbox_->Arrivals(), /*or_unasked_harmless=*/false);
  for (const auto& [id, e] : sandbox_->Ledger()) {
    EXPECT_EQ(e.post_count, 1) << id << " was sent again";
    EXPECT_GE(e.get_count, 1) << id;
  }
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// As above for a refused POST: the gateway created nothing, so the restart's GET finds nothing
// (404), the payout is sent again with the same body, refused again, and REJECTED once.
TEST_F(RecoveryTest, RefusalCutOffAfterItsRecordIsDurableIsAskedForWithGetThenSentAgain) {
  UseSandbox({"--final-after-ms", "0", "--latency-ms", "300", "--faults-on", "post"});
  auto rows = SandboxRows("PRD", 20, 7, 0);
  rows[4].op = "BNK_REJECT";
  CrashAt("gateway.post_refused", "refusal", rows);
  EXPECT_THAT(BatchStatus("refusal"), HasSubstr("submitting="));

  ASSERT_TRUE(RestartAndWaitReported("refusal"));
  ExpectPaidAndReportedOnce("refusal", rows);
  std::vector<std::string> seen;
  for (const auto& a : sandbox_->Arrivals())
    if (a.id == rows[4].id) seen.push_back(a.method + " " + std::to_string(a.status));
  EXPECT_EQ(seen, (std::vector<std::string>{"POST 422", "GET 404", "POST 422"}));
  ExpectNoPostAgainWithoutA404(sandbox_->Arrivals(), /*or_unasked_harmless=*/false);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// The gateway created payouts whose 201 the daemon never recorded: after the restart each is
// created once, with one body, with the gateway's outcome; none is created a second time.
TEST_F(RecoveryTest, CreatedButUnrecordedPostIsNeverCreatedTwice) {
  const auto rows = SandboxRows("PCR", 60, 7, 0);
  CrashAt("gateway.post_created", "created", rows, 5);
  const auto at_crash = sandbox_->Ledger();
  int64_t created = 0;
  for (const auto& [id, e] : at_crash) created += e.created;
  EXPECT_GE(created, 5);
  EXPECT_THAT(BatchStatus("created"), HasSubstr("(active)"));

  ASSERT_TRUE(RestartAndWaitReported("created"));
  ExpectPaidAndReportedOnce("created", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// docs/operations.md#crash-recovery: "a payout whose POST may have been under way is never simply
// sent again: payoutd first asks the gateway with GET". A submission leaves only once the group
// commit holding its kSubmitting stage has landed, so even a gateway that answers within a
// commit interval cannot leave a POST behind a payout that still reads "new".
TEST_F(RecoveryTest, CreatedButUnrecordedPostIsAskedForWithGetBeforeAnyResend) {
  const auto rows = SandboxRows("PCG", 60, 7, 0);
  CrashAt("gateway.post_created", "asked", rows, 5);
  ASSERT_TRUE(RestartAndWaitReported("asked"));
  ExpectNoPostAgainWithoutA404(sandbox_->Arrivals(), /*or_unasked_harmless=*/false);
  ExpectPaidAndReportedOnce("asked", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// The gateway refused a POST (422) and the daemon died before recording it: nothing was created,
// the restart sends it again with the same body, it is refused again, and REJECTED once in the
// results with the gateway's reason.
TEST_F(RecoveryTest, RefusedButUnrecordedPostIsSentAgainWithTheSameBodyAndRejectedOnce) {
  auto rows = SandboxRows("PRF", 20, 7, 0);
  rows[4].op = "BNK_REJECT";  // the only refused payout: the one the crash cuts off
  CrashAt("gateway.post_refused", "refused", rows);

  ASSERT_TRUE(RestartAndWaitReported("refused"));
  ExpectPaidAndReportedOnce("refused", rows);
  std::vector<std::string> posts;
  for (const auto& a : sandbox_->Arrivals())
    if (a.id == rows[4].id && a.method == "POST") posts.push_back(std::to_string(a.status));
  EXPECT_EQ(posts, (std::vector<std::string>{"422", "422"})) << "refused before and after";
  const auto results = ReadResultsCsv(done("refused.results.csv"));
  EXPECT_THAT(results[4].error, HasSubstr("refused this payout"));
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// As above, with the GET the documentation promises before any re-send (see
// CreatedButUnrecordedPostIsAskedForWithGetBeforeAnyResend).
TEST_F(RecoveryTest, RefusedButUnrecordedPostIsAskedForWithGetBeforeItIsSentAgain) {
  auto rows = SandboxRows("PRG", 20, 7, 0);
  rows[4].op = "BNK_REJECT";
  CrashAt("gateway.post_refused", "refusedget", rows);
  ASSERT_TRUE(RestartAndWaitReported("refusedget"));
  std::vector<std::string> seen;
  for (const auto& a : sandbox_->Arrivals())
    if (a.id == rows[4].id) seen.push_back(a.method + " " + std::to_string(a.status));
  EXPECT_EQ(seen, (std::vector<std::string>{"POST 422", "GET 404", "POST 422"}));
  ExpectPaidAndReportedOnce("refusedget", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// Every payout final and durable, the batch still active (between the engine's two
// transactions): the restart finishes it without sending anything.
TEST_F(RecoveryTest, AllPayoutsFinalButBatchActiveIsFinishedAtRestartWithoutSending) {
  const auto rows = SandboxRows("BFN", 30);
  CrashAt("engine.before_finished", "allfinal", rows);
  EXPECT_EQ(FinalAtTheGateway(), 30);
  EXPECT_THAT(BatchStatus("allfinal"), HasSubstr("(active)"));
  EXPECT_THAT(BatchStatus("allfinal"), HasSubstr("pending=0"));
  EXPECT_TRUE(ListDir(spool() + "/done").empty());
  const size_t sent = sandbox_->Arrivals().size();

  ASSERT_TRUE(RestartAndWaitReported("allfinal"));
  EXPECT_THAT(daemon_->log(), HasSubstr("engine.batch_started batch=allfinal rows=30 remaining=0"));
  EXPECT_EQ(sandbox_->Arrivals().size(), sent) << "a request was sent for a finished payout";
  ExpectPaidAndReportedOnce("allfinal", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// The same point as an error: the engine stops, the daemon exits 1, a restart finishes the batch.
TEST_F(RecoveryTest, FailedFinishCommitExitsOneAndARestartFinishesTheBatch) {
  const auto rows = SandboxRows("BFE", 20);
  EXPECT_EQ(RunArmed("engine.before_finished=error", "finerr", rows), 1) << LogTail();
  EXPECT_THAT(daemon_->log(), HasSubstr("state.write_failed"));
  EXPECT_THAT(BatchStatus("finerr"), HasSubstr("(active)"));
  const size_t sent = sandbox_->Arrivals().size();

  ASSERT_TRUE(RestartAndWaitReported("finerr"));
  EXPECT_EQ(sandbox_->Arrivals().size(), sent);
  ExpectPaidAndReportedOnce("finerr", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// Finished, its reports not begun: the restart writes them, sending nothing.
TEST_F(RecoveryTest, FinishedButUnreportedBatchIsReportedAtRestartWithoutSending) {
  const auto rows = SandboxRows("AFN", 30);
  CrashAt("engine.after_finished", "finished", rows);
  EXPECT_THAT(BatchStatus("finished"), HasSubstr("(finished)"));
  EXPECT_TRUE(ListDir(spool() + "/done").empty());
  EXPECT_EQ(ListDir(spool() + "/work"), std::vector<std::string>{"finished.csv"});
  const size_t sent = sandbox_->Arrivals().size();

  ASSERT_TRUE(RestartAndWaitReported("finished"));
  EXPECT_EQ(sandbox_->Arrivals().size(), sent);
  ExpectPaidAndReportedOnce("finished", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// The reports and the input are in done/, the batch not yet marked reported: the restart writes
// the reports again over the same names (no second copy), the same bytes, and marks it reported.
TEST_F(RecoveryTest, ReportsInDoneButNotMarkedAreWrittenAgainInPlaceAtRestart) {
  const auto rows = SandboxRows("RMK", 30);
  CrashAt("report.before_mark_reported", "marked", rows);
  EXPECT_THAT(BatchStatus("marked"), HasSubstr("(finished)"));
  EXPECT_EQ(ListDir(spool() + "/done"),
            (std::vector<std::string>{"marked.csv", "marked.results.csv", "marked.summary.json"}));
  EXPECT_TRUE(ListDir(spool() + "/work").empty());
  const std::string results = ReadFile(done("marked.results.csv"));
  const size_t sent = sandbox_->Arrivals().size();

  ASSERT_TRUE(RestartAndWaitReported("marked"));
  EXPECT_EQ(sandbox_->Arrivals().size(), sent);
  EXPECT_EQ(ReadFile(done("marked.results.csv")), results);
  ExpectPaidAndReportedOnce("marked", rows);

  // Done is done: the same file dropped again is refused as already processed, nothing sent.
  DropBatch(spool(), "marked", PayoutCsv(rows));
  ASSERT_TRUE(WaitForFile(spool() + "/rejected/marked.csv", seconds(30))) << LogTail();
  const auto errors = ReadErrorsCsv(spool() + "/rejected/marked.errors.csv");
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors[0].error, HasSubstr("'marked' was already processed"));
  EXPECT_EQ(sandbox_->Arrivals().size(), sent);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
  EXPECT_THAT(BatchStatus("marked"), HasSubstr("(reported)"));
}

// A failed commit of payout changes: the engine stops, the daemon exits 1 by itself (systemd
// restarts it), and the restart pays the rest, nothing twice.
TEST_F(RecoveryTest, StoreCommitErrorExitsOneAndARestartPaysTheRestOnce) {
  // Nothing is left to wait for once the calls out are back: the daemon must not sit out the grace.
  cfg_.shutdown_grace = "120s";
  cfg_.Write(dir_.path());
  const auto rows = SandboxRows("SCE", 60);
  EXPECT_EQ(RunArmed("sqlite_store.apply=error@3", "commit", rows, seconds(30)), 1) << LogTail();
  EXPECT_THAT(daemon_->log(), HasSubstr("engine.commit_failed"));
  EXPECT_THAT(daemon_->log(), HasSubstr("state.write_failed"));
  EXPECT_THAT(daemon_->log(), HasSubstr("payoutd.stopped exit_code=1"));
  EXPECT_THAT(daemon_->log(), Not(HasSubstr("payoutd.grace_expired")));
  EXPECT_FALSE(FileExists(done("commit.results.csv")));

  ASSERT_TRUE(RestartAndWaitReported("commit"));
  ExpectPaidAndReportedOnce("commit", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// Recording a claimed batch fails for a passing reason: retried (after 5 s) and paid, in the
// same run.
TEST_F(RecoveryTest, FailedIntakeIsRetriedAndTheBatchPaid) {
  const auto rows = SandboxRows("INT", 20);
  daemon_->Start(Failpoints("intake.record=error"));
  ASSERT_TRUE(daemon_->WaitReady()) << LogTail();
  DropBatch(spool(), "intake", PayoutCsv(rows));
  ASSERT_TRUE(WaitLogged("batch.intake_failed"));
  EXPECT_EQ(ListDir(spool() + "/work"), std::vector<std::string>{"intake.csv"});
  ASSERT_TRUE(WaitReported("intake", seconds(60)));
  ExpectPaidAndReportedOnce("intake", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// Writing the reports fails: nothing half-written in done/, the batch stays finished, and the
// daemon writes them again (after 30 s) in the same run. Slow: it waits out the retry.
TEST_F(RecoveryTest, Slow_FailedReportWriteIsRetriedAndWrittenOnce) {
  const auto rows = SandboxRows("RPW", 20);
  daemon_->Start(Failpoints("report.write=error"));
  ASSERT_TRUE(daemon_->WaitReady()) << LogTail();
  DropBatch(spool(), "report", PayoutCsv(rows));
  ASSERT_TRUE(WaitLogged("batch.report_failed"));
  EXPECT_TRUE(ListDir(spool() + "/done").empty());
  ASSERT_TRUE(WaitReported("report", seconds(60)));
  ExpectPaidAndReportedOnce("report", rows);
  EXPECT_EQ(daemon_->Terminate(), 0) << LogTail();
}

// `payoutd process` cut off after the batch finished: run again on the same file, it resumes the
// finished batch, sends nothing, and writes the reports (exit 3: some payouts are not SUCCESS).
TEST_F(RecoveryTest, ProcessRunAgainReportsAFinishedButUnreportedBatchWithoutSending) {
  const auto rows = SandboxRows("PRC", 25);
  const std::string file = dir_.path() + "/proc.csv";
  const std::string out = dir_.path() + "/out";
  WriteFile(file, PayoutCsv(rows));
  const std::vector<std::string> args = {"process", "--config", config_, file, "--out", out};
  CommandResult r = RunPayoutd(args, seconds(60), Failpoints("engine.after_finished=crash"));
  ASSERT_EQ(r.exit_code, kKilled) << r.err;
  EXPECT_TRUE(ListDir(out).empty());
  EXPECT_THAT(BatchStatus("proc"), HasSubstr("(finished)"));
  const size_t sent = sandbox_->Arrivals().size();

  r = RunPayoutd(args);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("batch.resumed batch=proc"));
  EXPECT_THAT(r.out, HasSubstr("\"batch\": \"proc\""));
  EXPECT_EQ(sandbox_->Arrivals().size(), sent);
  ExpectReports("proc", rows, ReadResultsCsv(out + "/proc.results.csv"),
                ReadSummary(out + "/proc.summary.json"));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  EXPECT_THAT(BatchStatus("proc"), HasSubstr("(reported)"));
}

// `payoutd process` whose reports cannot be written exits 1 (docs/cli.md); run again, it writes
// them without sending anything.
TEST_F(RecoveryTest, ProcessWithFailedReportWriteExitsOneAndARerunReports) {
  auto rows = SandboxRows("PRW", 15, 0, 0);  // all SUCCESS: exit 0 at the end
  const std::string file = dir_.path() + "/procw.csv";
  const std::string out = dir_.path() + "/out";
  WriteFile(file, PayoutCsv(rows));
  const std::vector<std::string> args = {"process", "--config", config_, file, "--out", out};
  CommandResult r = RunPayoutd(args, seconds(60), Failpoints("report.write=error"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("batch.report_failed"));
  EXPECT_TRUE(ListDir(out).empty());
  const size_t sent = sandbox_->Arrivals().size();

  r = RunPayoutd(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sandbox_->Arrivals().size(), sent);
  EXPECT_EQ(ListDir(out), (std::vector<std::string>{"procw.results.csv", "procw.summary.json"}));
  ExpectReports("procw", rows, ReadResultsCsv(out + "/procw.results.csv"),
                ReadSummary(out + "/procw.summary.json"));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
}

// `payoutd process` whose batch cannot be recorded exits 1 having sent nothing; run again, it pays.
TEST_F(RecoveryTest, ProcessWithFailedIntakeExitsOneSendingNothingAndARerunPays) {
  const auto rows = SandboxRows("PIN", 15);
  const std::string file = dir_.path() + "/proci.csv";
  const std::string out = dir_.path() + "/out";
  WriteFile(file, PayoutCsv(rows));
  const std::vector<std::string> args = {"process", "--config", config_, file, "--out", out};
  CommandResult r = RunPayoutd(args, seconds(60), Failpoints("intake.record=error"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("batch.intake_failed batch=proci"));
  EXPECT_TRUE(sandbox_->Arrivals().empty());
  EXPECT_TRUE(ListDir(out).empty());

  r = RunPayoutd(args);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  ExpectReports("proci", rows, ReadResultsCsv(out + "/proci.results.csv"),
                ReadSummary(out + "/proci.summary.json"));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
}

// `payoutd process` with a failed commit exits 1; run again, it pays the rest, nothing twice.
TEST_F(RecoveryTest, ProcessWithStoreCommitErrorExitsOneAndARerunPaysTheRestOnce) {
  const auto rows = SandboxRows("PSC", 40);
  const std::string file = dir_.path() + "/procc.csv";
  const std::string out = dir_.path() + "/out";
  WriteFile(file, PayoutCsv(rows));
  const std::vector<std::string> args = {"process", "--config", config_, file, "--out", out};
  CommandResult r = RunPayoutd(args, seconds(60), Failpoints("sqlite_store.apply=error@2"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("state.write_failed"));

  r = RunPayoutd(args);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  ExpectReports("procc", rows, ReadResultsCsv(out + "/procc.results.csv"),
                ReadSummary(out + "/procc.summary.json"));
  ExpectLedgerExactlyOnce(rows, *sandbox_);
  ExpectNoPostAgainWithoutA404(sandbox_->Arrivals(), /*or_unasked_harmless=*/true);
}

}  // namespace
}  // namespace payoutd::testing
