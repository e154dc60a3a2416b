// Failpoints: named places at the durable steps of payoutd where a test can make the process die
// (as SIGKILL would) or a step fail, at the Nth time the place is reached. They prove recovery on
// purpose instead of by a random kill (tests/integration/recovery_test.cc).
//
//   if (PAYOUTD_FAILPOINT("report.before_mark_reported")) return Status::Unavailable("failpoint");
//
// Armed by the environment, read once at the first hit:
//   PAYOUTD_FAILPOINTS="spool.claimed=crash@1,store.commit=error@3"
// (crash: SIGKILL to ourselves, nothing flushed, nothing cleaned; error: the macro is true once,
// at that hit), or from a test in-process with failpoint::Arm.
//
// Built in only with -DPAYOUTD_FAILPOINTS=ON (the default for builds with tests); the package and
// any build without tests have none: the macro is the constant false and costs nothing. Where
// built in and not armed, a hit is one relaxed atomic load.
//
// Threading: Hit and Arm may be called from any thread.
#pragma once

#include <string>
#include <string_view>

namespace payoutd::failpoint {

enum class Action { kCrash, kError };

// Counts a hit of `name`; at the armed hit, crashes (kCrash, never returns) or returns true once.
bool Hit(std::string_view name);
// Arms `name` to act at its `nth` hit from now (1 = the next). Replaces an earlier arming.
void Arm(std::string_view name, Action action, int nth = 1);
void DisarmAll();
// Parses a PAYOUTD_FAILPOINTS value; false (and nothing armed) when malformed.
bool ArmFromSpec(std::string_view spec);

}  // namespace payoutd::failpoint

#ifdef PAYOUTD_FAILPOINTS
#define PAYOUTD_FAILPOINT(name) (::payoutd::failpoint::Hit(name))
#else
#define PAYOUTD_FAILPOINT(name) (false)
#endif
