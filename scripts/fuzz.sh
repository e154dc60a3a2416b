#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for ${FUZZ_SECONDS:-60} s. A crash fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
secs=${FUZZ_SECONDS:-60}
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPAYOUTD_FUZZ=ON \
  -DPAYOUTD_TESTS=OFF -DPAYOUTD_BENCHMARKS=OFF >/dev/null
targets=(fuzz_csv fuzz_config)
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
# The targets run side by side (one per core); each one's log is shown when it ends.
work=$(mktemp -d)
pids=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "fuzz: $t for ${secs}s"
  ./build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -print_final_stats=1 "$work/$t" >"$work/$t.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    echo "fuzz: $t: no crash"; tail -n 4 "$work/$t.log"
  else
    echo "fuzz: $t FAILED:"; tail -n 60 "$work/$t.log"; failed=1
  fi
done
rm -rf "$work"
exit "$failed"
