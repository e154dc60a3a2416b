#!/usr/bin/env bash
# Sets everything up and runs all the tests: installs packages, builds (Release), runs ctest.
#   scripts/test.sh              plain build in build/
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/,
#                                with clang, whose -Wthread-safety checks the lock annotations
#   --build-only (after the above) builds and stops: CI starts slower checks beside the tests
#   --lane short|long  (after the above) runs one of the two lanes below only, without setting up
#                      or building (CI runs the sanitizer build beside the long lane)
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
flags=(-DCMAKE_BUILD_TYPE=Release)
long_labels='outage|long|hosts|slow'
lane=""
case " $* " in
  *" --lane short "*) lane=short ;;
  *" --lane long "*) lane=long ;;
esac
[ -n "$lane" ] || bash scripts/setup.sh
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  # -O1 -g1: sanitizer reports keep function names and lines, and the build stays quick for CI.
  flags=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" -DPAYOUTD_SANITIZE=ON
         -DPAYOUTD_BENCHMARKS=OFF -DCMAKE_CXX_COMPILER=clang++)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
jobs=$(nproc)
# The gateway-outage tests (label "outage"), the other long end-to-end ones (labels "long" and
# "slow") and the several-hosts tests (label "hosts", waiting out leases) spend minutes waiting
# and little CPU: they run beside the rest of the suite instead of after it.
case $lane in
  short) exec ctest --test-dir "$build" --output-on-failure -LE "$long_labels" -j"$jobs" ;;
  long) exec ctest --test-dir "$build" --output-on-failure -L "$long_labels" -j4 ;;
esac
cmake -S . -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j"$jobs"
case " $* " in *" --build-only "*) exit 0 ;; esac
outage_log=$(mktemp)
ctest --test-dir "$build" --output-on-failure -L "$long_labels" -j4 >"$outage_log" 2>&1 &
outage_pid=$!
status=0
ctest --test-dir "$build" --output-on-failure -LE "$long_labels" -j"$jobs" || status=$?
outage_status=0
wait "$outage_pid" || outage_status=$?
echo "== long end-to-end tests (labels outage, long, hosts, slow)"
cat "$outage_log"
rm -f "$outage_log"
[ "$status" -eq 0 ] && [ "$outage_status" -eq 0 ]
