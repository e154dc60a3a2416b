#include "core/batch/dedupe.h"

#include <algorithm>

#include "core/base/status.h"

namespace payoutd {
namespace {

// Stable sort on the upper 32 bits, in place, with two 16-bit LSD passes.
void RadixSortHighHalf(std::vector<uint64_t>* keys) {
  std::vector<uint64_t> tmp(keys->size());
  std::vector<size_t> count(1 << 16);
  for (int shift = 32; shift < 64; shift += 16) {
    std::fill(count.begin(), count.end(), 0);
    for (uint64_t k : *keys) ++count[(k >> shift) & 0xFFFF];
    size_t sum = 0;
    for (size_t& c : count) {
      size_t n = c;
      c = sum;
      sum += n;
    }
    for (uint64_t k : *keys) tmp[count[(k >> shift) & 0xFFFF]++] = k;
    keys->swap(tmp);
  }
}

constexpr uint64_t kIndexMask = 0xFFFFFFFFu;

// keys[begin, end) share one hash: reports each id met again, against its first index.
void ReportRepeatsInGroup(const PayoutList& list, const std::vector<uint64_t>& keys, size_t begin,
                          size_t end, std::vector<size_t>* firsts,
                          const std::function<void(size_t, size_t)>& on_duplicate) {
  firsts->clear();  // distinct ids of the group, by first occurrence
  for (size_t k = begin; k < end; ++k) {
    const size_t index = keys[k] & kIndexMask;
    bool repeated = false;
    for (size_t f : *firsts) {
      if (list.id(f) == list.id(index)) {
        on_duplicate(index, f);
        repeated = true;
        break;
      }
    }
    if (!repeated) firsts->push_back(index);
  }
}

}  // namespace

uint64_t IdHash(std::string_view id) {
  return std::hash<std::string_view>{}(id);
}

void ForEachDuplicateId(const PayoutList& list, std::vector<uint64_t> hashes,
                        const std::function<void(size_t later, size_t first)>& on_duplicate) {
  const size_t n = hashes.size();
  if (n < 2) return;
  // Key = 32 bits of hash, then the index. The keys start in index order and LSD radix sort is
  // stable, so sorting on the hash half alone groups equal hashes in input order.
  PAYOUTD_CHECK(n <= UINT32_MAX);
  for (size_t i = 0; i < n; ++i) hashes[i] = (hashes[i] & ~kIndexMask) | i;
  RadixSortHighHalf(&hashes);
  std::vector<size_t> firsts;
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && (hashes[j] & ~kIndexMask) == (hashes[i] & ~kIndexMask)) ++j;
    if (j - i > 1) ReportRepeatsInGroup(list, hashes, i, j, &firsts, on_duplicate);
    i = j;
  }
}

}  // namespace payoutd
