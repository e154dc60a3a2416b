#!/usr/bin/env bash
# Line coverage of payoutd's own code by the whole ctest suite (unit, integration, daemon tests).
# Builds with gcc --coverage into build-cov/ (Debug, -O0, so lines map to the source), runs ctest,
# and prints with gcovr, one line per source file of core/, config/ and daemon/ (each file is one
# module: core/engine/payout_engine.cc the engine, daemon/service.cc the service, daemon/spool.cc the
# spool, core/gateway/gateway_client.cc + core/gateway/http_client.cc the gateway client, core/store/sqlite_store.cc the
# store...), then a subtotal per folder and the total:
#   coverage: core/engine/payout_engine.cc   812 / 903 lines   89.9%
#   coverage: total                         6123 / 7200 lines  85.0%
# Test code (tests/, the sandbox gateway, benchmarks/) is left out. The report is also written
# as build-cov/coverage.txt (gcovr's table) and build-cov/coverage/index.html (per line).
#   scripts/coverage.sh            build, run the suite, report
#   COVERAGE_TESTS=regex scripts/coverage.sh    only the ctest tests matching regex
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
ctest --test-dir "$build" --output-on-failure -j"$jobs" ${COVERAGE_TESTS:+-R "$COVERAGE_TESTS"} ||
  tests_ok=0

filters=(--filter 'core/' --filter 'config/' --filter 'daemon/')
mkdir -p "$build/coverage"
# No -j: gcovr 5.2 hangs instead of exiting when a parallel worker meets an error.
gcovr --root . --object-directory "$build" "${filters[@]}" \
  --txt "$build/coverage.txt" --json-summary "$build/coverage.json" \
  --html-details "$build/coverage/index.html" >/dev/null 2>"$build/gcovr.log" ||
  { cat "$build/gcovr.log"; exit 1; }
python3 - "$build/coverage.json" <<'EOF'
import json, sys
files = json.load(open(sys.argv[1]))["files"]
def line(name, covered, total):
    pct = 100.0 * covered / total if total else 100.0
    print(f"coverage: {name:<36} {covered:>5} / {total:<5} lines {pct:5.1f}%")
folders = {}
for f in sorted(files, key=lambda f: f["filename"]):
    if f["line_total"] == 0:
        continue
    line(f["filename"], f["line_covered"], f["line_total"])
    c, t = folders.get(f["filename"].split("/")[0], (0, 0))
    folders[f["filename"].split("/")[0]] = (c + f["line_covered"], t + f["line_total"])
for folder, (c, t) in sorted(folders.items()):
    line(folder + "/ (all files)", c, t)
line("total", sum(c for c, _ in folders.values()), sum(t for _, t in folders.values()))
EOF
echo "coverage: per line in $build/coverage/index.html"
if [ "$tests_ok" -eq 0 ]; then
  echo "coverage: some tests FAILED (figures above are of this partial run)"
  exit 1
fi
