#include "core/store/store_thread.h"

#include <pthread.h>

namespace payoutd {

StoreThread::StoreThread(boost::asio::io_context& io, std::unique_ptr<PayoutStore> store)
    : io_(io), store_(std::move(store)) {
  PAYOUTD_CHECK(store_ != nullptr);
  thread_ = std::thread([this] { Run(); });
}

StoreThread::~StoreThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

size_t StoreThread::backlog() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size() + running_;
}

void StoreThread::Enqueue(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    PAYOUTD_CHECK(!stopping_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void StoreThread::Run() {
  pthread_setname_np(pthread_self(), "payoutd-store");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and every posted job has run
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    lock.unlock();
    job();
    job = nullptr;  // release what the job held before taking the lock again
    lock.lock();
    --running_;
  }
}

}  // namespace payoutd
