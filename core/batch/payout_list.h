// PayoutList: the payouts of a batch in input order, stored compactly. A million-row batch is held
// in memory from validation until it is stored, so its payouts live in one arena of text (about the
// size of the CSV cells) and a 32-byte row each, instead of seven std::strings per payout.
//
// Reads like a std::vector<Payout>: size(), operator[], front()/back(), range-for; elements are
// materialised Payout values, so bind them as `const Payout&` or `Payout`. The list owns its text;
// a copy copies it. Not thread-safe: one thread appends, and no thread reads meanwhile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/batch/payout.h"

namespace payoutd {

class PayoutList {
 public:
  PayoutList();
  ~PayoutList();
  PayoutList(const PayoutList& other);
  PayoutList& operator=(const PayoutList& other);
  PayoutList(PayoutList&&) noexcept;
  PayoutList& operator=(PayoutList&&) noexcept;

  void push_back(const Payout& p);
  // The same without building a Payout first (the validator's hot path).
  void emplace_back(uint32_t line, int64_t amount_minor, std::string_view id,
                    std::string_view currency, std::string_view account_number,
                    std::string_view account_name, std::string_view operator_code,
                    std::string_view method, std::string_view email);
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  void clear();
  void reserve(size_t n);
  size_t capacity() const { return rows_.capacity(); }
  Payout operator[](size_t i) const;
  Payout at(size_t i) const;  // throws std::out_of_range
  Payout front() const { return (*this)[0]; }
  Payout back() const { return (*this)[size() - 1]; }
  // Cheap accessors that do not materialise a Payout.
  std::string_view id(size_t i) const;
  uint32_t line(size_t i) const { return rows_[i].line; }
  std::vector<Payout> ToVector() const;

  class const_iterator {
   public:
    using value_type = Payout;
    using difference_type = std::ptrdiff_t;
    const_iterator() = default;
    const_iterator(const PayoutList* list, size_t i) : list_(list), i_(i) {}
    Payout operator*() const { return (*list_)[i_]; }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) {
      auto t = *this;
      ++i_;
      return t;
    }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const PayoutList* list_ = nullptr;
    size_t i_ = 0;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size()}; }

 private:
  // 32 bytes a payout plus its text. The text holds id, account_number, account_name and email,
  // each as a varint length then its bytes. Currency, method and operator_code repeat from row to
  // row, so they are kept once in shared_ and referred to by index (kInline: in the text after the
  // others, once shared_ is full).
  static constexpr uint16_t kInline = 0xFFFF;
  struct Row {
    const char* text;
    int64_t amount_minor;
    uint32_t line;
    uint16_t shared[3];  // currency, method, operator_code
  };
  enum Shared { kCurrency = 0, kMethod = 1, kOperatorCode = 2 };
  uint16_t Intern(int kind, std::string_view value);
  std::string_view SharedField(const Row& r, int kind) const;
  const char* Store(size_t n);
  std::vector<Row> rows_;
  std::vector<std::string> shared_;
  std::map<std::string, uint16_t, std::less<>> shared_index_;
  uint16_t last_shared_[3] = {kInline, kInline, kInline};
  struct FreeBlock {
    void operator()(char* p) const;
  };
  std::vector<std::unique_ptr<char, FreeBlock>> blocks_;
  size_t block_used_ = 0;
  size_t block_size_ = 0;
};

}  // namespace payoutd
