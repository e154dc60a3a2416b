#!/usr/bin/env bash
# Line coverage of payoutd's own code by the whole ctest suite (unit, integration, daemon tests).
# Builds with gcc --coverage into build-cov/ (Debug, -O0, so lines map to the source), runs ctest,
# and prints with gcovr, one line per source file of core/, config/ and daemon/, then a subtotal
# per module folder (core/engine/, core/gateway/, ...) and per top folder, and the total:
#   coverage: core/engine/payout_engine.cc   812 / 903 lines   89.9%
#   coverage: core/engine/ (all files)       880 / 975 lines   90.3%
#   coverage: total                         6123 / 7200 lines  85.0%
# and last the parts whose every line decides whether a payout is paid once and reported, each
# held to at least 95% (COVERAGE_GOAL):
#   coverage goal: engine  core/engine/       880 / 975 lines   90.3%  BELOW 95%
#   coverage goal: service daemon/service.cc  ...                      ok
#   coverage goal: spool   daemon/spool.cc    ...
# A whole-suite run below the goal exits non-zero (a subset of the tests only reports).
# Test code (tests/, the sandbox gateway, benchmarks/) is left out. The report is also written
# as build-cov/coverage.txt (gcovr's table) and build-cov/coverage/index.html (per line).
#   scripts/coverage.sh            build, run the suite, report
#   COVERAGE_TESTS=regex scripts/coverage.sh    only the ctest tests matching regex
#   COVERAGE_EXCLUDE=regex scripts/coverage.sh  all but those (e.g. what a new test adds)
# Slow (an unoptimised build and the whole suite): not part of CI, run it by hand. Exits non-zero
# when a test fails, after printing the coverage of the run anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# gcovr reads gcc's .gcda files; it is only needed here, so it is installed here, not in setup.sh.
if ! command -v gcovr >/dev/null 2>&1; then
  echo "coverage: installing gcovr"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends gcovr \
    >/dev/null || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    $sudo apt-get install -y -qq --no-install-recommends gcovr >/dev/null; }
fi

build=build-cov
# A ccache base_dir rewrites source paths relative to each object's folder, and gcovr then cannot
# find the sources: this build keeps absolute paths (cached apart from the other builds).
export CCACHE_BASEDIR=
jobs=$(nproc)
# gcc, whatever CXX says: gcovr reads gcc's gcov format (clang's differs). Atomic counters: the
# daemon and engine run several threads, and plain counters raced into negative branch counts
# that gcovr refuses to parse.
CXX=g++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g" \
  "-DCMAKE_CXX_FLAGS=--coverage -fprofile-update=atomic" -DCMAKE_EXE_LINKER_FLAGS=--coverage \
  -DPAYOUTD_BENCHMARKS=OFF -DPAYOUTD_FUZZ=OFF >/dev/null
cmake --build "$build" -j"$jobs"
# Counts add up across runs; start from zero so the figures are this run's.
find "$build" -name '*.gcda' -delete
tests_ok=1
ctest --test-dir "$build" --output-on-failure -j"$jobs" ${COVERAGE_TESTS:+-R "$COVERAGE_TESTS"} \
  ${COVERAGE_EXCLUDE:+-E "$COVERAGE_EXCLUDE"} || tests_ok=0

filters=(--filter 'core/' --filter 'config/' --filter 'daemon/')
mkdir -p "$build/coverage"
# No -j: gcovr 5.2 hangs instead of exiting when a parallel worker meets an error.
gcovr --root . --object-directory "$build" "${filters[@]}" \
  --txt "$build/coverage.txt" --json-summary "$build/coverage.json" \
  --html-details "$build/coverage/index.html" >/dev/null 2>"$build/gcovr.log" ||
  { cat "$build/gcovr.log"; exit 1; }
goal_ok=1
python3 - "$build/coverage.json" "${COVERAGE_GOAL:-95}" <<'EOF' || goal_ok=0
import json, sys
files = json.load(open(sys.argv[1]))["files"]
goal = float(sys.argv[2])
def pct(covered, total):
    return 100.0 * covered / total if total else 100.0
def line(name, covered, total, prefix="coverage:", width=36):
    print(f"{prefix} {name:<{width}} {covered:>5} / {total:<5} lines {pct(covered, total):5.1f}%",
          end="")
sums = {}  # a file, or a folder ending in "/" -> (covered, total)
def add(key, f):
    c, t = sums.get(key, (0, 0))
    sums[key] = (c + f["line_covered"], t + f["line_total"])
for f in sorted(files, key=lambda f: f["filename"]):
    if f["line_total"] == 0:
        continue
    line(f["filename"], f["line_covered"], f["line_total"]); print()
    parts = f["filename"].split("/")
    add(f["filename"], f)
    add(parts[0] + "/", f)
    if len(parts) > 2:
        add("/".join(parts[:2]) + "/", f)
for key in sorted(k for k in sums if k.endswith("/")):
    line(key + " (all files)", *sums[key]); print()
tops = [k for k in sums if k.endswith("/") and k.count("/") == 1]
line("total", sum(sums[k][0] for k in tops), sum(sums[k][1] for k in tops)); print()
ok = True
for name, key in (("engine", "core/engine/"), ("service", "daemon/service.cc"),
                  ("spool", "daemon/spool.cc")):
    c, t = sums.get(key, (0, 0))
    line(f"{name:<8}{key}", c, t, "coverage goal:", 29)
    below = t == 0 or pct(c, t) < goal
    ok = ok and not below
    print(f"  BELOW {goal:g}%" if below else "  ok")
sys.exit(0 if ok else 1)
EOF
echo "coverage: per line in $build/coverage/index.html"
if [ "$tests_ok" -eq 0 ]; then
  echo "coverage: some tests FAILED (figures above are of this partial run)"
  exit 1
fi
if [ "$goal_ok" -eq 0 ] && [ -z "${COVERAGE_TESTS:-}${COVERAGE_EXCLUDE:-}" ]; then
  echo "coverage: below the goal of ${COVERAGE_GOAL:-95}% (the coverage goal lines above)"
  exit 1
fi
