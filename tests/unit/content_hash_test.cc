// Sha256 and ContentHasher (core/batch/content_hash.h): the batch's SHA-256, inline for small
// inputs and on a worker thread for big ones, always the digest of every byte in order.
#include "core/batch/content_hash.h"

#include <gtest/gtest.h>

#include <string>

namespace payoutd {
namespace {

std::string OneShot(const std::string& bytes) {
  Sha256 sha;
  sha.Update(bytes);
  return sha.HexDigest();
}

TEST(Sha256, MatchesTheKnownDigests) {
  EXPECT_EQ(OneShot(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(OneShot("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ContentHasher, SmallChunksAreHashedInline) {
  ContentHasher hasher;
  hasher.Update("a");
  hasher.Update("bc");
  EXPECT_EQ(hasher.Finish(), OneShot("abc"));
}

TEST(ContentHasher, BigChunksOnTheWorkerGiveTheSameDigestInOrder) {
  // Chunks of 1 MiB and more start the worker; a small chunk after them must queue behind them.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  ContentHasher hasher;
  std::string all;
  for (size_t at = 0; at < big.size(); at += 1 << 20) {
    hasher.Update(std::string_view(big).substr(at, 1 << 20));
    hasher.Update("tail");
    all += big.substr(at, 1 << 20);
    all += "tail";
  }
  EXPECT_EQ(hasher.Finish(), OneShot(all));
}

TEST(ContentHasher, DestroyedUnfinishedJoinsItsWorker) {
  ContentHasher hasher;
  hasher.Update(std::string(2 << 20, 'x'));
}  // no Finish(): the destructor must stop and join the worker (TSan/ASan would see a leak)

}  // namespace
}  // namespace payoutd
