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
for t in "${targets[@]}"; do
  corpus=$(mktemp -d)
  echo "fuzz: $t for ${secs}s"
  ./build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -print_final_stats=1 "$corpus" 2>&1 | tail -n 4
  rm -rf "$corpus"
done
