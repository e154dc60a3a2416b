#include "core/batch/payout_list.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "core/base/status.h"

namespace payoutd {

namespace {
constexpr size_t kHugePage = 2 << 20;
constexpr size_t kBlockBytes = kHugePage;

// Asks for transparent huge pages over the whole 2 MiB pages inside [p, p+n). First-touching a
// large batch's payouts is otherwise a page fault every 4 KiB, which on a virtual machine costs
// more than parsing the text. Advice only: nothing changes where it is not honoured.
void AdviseHugePages(void* p, size_t n) {
#ifdef MADV_HUGEPAGE
  uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
#endif
}
size_t VarintSize(size_t n) {
  size_t k = 1;
  for (; n >= 0x80; n >>= 7) ++k;
  return k;
}

// Writes `s` as a varint length and its bytes; returns the end.
char* Put(char* p, std::string_view s) {
  size_t n = s.size();
  for (; n >= 0x80; n >>= 7) *p++ = static_cast<char>(n | 0x80);
  *p++ = static_cast<char>(n);
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// Reads what Put wrote at *p and moves *p past it.
std::string_view Take(const char** p) {
  size_t n = 0;
  int shift = 0;
  unsigned char b;
  do {
    b = static_cast<unsigned char>(*(*p)++);
    n |= static_cast<size_t>(b & 0x7F) << shift;
    shift += 7;
  } while (b & 0x80);
  std::string_view s(*p, n);
  *p += n;
  return s;
}
}  // namespace

PayoutList::PayoutList() = default;
PayoutList::~PayoutList() = default;
PayoutList::PayoutList(PayoutList&&) noexcept = default;
PayoutList& PayoutList::operator=(PayoutList&&) noexcept = default;

PayoutList::PayoutList(const PayoutList& other) {
  rows_.reserve(other.size());
  for (const Payout& p : other) push_back(p);
}

PayoutList& PayoutList::operator=(const PayoutList& other) {
  if (this != &other) {
    PayoutList copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void PayoutList::FreeBlock::operator()(char* p) const {
  std::free(p);
}

void PayoutList::reserve(size_t n) {
  rows_.reserve(n);
  AdviseHugePages(rows_.data(), rows_.capacity() * sizeof(Row));
}

void PayoutList::clear() {
  rows_.clear();
  rows_.shrink_to_fit();
  shared_.clear();
  shared_index_.clear();
  std::fill(std::begin(last_shared_), std::end(last_shared_), kInline);
  blocks_.clear();
  block_used_ = 0;
  block_size_ = 0;
}

// Text lives in blocks that never move, so a Row may point into them for its whole life.
const char* PayoutList::Store(size_t n) {
  if (blocks_.empty() || block_size_ - block_used_ < n) {
    // Blocks grow from 4 KiB to 1 MiB, so a small batch does not pay for a big one.
    block_size_ = std::max(std::min(kBlockBytes, std::max<size_t>(4096, block_size_ * 2)), n);
    char* block;
    if (block_size_ >= kHugePage) {
      block_size_ = (block_size_ + kHugePage - 1) & ~(kHugePage - 1);
      block = static_cast<char*>(std::aligned_alloc(kHugePage, block_size_));
      AdviseHugePages(block, block_size_);
    } else {
      block = static_cast<char*>(std::malloc(block_size_));
    }
    PAYOUTD_CHECK(block != nullptr);
    blocks_.emplace_back(block);
    block_used_ = 0;
  }
  char* p = blocks_.back().get() + block_used_;
  block_used_ += n;
  return p;
}

uint16_t PayoutList::Intern(int kind, std::string_view value) {
  uint16_t last = last_shared_[kind];
  if (last < shared_.size() && shared_[last] == value) return last;  // (a moved-from list has none)
  uint16_t index;
  if (shared_.size() <= 32) {  // the usual batch: a few currencies, methods and operators
    for (size_t i = 0; i < shared_.size(); ++i) {
      const std::string& v = shared_[i];
      if (v.size() == value.size() &&
          (v.empty() || (v[0] == value[0] && v.back() == value.back())) && v == value) {
        last_shared_[kind] = static_cast<uint16_t>(i);
        return static_cast<uint16_t>(i);
      }
    }
  }
  if (auto it = shared_index_.find(value); it != shared_index_.end()) {
    index = it->second;
  } else if (shared_.size() < kInline) {
    index = static_cast<uint16_t>(shared_.size());
    shared_.emplace_back(value);
    shared_index_.emplace(std::string(value), index);
  } else {
    return kInline;  // so many distinct values that sharing does not pay: keep them in the text
  }
  last_shared_[kind] = index;
  return index;
}

void PayoutList::emplace_back(uint32_t line, int64_t amount_minor, std::string_view id,
                              std::string_view currency, std::string_view account_number,
                              std::string_view account_name, std::string_view operator_code,
                              std::string_view method, std::string_view email) {
  const std::string_view texts[] = {id, account_number, account_name, email};
  const std::string_view shared[3] = {currency, method, operator_code};
  Row row{nullptr, amount_minor, line, {}};
  size_t n = 0;
  for (auto t : texts) n += VarintSize(t.size()) + t.size();
  for (int k = 0; k < 3; ++k) {
    row.shared[k] = Intern(k, shared[k]);
    if (row.shared[k] == kInline) n += VarintSize(shared[k].size()) + shared[k].size();
  }
  char* p = const_cast<char*>(Store(n));
  row.text = p;
  for (auto t : texts) p = Put(p, t);
  for (int k = 0; k < 3; ++k)
    if (row.shared[k] == kInline) p = Put(p, shared[k]);
  rows_.push_back(row);
}

void PayoutList::push_back(const Payout& p) {
  emplace_back(p.line, p.amount_minor, p.id, p.currency, p.account_number, p.account_name,
               p.operator_code, p.method, p.email);
}

std::string_view PayoutList::SharedField(const Row& r, int kind) const {
  if (r.shared[kind] != kInline) return shared_[r.shared[kind]];
  const char* p = r.text;
  for (int i = 0; i < 4; ++i) Take(&p);
  for (int k = 0; k < kind; ++k)
    if (r.shared[k] == kInline) Take(&p);
  return Take(&p);
}

std::string_view PayoutList::id(size_t i) const {
  const char* p = rows_[i].text;
  return Take(&p);
}

Payout PayoutList::operator[](size_t i) const {
  const Row& r = rows_[i];
  Payout out;
  out.line = r.line;
  out.amount_minor = r.amount_minor;
  const char* p = r.text;
  out.id = Take(&p);
  out.account_number = Take(&p);
  out.account_name = Take(&p);
  out.email = Take(&p);
  out.currency = SharedField(r, kCurrency);
  out.method = SharedField(r, kMethod);
  out.operator_code = SharedField(r, kOperatorCode);
  return out;
}

Payout PayoutList::at(size_t i) const {
  if (i >= size()) throw std::out_of_range("PayoutList::at");
  return (*this)[i];
}

std::vector<Payout> PayoutList::ToVector() const {
  std::vector<Payout> v;
  v.reserve(size());
  for (const Payout& p : *this) v.push_back(p);
  return v;
}

}  // namespace payoutd
