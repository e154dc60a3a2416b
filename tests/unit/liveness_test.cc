// Liveness: a token is true while its Liveness exists and has not ended, whatever copies exist.
#include "core/base/liveness.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>

namespace payoutd {
namespace {

TEST(Liveness, TokenIsTrueWhileTheOwnerLives) {
  auto owner = std::make_unique<Liveness>();
  Liveness::Token token = owner->token();
  Liveness::Token copy = token;
  EXPECT_TRUE(token);
  EXPECT_TRUE(copy);
  owner.reset();
  EXPECT_FALSE(token);
  EXPECT_FALSE(copy);
}

TEST(Liveness, EndTurnsTokensFalseBeforeTheOwnerIsGone) {
  Liveness owner;
  Liveness::Token token = owner.token();
  owner.End();
  EXPECT_FALSE(token);
  EXPECT_FALSE(owner.token());
}

TEST(Liveness, ATokenDoesNotKeepItsOwnerAlive) {
  std::optional<Liveness::Token> token;
  {
    Liveness owner;
    token = owner.token();
  }
  EXPECT_FALSE(*token);
}

}  // namespace
}  // namespace payoutd
