// ForEachDuplicateId (core/batch/dedupe.h): every repeat of a payout id, against its first.
#include "core/batch/dedupe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace payoutd {
namespace {

PayoutList ListOf(const std::vector<std::string>& ids) {
  PayoutList list;
  uint32_t line = 2;
  for (const std::string& id : ids) list.emplace_back(line++, 1, id, "EUR", "A", "N", "O", "M", "");
  return list;
}

std::vector<std::pair<size_t, size_t>> Duplicates(const PayoutList& list,
                                                  std::vector<uint64_t> hashes) {
  std::vector<std::pair<size_t, size_t>> found;
  ForEachDuplicateId(list, std::move(hashes),
                     [&](size_t later, size_t first) { found.emplace_back(later, first); });
  return found;
}

std::vector<uint64_t> HashesOf(const PayoutList& list) {
  std::vector<uint64_t> hashes;
  for (size_t i = 0; i < list.size(); ++i) hashes.push_back(IdHash(list.id(i)));
  return hashes;
}

TEST(Dedupe, ForEachDuplicateId_NamesEveryRepeatAgainstTheFirst) {
  PayoutList list = ListOf({"a", "b", "a", "c", "a", "b"});
  auto found = Duplicates(list, HashesOf(list));
  std::sort(found.begin(), found.end());
  EXPECT_EQ(found, (std::vector<std::pair<size_t, size_t>>{{2, 0}, {4, 0}, {5, 1}}));
}

TEST(Dedupe, ForEachDuplicateId_FindsNothingInDistinctIds) {
  std::vector<std::string> ids;
  for (int i = 0; i < 100000; ++i) ids.push_back("id-" + std::to_string(i));
  PayoutList list = ListOf(ids);
  EXPECT_TRUE(Duplicates(list, HashesOf(list)).empty());
}

TEST(Dedupe, ForEachDuplicateId_TellsCollidingHashesApartByTheirText) {
  // Every id given the same hash: only the real repeat is reported.
  PayoutList list = ListOf({"x", "y", "z", "y"});
  auto found = Duplicates(list, std::vector<uint64_t>(4, 0xABCD'0000'0000'0000u));
  EXPECT_EQ(found, (std::vector<std::pair<size_t, size_t>>{{3, 1}}));
}

}  // namespace
}  // namespace payoutd
