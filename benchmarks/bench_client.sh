#!/usr/bin/env bash
# POST rate of wrk, hey and our gateway client against one payout-sandbox (auth off), each with 64
# connections, and our client's CPU per request. Prints each rate and ours / wrk (target >= 0.6).
#
#   benchmarks/bench_client.sh [BUILD_DIR]      # default: build-release
#
# BUILD_DIR must hold a Release build of bench_client and payout-sandbox:
#   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-release -j2 --target bench_client payout-sandbox
# Env: ROUNDS [3], SANDBOX_BIN (the sandbox is always built -O2, so any build folder's will do), SECONDS_WRK [5], N_HEY [40000], N_CLIENT [60000], CONNECTIONS [64].
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build-release}
sandbox_bin=${SANDBOX_BIN:-$build/tests/sandbox/payout-sandbox}
client_bin=$build/benchmarks/bench_client
c=${CONNECTIONS:-64}
for b in "$sandbox_bin" "$client_bin"; do [[ -x $b ]] || { echo "missing $b (see header)" >&2; exit 2; }; done
for t in wrk hey; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

tmp=$(mktemp -d)
sandbox_pid=
cleanup() { [[ -n $sandbox_pid ]] && kill "$sandbox_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start_sandbox() {
  rm -f "$tmp/port"
  "$sandbox_bin" --no-auth --no-callbacks --listen 127.0.0.1:0 --port-file "$tmp/port" --max-arrivals 0 \
    >"$tmp/sandbox.out" 2>&1 &
  sandbox_pid=$!
  for _ in $(seq 100); do [[ -s $tmp/port ]] && break; sleep 0.05; done
  port=$(cat "$tmp/port")
}
stop_sandbox() { kill "$sandbox_pid"; wait "$sandbox_pid" 2>/dev/null || true; sandbox_pid=; }

cat >"$tmp/body.json" <<'JSON'
{"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},"paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Bench Account","accountNumber":"DE89370400440532013000"},"paymentOperatorCode":"BNK_000"}}
JSON

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The machine is shared, so the tools take turns, ROUNDS times, each against a fresh sandbox (same
# ledger size at the start of each run); the medians are compared.
wrk_rates=() hey_rates=() our_rates=() cpus=()
for round in $(seq "${ROUNDS:-3}"); do
  start_sandbox
  wrk_rates+=("$(BENCH_PREFIX=WRK$round wrk -t2 -c"$c" -d"${SECONDS_WRK:-5}s" -s "$here/bench_client_post.lua" \
    "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')")
  stop_sandbox

  start_sandbox
  # hey cannot vary the URL: one id, so after the first POST the sandbox answers 409 (no new payout).
  hey_rates+=("$(hey -n "${N_HEY:-40000}" -c "$c" -m POST -T application/json -H "X-API-Version: 2" \
    -D "$tmp/body.json" "http://127.0.0.1:$port/payouts/HEY-1" | awk '/Requests\/sec/ {print $2}')")
  stop_sandbox

  start_sandbox
  ours=$("$client_bin" --url "http://127.0.0.1:$port" --n "${N_CLIENT:-60000}" --connections "$c" --prefix "OURS$round")
  stop_sandbox
  echo "round $round: wrk ${wrk_rates[-1]}  hey ${hey_rates[-1]}  ours: $ours"
  our_rates+=("$(sed -E 's/.* rate=([0-9.]+).*/\1/' <<<"$ours")")
  cpus+=("$(sed -E 's/.*cpu_us_per_request=([0-9.]+).*/\1/' <<<"$ours")")
done
wrk_rate=$(printf '%s\n' "${wrk_rates[@]}" | median)
hey_rate=$(printf '%s\n' "${hey_rates[@]}" | median)
our_rate=$(printf '%s\n' "${our_rates[@]}" | median)
cpu_us=$(printf '%s\n' "${cpus[@]}" | median)

printf 'median wrk  (unique ids, %s conns):        %8.0f req/s\n' "$c" "$wrk_rate"
printf 'median hey  (one id -> 409s, %s conns):    %8.0f req/s\n' "$c" "$hey_rate"
printf 'median ours (unique ids, %s in flight):    %8.0f req/s\n' "$c" "$our_rate"
printf 'ours / wrk = %.2f (target >= 0.6); our CPU per request = %s us (user+sys, median)\n' \
  "$(echo "$our_rate / $wrk_rate" | bc -l)" "$cpu_us"
