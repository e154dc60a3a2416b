#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs them side by side for ${FUZZ_SECONDS:-30} s, so
# the whole run takes about FUZZ_SECONDS whatever the number of targets (CI keeps the whole step,
# build included, within 100 s; the last line says how long it took). Each starts from a copy of
# its seed corpus (tests/fuzz/corpus/<target>/; the repo is not modified) with its dictionary
# (tests/fuzz/<target>.dict), and ends with one line:
#   fuzz: fuzz_csv: 30 s, 212345 runs, cov 1834, ft 5120, corpus 950, valid batches 2301, amounts 9
# cov/ft/corpus are libFuzzer's final figures; the rest are the target's counts of inputs the code
# under test accepted (tests/fuzz/fuzz_accepted.h).
# Fails on a crash (its input is kept in build-fuzz/crashes/), and when a target accepted no input
# of some kind: the seeds always hold such inputs, so a zero means they no longer validate (the
# format changed) and everything after validation went unfuzzed; update the seeds with the format.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
started=$(date +%s)
secs=${FUZZ_SECONDS:-30}
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPAYOUTD_FUZZ=ON \
  -DPAYOUTD_TESTS=OFF -DPAYOUTD_BENCHMARKS=OFF >/dev/null
targets=(fuzz_csv fuzz_config fuzz_payout_json)
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
built=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crashes=build-fuzz/crashes
mkdir -p "$crashes"
# Undefined behaviour is a finding like a crash: halt on it, with a stack so the summary below can
# name the payoutd function.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pids=()
for t in "${targets[@]}"; do
  cp -r "tests/fuzz/corpus/$t" "$work/$t"
  echo "fuzz: $t for ${secs}s from $(ls "$work/$t" | wc -l) seeds"
  ./build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -print_final_stats=1 \
    -dict="tests/fuzz/$t.dict" -artifact_prefix="$crashes/$t-" "$work/$t" >"$work/$t.log" 2>&1 &
  pids+=($!)
done

# "fuzz: <target>: <s> s, <runs> runs, cov <n>, ft <n>, corpus <n>, <accepted counts>", from
# libFuzzer's last status line ("#<runs> DONE cov: <n> ft: <n> corp: <n>/<size> ...") and the
# target's "fuzz-accepted: ..." line. Returns 1 when a count is zero or either line is missing.
summarize() {
  local t=$1 log=$2 done_line accepted
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  accepted=$(sed -n 's/^fuzz-accepted: //p' "$log" | tail -n 1)
  if [ -z "$done_line" ] || [ -z "$accepted" ]; then
    echo "fuzz: $t: no final statistics:"; tail -n 20 "$log"; return 1
  fi
  echo "$done_line" | sed -E "s/^#([0-9]+).*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/fuzz: $t: \
$secs s, \1 runs, cov \2, ft \3, corpus \4, $accepted/"
  # UBSan is built recoverable here: undefined behaviour is reported and the run goes on, so it
  # would pass unseen; each distinct place is shown (UBSan reports a place once per run).
  local ub
  ub=$(grep -c 'runtime error:' "$log" || true)
  if [ "$ub" -gt 0 ]; then
    echo "fuzz: $t: $ub UndefinedBehaviorSanitizer report(s), not fatal in this build:"
    # Each report, then the first payoutd frame of its stack (the report's own place is often a
    # standard header).
    awk '/runtime error:/ { print "  " $0; want = 1; next }
         want && / in payoutd::/ { sub(/^ *#[0-9]+ 0x[0-9a-f]+ in /, ""); sub(/\(.* /, " at ");
                                   print "    in " $0; want = 0 }' "$log" | head -n 10
  fi
  if echo ", $accepted" | grep -qE ', [^,]* 0(,|$)'; then
    echo "fuzz: $t reached no accepted input of some kind (a count above is 0): do the seeds in" \
      "tests/fuzz/corpus/$t still validate?"
    return 1
  fi
}

failed=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    summarize "$t" "$work/$t.log" || failed=1
  else
    echo "fuzz: $t FAILED (input in $crashes/):"; tail -n 60 "$work/$t.log"; failed=1
  fi
done
now=$(date +%s)
echo "fuzz: done in $((now - started)) s (build $((built - started)) s, fuzzing $((now - built)) s)"
exit "$failed"
