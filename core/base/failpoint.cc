#include "core/base/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace payoutd::failpoint {
namespace {

struct Armed {
  Action action = Action::kCrash;
  int remaining = 1;  // hits until it acts
};

std::mutex mu;
std::map<std::string, Armed, std::less<>>& Points() {
  static std::map<std::string, Armed, std::less<>> points;
  return points;
}
std::atomic<bool> any_armed{false};
std::once_flag from_env;

void ReadEnvironment() {
  const char* spec = std::getenv("PAYOUTD_FAILPOINTS");
  if (spec && *spec && !ArmFromSpec(spec)) {
    std::fprintf(stderr,
                 "payoutd: PAYOUTD_FAILPOINTS is malformed (want name=crash|error@N,...)\n");
    std::abort();
  }
}

}  // namespace

bool Hit(std::string_view name) {
  std::call_once(from_env, ReadEnvironment);
  if (!any_armed.load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> lock(mu);
  auto it = Points().find(name);
  if (it == Points().end() || --it->second.remaining > 0) return false;
  const Action action = it->second.action;
  Points().erase(it);
  any_armed.store(!Points().empty(), std::memory_order_relaxed);
  if (action == Action::kError) return true;
  std::fprintf(stderr, "payoutd: failpoint %.*s: crashing\n", static_cast<int>(name.size()),
               name.data());
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

void Arm(std::string_view name, Action action, int nth) {
  std::call_once(from_env, ReadEnvironment);
  std::lock_guard<std::mutex> lock(mu);
  Points()[std::string(name)] = Armed{action, nth < 1 ? 1 : nth};
  any_armed.store(true, std::memory_order_relaxed);
}

void DisarmAll() {
  std::lock_guard<std::mutex> lock(mu);
  Points().clear();
  any_armed.store(false, std::memory_order_relaxed);
}

bool ArmFromSpec(std::string_view spec) {
  std::map<std::string, Armed, std::less<>> parsed;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    const size_t eq = item.find('=');
    const size_t at = item.find('@');
    if (eq == std::string_view::npos || eq == 0) return false;
    std::string_view what =
        item.substr(eq + 1, at == std::string_view::npos ? std::string_view::npos : at - eq - 1);
    Armed a;
    if (what == "crash")
      a.action = Action::kCrash;
    else if (what == "error")
      a.action = Action::kError;
    else
      return false;
    if (at != std::string_view::npos) {
      std::string_view n = item.substr(at + 1);
      auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), a.remaining);
      if (ec != std::errc() || ptr != n.data() + n.size() || a.remaining < 1) return false;
    }
    parsed[std::string(item.substr(0, eq))] = a;
  }
  std::lock_guard<std::mutex> lock(mu);
  for (auto& [name, a] : parsed) Points()[name] = a;
  any_armed.store(!Points().empty(), std::memory_order_relaxed);
  return true;
}

}  // namespace payoutd::failpoint
