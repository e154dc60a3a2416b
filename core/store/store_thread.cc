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
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.Signal();
  thread_.join();
}

size_t StoreThread::backlog() const {
  MutexLock lock(&mu_);
  return jobs_.size() + running_;
}

void StoreThread::Enqueue(std::function<void()> job) {
  {
    MutexLock lock(&mu_);
    PAYOUTD_CHECK(!stopping_);
    jobs_.push_back(std::move(job));
  }
  cv_.Signal();
}

void StoreThread::Run() {
  pthread_setname_np(pthread_self(), "payoutd-store");
  MutexLock lock(&mu_);
  for (;;) {
    while (!stopping_ && jobs_.empty()) cv_.Wait(mu_);
    if (jobs_.empty()) return;  // stopping, and every posted job has run
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    lock.Unlock();
    job();
    job = nullptr;  // release what the job held before taking the lock again
    lock.Lock();
    --running_;
  }
}

}  // namespace payoutd
