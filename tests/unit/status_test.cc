// Status and Result: codes, messages, and the propagation macros.
#include "core/base/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace payoutd {
namespace {

TEST(Status, DefaultIsOkWithNoMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
}

TEST(Status, EachConstructorCarriesItsCodeAndMessage) {
  EXPECT_EQ(Status::InvalidArgument("a").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Status::NotFound("a").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::AlreadyExists("a").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Status::FailedPrecondition("a").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Status::Aborted("a").code(), StatusCode::kAborted);
  EXPECT_EQ(Status::Internal("a").code(), StatusCode::kInternal);
  EXPECT_EQ(Status::Unavailable("disk full").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Status::Unavailable("disk full").message(), "disk full");
  EXPECT_FALSE(Status::NotFound("").ok());
  EXPECT_EQ(StatusCodeName(StatusCode::kAlreadyExists), "ALREADY_EXISTS");
}

TEST(Status, WithPrefixKeepsTheCode) {
  Status s = Status::NotFound("no batch 'b1'").WithPrefix("status: ");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "status: no batch 'b1'");
  EXPECT_TRUE(Status::Ok().WithPrefix("x: ").ok());
}

TEST(Result, HoldsAValue) {
  Result<std::string> v = std::string("seven");
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(*v, "seven");
  EXPECT_EQ(v.code(), StatusCode::kOk);
}

TEST(Result, HoldsAFailure) {
  Result<int> e = Status::Unavailable("busy");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.code(), StatusCode::kUnavailable);
  EXPECT_EQ(e.error(), "busy");
}

TEST(ResultDeathTest, BuiltFromAnOkStatusAborts) {
  EXPECT_DEATH({ Result<int> r = Status::Ok(); }, "Result built from an OK Status");
}

Status FailIf(bool fail) {
  return fail ? Status::Unavailable("failed") : Status::Ok();
}

Result<std::unique_ptr<int>> MakeIf(bool fail, int v) {
  if (fail) return Status::NotFound("nothing");
  return std::make_unique<int>(v);
}

Status Chain(bool first_fails, bool second_fails, int* steps) {
  PAYOUTD_RETURN_IF_ERROR(FailIf(first_fails));
  ++*steps;
  PAYOUTD_RETURN_IF_ERROR(FailIf(second_fails));
  ++*steps;
  return Status::Ok();
}

Result<int> Sum(bool first_fails, bool second_fails) {
  PAYOUTD_ASSIGN_OR_RETURN(std::unique_ptr<int> a, MakeIf(first_fails, 2));  // move-only
  PAYOUTD_ASSIGN_OR_RETURN(auto b, MakeIf(second_fails, 3));
  return *a + *b;
}

TEST(StatusMacros, ReturnIfErrorStopsAtTheFirstFailure) {
  int steps = 0;
  EXPECT_TRUE(Chain(false, false, &steps).ok());
  EXPECT_EQ(steps, 2);
  steps = 0;
  Status s = Chain(false, true, &steps);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(steps, 1);
  steps = 0;
  EXPECT_FALSE(Chain(true, false, &steps).ok());
  EXPECT_EQ(steps, 0);
}

TEST(StatusMacros, AssignOrReturnDeclaresOrReturnsTheFailure) {
  EXPECT_EQ(*Sum(false, false), 5);
  EXPECT_EQ(Sum(true, false).code(), StatusCode::kNotFound);
  EXPECT_EQ(Sum(false, true).error(), "nothing");
}

}  // namespace
}  // namespace payoutd
