// PayoutList (core/batch/payout_list.h): the compact list a batch's payouts live in.
#include "core/batch/payout_list.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace payoutd {
namespace {

TEST(PayoutList, BehavesLikeAVectorOfPayouts) {
  PayoutList list;
  // Built whole: assigning short literals one by one trips GCC 12's -Wrestrict false positive.
  const Payout p{.line = 7,
                 .id = "x",
                 .amount_minor = 5,
                 .currency = "EUR",
                 .account_number = "DE00",
                 .account_name = "A long enough name to leave small-string storage",
                 .operator_code = "OP",
                 .method = "M",
                 .email = ""};
  list.push_back(p);
  PayoutList copy = list;
  list.clear();
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy.front().account_name, p.account_name);
  EXPECT_EQ(copy.ToVector().at(0).line, 7u);
  int n = 0;
  for (const Payout& q : copy) n += q.id == "x";
  EXPECT_EQ(n, 1);
  EXPECT_THROW(copy.at(1), std::out_of_range);
  PayoutList moved = std::move(copy);
  copy.push_back(p);  // NOLINT(bugprone-use-after-move): a moved-from list is still usable
  EXPECT_EQ(copy[0].currency, "EUR");
  EXPECT_EQ(moved[0].account_name, p.account_name);
}

TEST(PayoutList, RoundTripsLongFieldsAndManyDistinctSharedValues) {
  // More distinct operator codes than the shared table holds, and texts needing multi-byte lengths.
  PayoutList list;
  const std::string long_name(300, 'n');
  for (uint32_t i = 0; i < 70000; ++i) {
    Payout p;
    p.line = i + 2;
    p.id = "id" + std::to_string(i);
    p.amount_minor = i + 1;
    p.currency = i % 2 ? "EUR" : "USD";
    p.account_number = std::to_string(i);
    p.account_name = i % 1000 == 0 ? long_name : "A";
    p.operator_code = "OP" + std::to_string(i);
    p.method = "BANK_TRANSFER";
    p.email = i % 3 ? "" : "x@example.com";
    list.push_back(p);
  }
  ASSERT_EQ(list.size(), 70000u);
  for (uint32_t i : {0u, 1u, 1000u, 65534u, 65535u, 65536u, 69999u}) {
    Payout p = list[i];
    EXPECT_EQ(p.line, i + 2);
    EXPECT_EQ(p.id, "id" + std::to_string(i));
    EXPECT_EQ(list.id(i), p.id);
    EXPECT_EQ(p.amount_minor, i + 1);
    EXPECT_EQ(p.currency, i % 2 ? "EUR" : "USD");
    EXPECT_EQ(p.account_number, std::to_string(i));
    EXPECT_EQ(p.account_name, i % 1000 == 0 ? long_name : "A");
    EXPECT_EQ(p.operator_code, "OP" + std::to_string(i)) << i;
    EXPECT_EQ(p.method, "BANK_TRANSFER");
    EXPECT_EQ(p.email, i % 3 ? "" : "x@example.com");
  }
}

}  // namespace
}  // namespace payoutd
