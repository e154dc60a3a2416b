#include "core/batch/content_hash.h"

#include <system_error>
#include <utility>

#include "core/base/status.h"

namespace payoutd {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  PAYOUTD_CHECK(ctx_ != nullptr);
  PAYOUTD_CHECK(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1);
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

void Sha256::Update(std::string_view bytes) {
  PAYOUTD_CHECK(EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()) == 1);
}

std::string Sha256::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  PAYOUTD_CHECK(EVP_DigestFinal_ex(ctx_, md, &n) == 1);
  std::string hex;
  for (unsigned i = 0; i < n; ++i) {
    hex += "0123456789abcdef"[md[i] >> 4];
    hex += "0123456789abcdef"[md[i] & 0xF];
  }
  return hex;
}

std::string Sha256Hex(std::string_view bytes) {
  Sha256 sha;
  sha.Update(bytes);
  return sha.HexDigest();
}

ContentHasher::~ContentHasher() {
  if (worker_.joinable()) Stop();
}

void ContentHasher::Update(std::string_view chunk) {
  if (!worker_.joinable() && chunk.size() >= kParallelChunk) {
    try {
      worker_ = std::thread([this] { Run(); });
    } catch (const std::system_error&) {
      // No thread: hash inline, only slower.
    }
  }
  if (!worker_.joinable()) {
    sha_.Update(chunk);
    return;
  }
  std::string buf;
  {
    MutexLock lock(&mu_);
    while (queue_.size() >= kMaxQueued) space_.Wait(mu_);
    if (!free_.empty()) {
      buf = std::move(free_.back());
      free_.pop_back();
    }
  }
  buf.assign(chunk.data(), chunk.size());
  {
    MutexLock lock(&mu_);
    queue_.push_back(std::move(buf));
  }
  work_.Signal();
}

std::string ContentHasher::Finish() {
  if (worker_.joinable()) Stop();
  return sha_.HexDigest();
}

void ContentHasher::Stop() {
  {
    MutexLock lock(&mu_);
    done_ = true;
  }
  work_.Signal();
  worker_.join();
}

void ContentHasher::Run() {
  for (;;) {
    std::string buf;
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !done_) work_.Wait(mu_);
      if (queue_.empty()) return;  // done_ and drained
      buf = std::move(queue_.front());
      queue_.pop_front();
    }
    sha_.Update(buf);
    {
      MutexLock lock(&mu_);
      free_.push_back(std::move(buf));
    }
    space_.Signal();
  }
}

}  // namespace payoutd
