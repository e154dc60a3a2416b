// One dedicated thread that owns a PayoutStore connection and runs store work for the io_context
// thread: the engine's group commits (fsync), a batch's intake (validation and CreateBatch of up to
// a million rows), and anything else that would stall the network loop: what blocks runs here,
// and its result comes back to the io thread through asio::post.
//
// Guarantees:
// - Jobs run one at a time, in the order they were posted, each with exclusive use of the store.
//   All writes of the daemon go through one StoreThread, so they never wait on each other's SQLite
//   locks; the io thread's own connection only reads (WAL: readers never block the writer, and see
//   the last committed state).
// - `done(result)` runs on the io_context's thread after the job has returned (so after its commit
//   when the job commits). While a job is queued or running the io_context has work (run() does
//   not return early).
// - The destructor runs every job already posted, then joins. Completions of those jobs are posted
//   but only run if the io_context runs again; callers guard their handlers with a Liveness token
//   (core/base/liveness.h).
//
// Threading: Post() may be called from any thread; the store is used only on the StoreThread.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"
#include "core/store/payout_store.h"

namespace payoutd {

class StoreThread {
 public:
  StoreThread(boost::asio::io_context& io, std::unique_ptr<PayoutStore> store);
  ~StoreThread();
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  // Runs job(store) on the store thread, then done(result) on the io_context's thread.
  template <typename Job, typename Done>
  void Post(Job job, Done done) {
    // Held through a shared_ptr: std::function needs a copyable callable, a job may be move-only.
    auto task = std::make_shared<Task<Job, Done>>(std::move(job), std::move(done),
                                                  boost::asio::make_work_guard(io_));
    Enqueue([this, task] {
      auto result = task->job(*store_);
      boost::asio::post(
          io_, [task, result = std::move(result)]() mutable { task->done(std::move(result)); });
      task->guard.reset();
    });
  }

  // Jobs posted and not yet finished (for metrics and tests).
  size_t backlog() const EXCLUDES(mu_);

 private:
  template <typename Job, typename Done>
  struct Task {
    Task(Job j, Done d, boost::asio::executor_work_guard<boost::asio::io_context::executor_type> g)
        : job(std::move(j)), done(std::move(d)), guard(std::move(g)) {}
    Job job;
    Done done;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
  };

  void Enqueue(std::function<void()> job) EXCLUDES(mu_);
  void Run() EXCLUDES(mu_);

  boost::asio::io_context& io_;
  std::unique_ptr<PayoutStore> store_;
  mutable Mutex mu_;
  CondVar cv_;  // jobs_ gained one, or stopping_ was set
  std::deque<std::function<void()>> jobs_ GUARDED_BY(mu_);
  size_t running_ GUARDED_BY(mu_) = 0;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace payoutd
