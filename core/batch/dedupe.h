// Finding repeated payout ids in a batch. A payout id may be paid once ever, so a batch that names
// one twice is refused, at the later line, naming the first.
//
// At a million ids, sorting 64-bit keys (32 bits of the id's hash, then its index) with two 16-bit
// radix passes is linear and sequential in memory, which beats a hash table's random probes (a
// cache miss each). Equal hashes are then compared by id text, so a hash collision is never taken
// for a duplicate. Pure functions; thread-safe on distinct inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "core/batch/payout_list.h"

namespace payoutd {

// The hash ForEachDuplicateId expects for each id.
uint64_t IdHash(std::string_view id);

// Calls on_duplicate(later, first) for every payout whose id repeats an earlier one, `first` being
// the index of that id's first occurrence; in order of hash, and in input order within one id.
// `hashes[i]` must be IdHash(list.id(i)); the vector is consumed. Linear in the number of payouts
// plus, within one hash, the number of distinct ids sharing it.
void ForEachDuplicateId(const PayoutList& list, std::vector<uint64_t> hashes,
                        const std::function<void(size_t later, size_t first)>& on_duplicate);

}  // namespace payoutd
