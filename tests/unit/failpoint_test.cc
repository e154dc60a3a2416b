// Failpoints act at the hit they are armed for, once, and a crash is a real SIGKILL.
#include "core/base/failpoint.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace payoutd {
namespace {

TEST(Failpoint, AnErrorFiresOnceAtTheArmedHit) {
  failpoint::DisarmAll();
  failpoint::Arm("store.commit", failpoint::Action::kError, 3);
  EXPECT_FALSE(failpoint::Hit("store.commit"));
  EXPECT_FALSE(failpoint::Hit("other.point"));
  EXPECT_FALSE(failpoint::Hit("store.commit"));
  EXPECT_TRUE(failpoint::Hit("store.commit"));
  EXPECT_FALSE(failpoint::Hit("store.commit")) << "once only";
}

TEST(Failpoint, TheSpecArmsSeveralAndRefusesNonsense) {
  failpoint::DisarmAll();
  ASSERT_TRUE(failpoint::ArmFromSpec("a=error@2,b=error"));
  EXPECT_TRUE(failpoint::Hit("b"));
  EXPECT_FALSE(failpoint::Hit("a"));
  EXPECT_TRUE(failpoint::Hit("a"));
  for (const char* bad : {"a", "=error", "a=explode", "a=error@0", "a=error@x", "a=crash@-1"})
    EXPECT_FALSE(failpoint::ArmFromSpec(bad)) << bad;
  EXPECT_FALSE(failpoint::Hit("a"));
}

TEST(Failpoint, ACrashIsASigkillOfTheProcess) {
  EXPECT_EXIT(
      {
        failpoint::Arm("spool.claimed", failpoint::Action::kCrash);
        failpoint::Hit("spool.claimed");
      },
      ::testing::KilledBySignal(SIGKILL), "failpoint spool.claimed");
}

#ifdef PAYOUTD_FAILPOINTS
TEST(Failpoint, TheMacroIsBuiltIntoTestBuilds) {
  failpoint::DisarmAll();
  failpoint::Arm("x", failpoint::Action::kError);
  EXPECT_TRUE(PAYOUTD_FAILPOINT("x"));
}
#endif

}  // namespace
}  // namespace payoutd
