// The spool folder (daemon/spool.h) on a real file system: which files are taken, when (settle),
// how (rename into work/), and where they go after (done/, rejected/).
#include "daemon/spool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "core/base/log.h"

namespace payoutd {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "spool_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    spool_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Spool& MakeSpool(Duration settle) {
    spool_ = std::make_unique<Spool>(
        io_, dir_.string(), settle, [this](const std::string& f) { claimed_.push_back(f); },
        [this](const std::string& b) { refused_.push_back(b); });
    EXPECT_TRUE(spool_->Prepare().ok());
    return *spool_;
  }

  // Runs the io_context until `done` holds, for at most `limit`; false if it never did.
  bool RunUntil(const std::function<bool()>& done, milliseconds limit = milliseconds(10000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (io_.stopped()) io_.restart();
      io_.run_one_for(milliseconds(10));
    }
    return true;
  }

  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }
  void Put(const std::string& rel, const std::string& content) const {
    std::ofstream(Path(rel), std::ios::binary) << content;
  }
  std::string Read(const std::string& rel) const {
    std::ifstream in(Path(rel), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  bool Exists(const std::string& rel) const { return fs::exists(Path(rel)); }
  std::vector<std::string> Names(const std::string& rel) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(Path(rel))) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
  boost::asio::io_context io_;
  std::unique_ptr<Spool> spool_;
  std::vector<std::string> claimed_;
  std::vector<std::string> refused_;
};

TEST_F(SpoolTest, Spool_PrepareCreatesItsFourFolders) {
  Spool& spool = MakeSpool(milliseconds(50));
  for (const std::string& d : {spool.inbox(), spool.work(), spool.done(), spool.rejected()})
    EXPECT_TRUE(fs::is_directory(d)) << d;
  EXPECT_EQ(spool.inbox(), Path("inbox"));
}

TEST_F(SpoolTest, Spool_ClaimsASettledBatchByRenamingItIntoWork) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("inbox/payroll.csv", "id,amount\n");
  spool.Start();
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }));
  EXPECT_THAT(claimed_, ElementsAre("payroll.csv"));
  EXPECT_FALSE(Exists("inbox/payroll.csv"));
  EXPECT_EQ(Read("work/payroll.csv"), "id,amount\n");
  EXPECT_TRUE(refused_.empty());
}

TEST_F(SpoolTest, Spool_WaitsUntilAFileHasStoppedChangingForTheSettleTime) {
  const milliseconds settle(400);
  Spool& spool = MakeSpool(settle);
  Put("inbox/growing.csv", "x");
  spool.Start();
  // Still being written: a byte more every 100 ms for a second, longer than the settle time.
  for (int i = 0; i < 10; ++i) {
    io_.run_for(milliseconds(100));
    std::ofstream(Path("inbox/growing.csv"), std::ios::app) << "x";
    ASSERT_TRUE(claimed_.empty()) << "claimed while it was still growing, after " << i;
  }
  const auto last_write = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - last_write, settle);
  EXPECT_EQ(Read("work/growing.csv"), std::string(11, 'x')) << "claimed whole";
}

TEST_F(SpoolTest, Spool_WithSettleZeroTakesAFileInTheFirstScanThatSeesIt) {
  Spool& spool = MakeSpool(Duration::zero());
  Put("inbox/ready.csv", "id,amount\n");
  spool.Start();  // scans once, before any handler runs
  EXPECT_THAT(claimed_, ElementsAre("ready.csv"));
  EXPECT_TRUE(Exists("work/ready.csv"));
}

TEST_F(SpoolTest, Spool_WithSettleZeroTakesARenamedFileOnItsInotifyEvent) {
  Spool& spool = MakeSpool(Duration::zero());
  spool.Start();
  ASSERT_TRUE(claimed_.empty());
  Put("upload.tmp", "id,amount\n");
  fs::rename(Path("upload.tmp"), Path("inbox/renamed.csv"));
  // The periodic rescan comes a second after Start(); the event comes first.
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }, milliseconds(900)));
  EXPECT_THAT(claimed_, ElementsAre("renamed.csv"));
}

TEST_F(SpoolTest, Spool_WithASettleTimeDoesNotTakeAFileInTheFirstScan) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("inbox/ready.csv", "id,amount\n");
  spool.Start();
  EXPECT_TRUE(claimed_.empty());
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }));
}

TEST_F(SpoolTest, Spool_IgnoresHiddenPartialAndOtherFiles) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("inbox/.hidden.csv", "a");
  Put("inbox/upload.csv.tmp", "a");
  Put("inbox/upload.csv.part", "a");
  Put("inbox/notes.txt", "a");
  Put("inbox/.csv", "a");
  fs::create_directory(Path("inbox/folder.csv"));
  Put("inbox/good.csv", "a");
  spool.Start();
  // Every file is there from the start and settles in the same scan as good.csv.
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }));
  EXPECT_THAT(claimed_, ElementsAre("good.csv"));
  EXPECT_THAT(Names("inbox"), ElementsAre(".csv", ".hidden.csv", "folder.csv", "notes.txt",
                                          "upload.csv.part", "upload.csv.tmp"));
  EXPECT_THAT(Names("work"), ElementsAre("good.csv"));
}

TEST(Spool, IsBatchFileName_TakesOnlyVisibleCsvFiles) {
  EXPECT_TRUE(IsBatchFileName("payroll-2026-11.csv"));
  EXPECT_TRUE(IsBatchFileName("a.csv"));
  EXPECT_FALSE(IsBatchFileName(".payroll.csv"));
  EXPECT_FALSE(IsBatchFileName("payroll.csv.tmp"));
  EXPECT_FALSE(IsBatchFileName("payroll.csv.part"));
  EXPECT_FALSE(IsBatchFileName("payroll.CSV.txt"));
  EXPECT_FALSE(IsBatchFileName(".csv"));
  EXPECT_FALSE(IsBatchFileName(""));
}

TEST_F(SpoolTest, Spool_RefusesABatchWhoseNameIsInWorkAndLeavesThatOneAlone) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("work/payroll.csv", "being paid");
  Put("inbox/payroll.csv", "newcomer");
  spool.Start();
  ASSERT_TRUE(RunUntil([&] { return !refused_.empty(); }));
  EXPECT_THAT(refused_, ElementsAre("payroll"));
  EXPECT_TRUE(claimed_.empty());
  EXPECT_EQ(Read("work/payroll.csv"), "being paid");
  EXPECT_EQ(Read("rejected/payroll.csv"), "newcomer");
  EXPECT_THAT(Read("rejected/payroll.errors.csv"), HasSubstr("already being processed"));
  EXPECT_FALSE(Exists("inbox/payroll.csv"));
}

TEST_F(SpoolTest, Spool_StopsClaimingOnceStopped) {
  Spool& spool = MakeSpool(milliseconds(50));
  spool.Start();
  spool.Stop();
  Put("inbox/late.csv", "a");
  io_.restart();
  io_.run_for(milliseconds(300));  // six settle times: asserts what does NOT happen meanwhile
  EXPECT_TRUE(claimed_.empty());
  EXPECT_TRUE(Exists("inbox/late.csv"));
}

TEST_F(SpoolTest, Spool_WorkFilesListsTheBatchesToRetakeInNameOrder) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("work/b.csv", "b");
  Put("work/a.csv", "a");
  Put("work/.c.csv", "c");
  Put("work/d.csv.tmp", "d");
  EXPECT_THAT(spool.WorkFiles(), ElementsAre("a.csv", "b.csv"));
}

TEST_F(SpoolTest, Spool_FinishMovesTheInputIntoDoneWithoutOverwriting) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("work/payroll.csv", "first");
  ASSERT_TRUE(spool.Finish("payroll.csv").ok());
  EXPECT_EQ(Read("done/payroll.csv"), "first");
  EXPECT_FALSE(Exists("work/payroll.csv"));

  Put("work/payroll.csv", "second");
  FileSet set;
  spool.Finish("payroll.csv", &set);
  EXPECT_TRUE(Exists("work/payroll.csv")) << "nothing moves before the set is committed";
  ASSERT_TRUE(set.Commit().ok());
  EXPECT_EQ(Read("done/payroll.csv"), "first");
  EXPECT_EQ(Read("done/payroll.input.csv"), "second");
}

TEST_F(SpoolTest, Spool_RejectPutsTheErrorsBesideTheBatchWithoutOverwriting) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("work/payroll.csv", "one");
  ASSERT_TRUE(spool.Reject("payroll.csv", "line,column,error\n2,amount,bad\n").ok());
  EXPECT_EQ(Read("rejected/payroll.csv"), "one");
  EXPECT_EQ(Read("rejected/payroll.errors.csv"), "line,column,error\n2,amount,bad\n");
  EXPECT_FALSE(Exists("work/payroll.csv"));

  Put("work/payroll.csv", "two");
  ASSERT_TRUE(spool.Reject("payroll.csv", "line,column,error\n3,id,bad\n").ok());
  EXPECT_EQ(Read("rejected/payroll.csv"), "one");
  EXPECT_EQ(Read("rejected/payroll.1.csv"), "two");
  EXPECT_EQ(Read("rejected/payroll.1.errors.csv"), "line,column,error\n3,id,bad\n");
}

// The spool's log lines, for the tests of its failures (log::SetSink takes a plain function).
std::vector<std::string>& Logged() {
  static std::vector<std::string> lines;
  return lines;
}

class SpoolFailureTest : public SpoolTest {
 protected:
  void SetUp() override {
    SpoolTest::SetUp();
    Logged().clear();
    log::SetSink([](std::string_view line) { Logged().emplace_back(line); });
  }
  void TearDown() override {
    log::SetSink(nullptr);
    SpoolTest::TearDown();
  }
  // Runs until the spool has logged `event` `times` times.
  bool RunUntilLogged(const std::string& event, int times = 1) {
    return RunUntil([&] {
      return std::count_if(Logged().begin(), Logged().end(), [&](const std::string& l) {
               return l.find(" " + event + " ") != std::string::npos;
             }) >= times;
    });
  }
};

// An inbox missing when the spool starts (a file system not mounted yet): no inotify watch, so it
// rescans on its timer, and takes files once the folder is there.
TEST_F(SpoolFailureTest, Spool_StartedWithoutItsInboxRescansAndClaimsOnceItAppears) {
  Spool& spool = MakeSpool(milliseconds(50));
  fs::remove(Path("inbox"));
  spool.Start();
  ASSERT_TRUE(RunUntilLogged("spool.inotify_unavailable"));
  ASSERT_TRUE(RunUntilLogged("spool.scan_failed", 2)) << "a scan, and a rescan on the timer";
  fs::create_directory(Path("inbox"));
  Put("inbox/late.csv", "x");
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }));
  EXPECT_THAT(claimed_, ElementsAre("late.csv"));
  EXPECT_EQ(Read("work/late.csv"), "x");
}

// A claim that fails (here work/ is not a folder) leaves the file in inbox/; a later scan takes it.
TEST_F(SpoolFailureTest, Spool_AFailedClaimLeavesTheFileInTheInboxAndIsTriedAgain) {
  Spool& spool = MakeSpool(milliseconds(50));
  fs::remove(Path("work"));
  Put("work", "not a folder");
  Put("inbox/payroll.csv", "x");
  spool.Start();
  ASSERT_TRUE(RunUntilLogged("spool.claim_failed", 2)) << "a claim, and another at a later scan";
  EXPECT_TRUE(claimed_.empty());
  EXPECT_EQ(Read("inbox/payroll.csv"), "x");
  fs::remove(Path("work"));
  fs::create_directory(Path("work"));
  ASSERT_TRUE(RunUntil([&] { return !claimed_.empty(); }));
  EXPECT_THAT(claimed_, ElementsAre("payroll.csv"));
  EXPECT_EQ(Read("work/payroll.csv"), "x");
}

// A newcomer whose name is in work/ cannot be moved to rejected/: it stays in inbox/ untouched and
// is refused once it can be.
TEST_F(SpoolFailureTest, Spool_ARefusalThatCannotBeWrittenLeavesTheNewcomerInTheInbox) {
  Spool& spool = MakeSpool(milliseconds(50));
  Put("work/payroll.csv", "in progress");
  fs::remove(Path("rejected"));
  Put("rejected", "not a folder");
  Put("inbox/payroll.csv", "newcomer");
  spool.Start();
  ASSERT_TRUE(RunUntilLogged("spool.reject_failed", 2));
  EXPECT_TRUE(refused_.empty());
  EXPECT_EQ(Read("inbox/payroll.csv"), "newcomer");
  fs::remove(Path("rejected"));
  fs::create_directory(Path("rejected"));
  ASSERT_TRUE(RunUntil([&] { return !refused_.empty(); }));
  EXPECT_EQ(Read("rejected/payroll.csv"), "newcomer");
  EXPECT_EQ(Read("work/payroll.csv"), "in progress");
  EXPECT_TRUE(claimed_.empty());
}

}  // namespace
}  // namespace payoutd
