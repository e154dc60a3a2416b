#include "core/store/store_thread.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "tests/support/payout_list.h"

namespace payoutd {
namespace {

class StoreThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("store_thread_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<PayoutStore> OpenStore() {
    auto s = PayoutStore::Open((dir_ / "state.db").string());
    EXPECT_TRUE(s.ok()) << s.error();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::filesystem::path dir_;
  boost::asio::io_context io_;
};

TEST_F(StoreThreadTest, StoreThread_RunsJobsInOrderOffTheIoThreadAndCompletesOnIt) {
  StoreThread writer(io_, OpenStore());
  const auto io_thread = std::this_thread::get_id();
  std::vector<int> ran, completed;
  bool job_on_io_thread = false, completion_elsewhere = false;
  for (int i = 0; i < 20; ++i) {
    writer.Post(
        [&, i](PayoutStore&) {
          job_on_io_thread |= std::this_thread::get_id() == io_thread;
          ran.push_back(i);  // only the store thread touches `ran` until the completions
          return i;
        },
        [&](int i) {
          completion_elsewhere |= std::this_thread::get_id() != io_thread;
          completed.push_back(i);
        });
  }
  // run() returns only when every completion has run: a queued or running job keeps it busy.
  io_.run();
  std::vector<int> expect;
  for (int i = 0; i < 20; ++i) expect.push_back(i);
  EXPECT_EQ(ran, expect);
  EXPECT_EQ(completed, expect);
  EXPECT_FALSE(job_on_io_thread);
  EXPECT_FALSE(completion_elsewhere);
  // The store thread counts a job finished just after posting its completion: wait for that.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (writer.backlog() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(writer.backlog(), 0u);
}

TEST_F(StoreThreadTest, StoreThread_IoThreadRunsWhileAJobBlocks) {
  // The job waits for something only the io thread can do: were the job run on the io thread (or
  // the io thread made to wait for it) this would never finish.
  StoreThread writer(io_, OpenStore());
  std::promise<void> released;
  std::shared_future<void> release = released.get_future().share();
  bool done = false;
  writer.Post(
      [release](PayoutStore&) {
        return release.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
      },
      [&](bool was_released) {
        EXPECT_TRUE(was_released);
        done = true;
      });
  boost::asio::post(io_, [&] { released.set_value(); });
  io_.run();
  EXPECT_TRUE(done);
}

TEST_F(StoreThreadTest, StoreThread_WritesThroughItsOwnConnectionAreSeenByTheIoThreadsOne) {
  auto reader = OpenStore();
  StoreThread writer(io_, OpenStore());
  BatchRecord b;
  b.id = "B1";
  b.sha256 = "sha-b1";
  b.file_name = "B1.csv";
  b.rows = 1;
  b.started_at_ms = 1;
  Payout p;
  p.id = "P-1";
  p.line = 2;
  p.amount_minor = 100;
  p.currency = "USD";
  p.account_number = "11223344";
  p.account_name = "Test";
  p.operator_code = "BNK_000";
  p.method = "BANK_TRANSFER";
  bool seen = false;
  writer.Post([&](PayoutStore& store) { return store.CreateBatch(b, ToPayoutList({p})); },
              [&](Status st) {
                ASSERT_TRUE(st.ok()) << st.message();
                auto row = reader->GetPayout("P-1");
                seen = row.ok() && row->has_value();
              });
  io_.run();
  EXPECT_TRUE(seen) << "the completion runs after the job's commit";
}

TEST_F(StoreThreadTest, StoreThread_DestructorRunsEveryJobAlreadyPosted) {
  std::atomic<int> ran{0};
  std::promise<void> first_started;
  std::promise<void> go;
  std::shared_future<void> go_f = go.get_future().share();
  {
    StoreThread writer(io_, OpenStore());
    writer.Post(
        [&, go_f](PayoutStore&) {
          first_started.set_value();
          go_f.wait();
          return ++ran;
        },
        [](int) {});
    for (int i = 0; i < 5; ++i) writer.Post([&](PayoutStore&) { return ++ran; }, [](int) {});
    first_started.get_future().wait();
    EXPECT_EQ(writer.backlog(), 6u);
    go.set_value();
  }  // joins after all six
  EXPECT_EQ(ran.load(), 6);
}

}  // namespace
}  // namespace payoutd
