#include "daemon/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace payoutd {
namespace {

using ::testing::HasSubstr;

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("files_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/work");
    std::filesystem::create_directories(dir_ + "/done");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void Put(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
  }

  std::string dir_;
};

TEST_F(FilesTest, FileSetShowsNothingBeforeCommitAndEverythingAfter) {
  Put(dir_ + "/work/b.csv", "input");
  FileSet set;
  ASSERT_TRUE(set.Write(dir_ + "/done/b.results.csv", "results").ok());
  ASSERT_TRUE(set.Write(dir_ + "/done/b.summary.json",
                        [](std::ostream& os) {
                          os << "{}";
                          return Status::Ok();
                        })
                  .ok());
  set.Move(dir_ + "/work/b.csv", dir_ + "/done/b.csv");

  // Written and fsynced under temporary names only; the input has not moved.
  EXPECT_FALSE(FileExists(dir_ + "/done/b.results.csv"));
  EXPECT_FALSE(FileExists(dir_ + "/done/b.summary.json"));
  EXPECT_TRUE(FileExists(dir_ + "/done/b.results.csv.tmp"));
  EXPECT_TRUE(FileExists(dir_ + "/work/b.csv"));

  ASSERT_TRUE(set.Commit().ok());
  EXPECT_EQ(Read(dir_ + "/done/b.results.csv"), "results");
  EXPECT_EQ(Read(dir_ + "/done/b.summary.json"), "{}");
  EXPECT_EQ(Read(dir_ + "/done/b.csv"), "input");
  EXPECT_FALSE(FileExists(dir_ + "/work/b.csv"));
  EXPECT_FALSE(FileExists(dir_ + "/done/b.results.csv.tmp"));
  EXPECT_FALSE(FileExists(dir_ + "/done/b.summary.json.tmp"));
}

TEST_F(FilesTest, FileSetCommitSaysWhichMoveFailedAndStopsThere) {
  FileSet set;
  ASSERT_TRUE(set.Write(dir_ + "/done/b.results.csv", "results").ok());
  set.Move(dir_ + "/work/missing.csv", dir_ + "/done/missing.csv");
  ASSERT_TRUE(set.Write(dir_ + "/done/after.txt", "after").ok());
  Status st = set.Commit();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("work/missing.csv"));
  EXPECT_TRUE(FileExists(dir_ + "/done/b.results.csv")) << "renames before the failing one stand";
  EXPECT_FALSE(FileExists(dir_ + "/done/after.txt"))
      << "renames after the failing one are not made";
}

TEST_F(FilesTest, FileSetWriteThatFailsSaysWhere) {
  FileSet set;
  Status st = set.Write(dir_ + "/no-such-folder/x.csv", "x");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("no-such-folder/x.csv.tmp"));
  EXPECT_TRUE(set.Commit().ok()) << "nothing was staged";
}

TEST_F(FilesTest, WriteFileAtomicallyReplacesTheWholeFile) {
  Put(dir_ + "/done/r.csv", "old content that is longer");
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/done/r.csv", "new").ok());
  EXPECT_EQ(Read(dir_ + "/done/r.csv"), "new");
  EXPECT_FALSE(FileExists(dir_ + "/done/r.csv.tmp"));
}

TEST_F(FilesTest, FreePathNeverNamesAFileThatExists) {
  EXPECT_EQ(FreePath(dir_ + "/done", "b", ".csv"), dir_ + "/done/b.csv");
  Put(dir_ + "/done/b.csv", "1");
  EXPECT_EQ(FreePath(dir_ + "/done", "b", ".csv"), dir_ + "/done/b.1.csv");
  Put(dir_ + "/done/b.1.csv", "2");
  EXPECT_EQ(FreePath(dir_ + "/done", "b", ".csv"), dir_ + "/done/b.2.csv");
}

}  // namespace
}  // namespace payoutd
