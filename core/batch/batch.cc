#include "core/batch/batch.h"

#include <openssl/evp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <istream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "core/batch/csv_reader.h"
#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"

namespace payoutd {

// ---------------------------------------------------------------------------------------------
// PayoutList

namespace {
constexpr size_t kHugePage = 2 << 20;
constexpr size_t kBlockBytes = kHugePage;

// Asks for transparent huge pages over the whole 2 MiB pages inside [p, p+n). First-touching a
// large batch's payouts is otherwise a page fault every 4 KiB, which on a virtual machine costs more
// than parsing the text. Advice only: nothing changes where it is not honoured.
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

void PayoutList::FreeBlock::operator()(char* p) const { std::free(p); }

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
      if (v.size() == value.size() && (v.empty() || (v[0] == value[0] && v.back() == value.back())) &&
          v == value) {
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

// ---------------------------------------------------------------------------------------------
// Validation

namespace {

enum Column { kColId = 0, kColAmount, kColCurrency, kColAccountNumber, kColAccountName, kColOperatorCode,
              kColMethod, kColEmail, kColumns };
constexpr const char* kColumnNames[kColumns] = {"id", "amount", "currency", "account_number",
                                                "account_name", "operator_code", "method", "email"};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// User text quoted into a message: control characters shown as '?', long values cut, so that one
// bad cell cannot make an unreadable errors file. `ascii_only` is for text that was never checked
// as UTF-8 (the batch id comes from a file name): its other bytes are shown as '?' too.
std::string Shown(std::string_view s, bool ascii_only = false) {
  constexpr size_t kMax = 70;
  std::string out = "'";
  size_t n = s.size();
  if (n > kMax) {
    n = kMax;  // cut on a character boundary so the message stays valid UTF-8
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  }
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f || (ascii_only && c >= 0x80)) ? '?' : s[i];
  }
  if (n < s.size()) out += "...";
  out += "'";
  return out;
}

// Code points in valid UTF-8 (the reader has checked it).
size_t CharCount(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// C0 controls, DEL, and C1 controls (U+0080..U+009F, encoded C2 80..C2 9F).
bool HasControl(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F) return true;
  }
  return false;
}

bool PrintableAscii(std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

// A sanity check, not RFC 5322: one '@', something before it, a dotted domain after it, no spaces.
bool LooksLikeEmail(std::string_view s) {
  if (s.size() > 254) return false;
  size_t at = s.find('@');
  if (at == std::string_view::npos || at == 0 || s.find('@', at + 1) != std::string_view::npos) return false;
  std::string_view domain = s.substr(at + 1);
  size_t dot = domain.find('.');
  if (dot == std::string_view::npos || dot == 0 || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos)
    return false;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == ',' || c == ';' || c == '<' || c == '>' || c == '"') return false;
  }
  return true;
}

std::string IdRule() {
  return "1 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit";
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    PAYOUTD_CHECK(ctx_ != nullptr);
    PAYOUTD_CHECK(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1);
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view b) { PAYOUTD_CHECK(EVP_DigestUpdate(ctx_, b.data(), b.size()) == 1); }
  std::string HexDigest() {
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

 private:
  EVP_MD_CTX* ctx_;
};

// SHA-256 of the file, computed beside parsing: once the reader is in big-file mode (1 MiB reads)
// each chunk is copied into a reused buffer and hashed on a worker thread. Small inputs are hashed
// inline. The worker touches nothing but its own queue and digest, and is joined in Finish().
class FileHasher {
 public:
  FileHasher() = default;
  FileHasher(const FileHasher&) = delete;
  FileHasher& operator=(const FileHasher&) = delete;
  ~FileHasher() {
    if (worker_.joinable()) Stop();
  }

  void Update(std::string_view chunk) EXCLUDES(mu_) {
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

  std::string Finish() {
    if (worker_.joinable()) Stop();
    return sha_.HexDigest();
  }

 private:
  static constexpr size_t kParallelChunk = 1 << 20;
  static constexpr size_t kMaxQueued = 4;

  void Stop() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      done_ = true;
    }
    work_.Signal();
    worker_.join();
  }

  void Run() EXCLUDES(mu_) {
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

  Sha256 sha_;
  std::thread worker_;
  Mutex mu_;
  CondVar work_;   // queue_ gained a chunk, or done_ was set
  CondVar space_;  // queue_ has room again
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  std::vector<std::string> free_ GUARDED_BY(mu_);  // spent buffers, for reuse
  bool done_ GUARDED_BY(mu_) = false;
};

uint64_t IdHash(std::string_view id) { return std::hash<std::string_view>{}(id); }

// Stable sort on the upper 32 bits, in place, with two 16-bit LSD passes: linear and sequential in
// memory, which at a million ids beats a hash table's random probes (a cache miss each).
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

// Calls on_duplicate(later, first) for every payout whose id repeats an earlier one, `first` being
// the index of that id's first occurrence. `hashes[i]` is IdHash(list.id(i)); it is consumed.
template <typename F>
void ForEachDuplicateId(const PayoutList& list, std::vector<uint64_t> hashes, F on_duplicate) {
  const size_t n = hashes.size();
  if (n < 2) return;
  // Key = 32 bits of hash, then the index. The keys start in index order and LSD radix sort is
  // stable, so sorting on the hash half alone groups equal hashes in input order.
  PAYOUTD_CHECK(n <= UINT32_MAX);
  const uint64_t index_mask = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) hashes[i] = (hashes[i] & ~index_mask) | i;
  RadixSortHighHalf(&hashes);
  std::vector<size_t> firsts;  // distinct ids of one hash group, by first occurrence
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && (hashes[j] & ~index_mask) == (hashes[i] & ~index_mask)) ++j;
    if (j - i > 1) {
      firsts.clear();
      for (size_t k = i; k < j; ++k) {
        const size_t index = hashes[k] & index_mask;
        bool repeated = false;
        for (size_t f : firsts) {
          if (list.id(f) == list.id(index)) {
            on_duplicate(index, f);
            repeated = true;
            break;
          }
        }
        if (!repeated) firsts.push_back(index);
      }
    }
    i = j;
  }
}

// What the validator needs of one currency, looked up once per batch instead of once per row.
struct CurrencyState {
  std::string code;
  int minor_units = 0;
  std::optional<int64_t> max_amount;  // batches.max_amount, if set for this currency
  std::optional<int64_t> max_total;   // batches.max_total, if set for this currency
  int64_t* total = nullptr;           // into ValidatedBatch::totals, once a valid amount is seen
  bool total_reported = false;        // the total's error is reported once per batch
};

class ErrorSink {
 public:
  explicit ErrorSink(ValidatedBatch* out) : out_(out) {}
  void Add(uint32_t line, std::string_view column, std::string message) {
    ++out_->error_count;
    if (out_->errors.size() < BatchValidator::kMaxErrors)
      out_->errors.push_back(BatchError{line, std::string(column), std::move(message)});
  }

 private:
  ValidatedBatch* out_;
};

}  // namespace

BatchValidator::BatchValidator(BatchRules rules) : rules_(std::move(rules)) {}

ValidatedBatch BatchValidator::ValidateFile(std::string_view batch_id, const std::string& path) const {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ValidatedBatch out;
    out.batch_id = std::string(batch_id);
    ErrorSink(&out).Add(0, "", "cannot open the batch file: " + std::string(std::strerror(errno)));
    return out;
  }
  return Validate(batch_id, in);
}

ValidatedBatch BatchValidator::Validate(std::string_view batch_id, std::istream& in) const {
  ValidatedBatch out;
  out.batch_id = std::string(batch_id);
  ErrorSink errors(&out);
  FileHasher sha;

  const bool batch_id_ok = IsValidId(batch_id);
  if (!batch_id_ok)
    errors.Add(0, "", "the batch id " + Shown(batch_id, true) + " (the file name without .csv) is not valid: use " +
                          IdRule());

  // Reserve the payout index once from the stream's size (a row takes well over 32 bytes), so it
  // is never copied while growing. Reserved but untouched pages cost no memory.
  if (std::streamoff here = in.tellg(); here >= 0 && in.seekg(0, std::ios::end)) {
    std::streamoff size = in.tellg();
    in.seekg(here);
    if (size > here) {
      const uint64_t hint = static_cast<uint64_t>(size - here) / 32 + 1;
      const uint64_t cap = static_cast<uint64_t>(std::max<int64_t>(rules_.max_rows, 0));
      out.payouts.reserve(static_cast<size_t>(std::min(hint, cap)));
    }
  }
  in.clear();  // a stream that cannot seek only loses the hint

  CsvOptions csv_options;
  csv_options.delimiter = rules_.delimiter;
  CsvReader reader(in, csv_options);
  reader.OnBytes([&sha](std::string_view b) { sha.Update(b); });

  // Header.
  std::array<int, kColumns> col;
  col.fill(-1);
  bool header_ok = false;
  switch (reader.Read()) {
    case CsvReader::Next::kEnd:
      errors.Add(0, "", "the file is empty; expected a header row (id,amount,currency,account_number,"
                        "account_name,operator_code,...) and at least one payout");
      break;
    case CsvReader::Next::kError:
      errors.Add(reader.error().line, "", "header row: " + reader.error().message);
      break;
    case CsvReader::Next::kRecord: {
      header_ok = true;
      const auto& names = reader.fields();
      for (size_t i = 0; i < names.size(); ++i) {
        std::string name = Lower(Trim(names[i]));
        for (int c = 0; c < kColumns; ++c) {
          if (name != kColumnNames[c]) continue;
          if (col[c] >= 0) {
            errors.Add(1, kColumnNames[c], "the header names the " + name + " column twice");
            header_ok = false;
          }
          col[c] = static_cast<int>(i);
        }
      }
      if (std::all_of(col.begin(), col.end(), [](int i) { return i < 0; })) {
        // Not one known name: most likely the header row is missing and this is the first payout.
        errors.Add(1, "", "the first line is not a header row; it must name the columns, e.g. "
                          "id,amount,currency,account_number,account_name,operator_code");
        header_ok = false;
        break;
      }
      for (int c : {kColAmount, kColCurrency, kColAccountNumber, kColAccountName, kColOperatorCode}) {
        if (col[c] >= 0) continue;
        if (c == kColOperatorCode && !rules_.default_operator_code.empty()) continue;
        std::string message = std::string("the header has no ") + kColumnNames[c] + " column, which is required";
        if (c == kColOperatorCode) message += " (no batches.default_operator_code is configured)";
        errors.Add(1, kColumnNames[c], std::move(message));
        header_ok = false;
      }
      break;
    }
  }
  auto column_of_field = [&](uint32_t field) -> std::string_view {
    for (int c = 0; c < kColumns; ++c)
      if (field > 0 && col[c] == static_cast<int>(field - 1)) return kColumnNames[c];
    return "";
  };

  // Rows. Every row is checked even after errors, so one pass reports every bad row.
  std::vector<uint64_t> id_hashes;  // IdHash of each kept payout's id, for duplicate detection
  id_hashes.reserve(out.payouts.capacity());
  std::string default_id;
  std::string currency;
  std::vector<std::unique_ptr<CurrencyState>> currencies;  // known codes met in this batch
  CurrencyState* last_currency = nullptr;
  const uint64_t max_rows = rules_.max_rows > 0 ? static_cast<uint64_t>(rules_.max_rows) : 0;
  uint32_t first_excess_line = 0;
  for (;;) {
    CsvReader::Next next = reader.Read();
    if (next == CsvReader::Next::kEnd) break;
    const uint64_t data_row = ++out.rows;
    if (!header_ok) continue;  // columns unknown: only count rows (and hash the file)
    if (next == CsvReader::Next::kError) {
      errors.Add(reader.error().line, column_of_field(reader.error().field), reader.error().message);
      continue;
    }
    const uint32_t line = reader.record_line();
    if (data_row > max_rows) {
      // The batch is rejected for its size; stop keeping payouts so memory stays bounded.
      if (first_excess_line == 0) first_excess_line = line;
      continue;
    }
    const auto& f = reader.fields();
    auto get = [&](int c) { return col[c] < 0 ? std::string_view() : Trim(f[static_cast<size_t>(col[c])]); };
    const uint64_t errors_before = out.error_count;

    // id
    std::string_view id = get(kColId);
    bool id_ok = true;
    if (id.empty()) {
      default_id.assign(batch_id);
      default_id += '-';
      default_id += std::to_string(data_row);
      id = default_id;
      if (!IsValidId(id)) {
        id_ok = false;
        if (batch_id_ok)  // an invalid batch id is reported once, not on every row
          errors.Add(line, "id", "the default id " + Shown(id) +
                                     " (batch id + row number) is too long; give this row an id (" +
                                     IdRule() + ")");
      }
    } else if (!IsValidId(id)) {
      id_ok = false;
      errors.Add(line, "id", "id " + Shown(id) + " is not valid: use " + IdRule());
    }

    // currency and amount
    currency.assign(get(kColCurrency));
    for (char& c : currency)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    CurrencyState* cs = nullptr;
    if (last_currency != nullptr && last_currency->code == currency) {
      cs = last_currency;
    } else {
      for (auto& known : currencies) {
        if (known->code == currency) cs = known.get();
      }
      if (cs == nullptr && !currency.empty()) {
        if (std::optional<int> digits = rules_.currencies.MinorUnits(currency)) {
          // Only known codes are cached, so garbage in the column cannot grow this list.
          auto state = std::make_unique<CurrencyState>();
          state->code = currency;
          state->minor_units = *digits;
          if (auto cap = rules_.max_amount.find(currency); cap != rules_.max_amount.end())
            state->max_amount = cap->second;
          if (auto cap = rules_.max_total.find(currency); cap != rules_.max_total.end())
            state->max_total = cap->second;
          currencies.push_back(std::move(state));
          cs = currencies.back().get();
        }
      }
      if (cs != nullptr) last_currency = cs;
    }
    if (currency.empty()) {
      errors.Add(line, "currency", "currency is empty");
    } else if (cs == nullptr) {
      errors.Add(line, "currency", "currency " + Shown(currency) + " is not a known ISO 4217 currency code");
    }
    int64_t amount = 0;
    if (cs != nullptr) {
      const int digits = cs->minor_units;
      auto parsed = ParseAmount(get(kColAmount), digits, currency);
      if (!parsed.ok()) {
        errors.Add(line, "amount", parsed.error());
      } else {
        amount = *parsed;
        if (cs->max_amount && amount > *cs->max_amount)
          errors.Add(line, "amount",
                     "amount " + FormatFixedAmount(amount, digits) + " " + currency + " is above the limit of " +
                         FormatFixedAmount(*cs->max_amount, digits) + " " + currency +
                         " per payout (batches.max_amount)");
        if (cs->total == nullptr) cs->total = &out.totals[currency];  // map nodes never move
        int64_t& total = *cs->total;
        if (!AddMinor(total, amount, &total)) {
          if (!cs->total_reported)
            errors.Add(line, "amount", "the " + currency + " total of this batch is too large to add up exactly");
          cs->total_reported = true;
        } else if (cs->max_total && total > *cs->max_total && !cs->total_reported) {
          cs->total_reported = true;
          errors.Add(line, "amount",
                     "the " + currency + " total reaches " + FormatFixedAmount(total, digits) +
                         " at this row, above the batch limit of " + FormatFixedAmount(*cs->max_total, digits) +
                         " " + currency + " (batches.max_total)");
        }
      }
    }

    // account
    std::string_view account_number = get(kColAccountNumber);
    if (account_number.empty()) {
      errors.Add(line, "account_number", "account_number is empty");
    } else if (!PrintableAscii(account_number)) {
      // Never echo the account number: it is not to appear in files or logs in full.
      errors.Add(line, "account_number",
                 "account_number may only hold printable ASCII characters (letters, digits, spaces, punctuation)");
    } else if (account_number.size() > 34) {
      errors.Add(line, "account_number",
                 "account_number has " + std::to_string(account_number.size()) + " characters; at most 34 are allowed");
    }
    std::string_view account_name = get(kColAccountName);
    if (account_name.empty()) {
      errors.Add(line, "account_name", "account_name is empty");
    } else if (HasControl(account_name)) {
      errors.Add(line, "account_name", "account_name contains a control character (such as a line break or a tab)");
    } else if (size_t n = CharCount(account_name); n > 140) {
      errors.Add(line, "account_name", "account_name has " + std::to_string(n) + " characters; at most 140 are allowed");
    }

    // operator, method, email
    std::string_view operator_code = get(kColOperatorCode);
    if (operator_code.empty()) operator_code = rules_.default_operator_code;
    if (operator_code.empty())
      errors.Add(line, "operator_code", "operator_code is empty (no batches.default_operator_code is configured)");
    else if (HasControl(operator_code))
      errors.Add(line, "operator_code", "operator_code contains a control character");
    std::string_view method = get(kColMethod);
    if (method.empty()) method = rules_.default_method;
    if (method.empty())
      errors.Add(line, "method", "method is empty (no batches.default_method is configured)");
    else if (HasControl(method))
      errors.Add(line, "method", "method contains a control character");
    std::string_view email = get(kColEmail);
    if (!email.empty() && !LooksLikeEmail(email))
      errors.Add(line, "email", "email does not look like an e-mail address (expected name@example.com)");

    // Every row with a usable id is kept until the end, so that duplicates can be found and name
    // the line of the first; the list is dropped if the batch has any error.
    if (!id_ok) continue;
    id_hashes.push_back(IdHash(id));
    if (out.error_count == errors_before)
      out.payouts.emplace_back(line, amount, id, currency, account_number, account_name, operator_code, method,
                               email);
    else  // the batch is rejected anyway: keep only what duplicate detection needs
      out.payouts.emplace_back(line, 0, id, {}, {}, {}, {}, {}, {});
  }

  ForEachDuplicateId(out.payouts, std::move(id_hashes), [&](size_t later, size_t first) {
    errors.Add(out.payouts.line(later), "id",
               "id " + Shown(out.payouts.id(later)) + " appears twice in this batch; first on line " +
                   std::to_string(out.payouts.line(first)));
  });

  if (reader.stream_failed())
    errors.Add(0, "", "the batch file could not be read to its end (read error)");
  if (header_ok && out.rows == 0)
    errors.Add(0, "", "the file has a header but no payouts");
  if (first_excess_line != 0)
    errors.Add(first_excess_line, "",
               "the batch has " + std::to_string(out.rows) + " rows; at most " + std::to_string(max_rows) +
                   " are allowed (batches.max_rows); this is the first row over the limit");

  out.sha256 = sha.Finish();
  std::stable_sort(out.errors.begin(), out.errors.end(),
                   [](const BatchError& a, const BatchError& b) { return a.line < b.line; });
  if (!out.ok()) out.payouts.clear();  // nothing of a rejected batch may be sent
  return out;
}

// ---------------------------------------------------------------------------------------------
// errors.csv

namespace {
void AppendCsvField(std::string* out, std::string_view s) {
  bool quote = s.find_first_of(",\"\r\n") != std::string_view::npos ||
               (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) {
    out->append(s);
    return;
  }
  out->push_back('"');
  for (char c : s) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}
}  // namespace

std::string FormatErrorsCsv(const ValidatedBatch& batch) {
  constexpr size_t kMaxRows = 999;  // with the header, at most 1000 lines (docs/batches.md)
  std::string out = "line,column,error\n";
  const bool truncated = batch.error_count > batch.errors.size() || batch.errors.size() > kMaxRows;
  const size_t shown = truncated ? std::min(batch.errors.size(), kMaxRows - 1) : batch.errors.size();
  for (size_t i = 0; i < shown; ++i) {
    const BatchError& e = batch.errors[i];
    out += std::to_string(e.line);  // 0: the file as a whole (docs/results.md)
    out += ',';
    AppendCsvField(&out, e.column);
    out += ',';
    AppendCsvField(&out, e.message);
    out += '\n';
  }
  if (truncated) {
    out += "0,,";
    AppendCsvField(&out, "and " + std::to_string(batch.error_count - shown) +
                             " more errors not listed; fix the ones above and validate again");
    out += '\n';
  }
  return out;
}

}  // namespace payoutd
