// The batch's content hash: SHA-256 of every byte of the file, which identifies the batch (a file
// accepted once is refused under any other name) and goes into summary.json.
//
// ContentHasher hashes beside parsing: once chunks reach big-file size (1 MiB reads), each chunk is
// copied into a reused buffer and hashed on one worker thread that the hasher starts and owns;
// smaller inputs are hashed inline. The worker touches nothing but its own queue and digest and is
// joined by Finish() or the destructor, so no thread outlives the hasher.
//
// Threading: Update() and Finish() from one thread (the caller's); the worker is internal.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <openssl/evp.h>

#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"

namespace payoutd {

// SHA-256 of `bytes` as lower-case hex, in one call. Thread-safe.
std::string Sha256Hex(std::string_view bytes);

// Plain SHA-256 over OpenSSL's EVP, digest as lower-case hex. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view bytes);
  std::string HexDigest();  // once; the object is spent afterwards

 private:
  EVP_MD_CTX* ctx_;
};

class ContentHasher {
 public:
  ContentHasher() = default;
  ContentHasher(const ContentHasher&) = delete;
  ContentHasher& operator=(const ContentHasher&) = delete;
  ~ContentHasher();

  // Hashes the next bytes of the file, in order. Blocks while four chunks wait for the worker.
  void Update(std::string_view chunk) EXCLUDES(mu_);
  // The lower-case hex digest of everything given to Update. Call once.
  std::string Finish() EXCLUDES(mu_);

 private:
  static constexpr size_t kParallelChunk = 1 << 20;
  static constexpr size_t kMaxQueued = 4;

  void Stop() EXCLUDES(mu_);
  void Run() EXCLUDES(mu_);

  Sha256 sha_;  // inline before the worker starts, then the worker's alone until it is joined
  std::thread worker_;
  Mutex mu_;
  CondVar work_;   // queue_ gained a chunk, or done_ was set
  CondVar space_;  // queue_ has room again
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  std::vector<std::string> free_ GUARDED_BY(mu_);  // spent buffers, for reuse
  bool done_ GUARDED_BY(mu_) = false;
};

}  // namespace payoutd
