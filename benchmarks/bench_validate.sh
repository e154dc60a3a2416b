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
cpp_out="$(/usr/bin/time -f 'cpu: %U s user + %S s sys' "$bin" --file "$file" 2>&1)"
echo "$cpp_out"
cpp_s="$(sed -n 's/^parse+validate: \([0-9.]*\) s.*/\1/p' <<<"$cpp_out")"

echo "== Python csv.DictReader: parse only"
py_s="$(python3 "$here/bench_validate_dictreader.py" "$file")"

python3 - "$cpp_s" "$py_s" <<'PY'
import sys
cpp, py = float(sys.argv[1]), float(sys.argv[2])
print(f"ratio: payoutd is {py / cpp:.1f}x faster than csv.DictReader ({cpp:.3f} s vs {py:.3f} s)")
PY
