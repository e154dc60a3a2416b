#!/usr/bin/env bash
# Parse+validate a 1,000,000-row batch (~110 MB) with payoutd's validator, and read the same file
# with Python's csv.DictReader (parsing only, no validation: a lower bound for a Python validator).
# Prints both and the ratio. Build in Release first:
#   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPAYOUTD_TESTS=OFF
#   cmake --build build-release --target bench_validate
#   benchmarks/bench_validate.sh [build-release] [rows]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build-release}"
rows="${2:-1000000}"
bin="$build/benchmarks/bench_validate"
[[ -x "$bin" ]] || { echo "no $bin; build the bench_validate target in Release first" >&2; exit 2; }
file="$(mktemp --suffix=.csv)"
trap 'rm -f "$file"' EXIT
rm -f "$file"  # bench_validate generates the file when it does not exist

"$bin" --rows "$rows" --file "$file" --keep >/dev/null  # generate (not timed)
echo "== payoutd (C++): parse + validate"
cpp_out="$("$bin" --file "$file")"
echo "$cpp_out"
cpp_s="$(sed -n 's/^parse+validate: \([0-9.]*\) s.*/\1/p' <<<"$cpp_out")"
cpp_cpu="$(sed -n 's/^cpu: \([0-9.]*\) s.*/\1/p' <<<"$cpp_out")"
parse_s="$(sed -n 's/^parse only: \([0-9.]*\) s.*/\1/p' <<<"$cpp_out")"
parse_cpu="$(sed -n 's/^parse only: .*cpu \([0-9.]*\) s.*/\1/p' <<<"$cpp_out")"

echo "== Python csv.DictReader: parse only"
read -r py_s py_cpu < <(python3 "$here/bench_validate_dictreader.py" "$file")

python3 - "$cpp_s" "$py_s" "$cpp_cpu" "$py_cpu" "$parse_s" "$parse_cpu" <<'PY'
import sys
cpp, py, cpp_cpu, py_cpu, parse, parse_cpu = map(float, sys.argv[1:])
print("== ratios against csv.DictReader (parse only)")
print(f"payoutd parse+validate+sha256, wall: {py / cpp:.1f}x ({cpp:.3f} s vs {py:.3f} s)")
print(f"payoutd parse+validate+sha256, CPU:  {py_cpu / cpp_cpu:.1f}x ({cpp_cpu:.3f} s vs {py_cpu:.3f} s)")
print(f"CsvReader parse only, wall:          {py / parse:.1f}x ({parse:.3f} s vs {py:.3f} s)")
print(f"CsvReader parse only, CPU:           {py_cpu / parse_cpu:.1f}x ({parse_cpu:.3f} s vs {py_cpu:.3f} s)")
PY
