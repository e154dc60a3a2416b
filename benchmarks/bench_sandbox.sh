#!/bin/sh
# Throughput of payout-sandbox on one core, driven by wrk on another (keep-alive, 64 connections).
# Usage: benchmarks/bench_sandbox.sh [BUILD_DIR] [SECONDS]   (BUILD_DIR default: build)
# Prints wrk's figures and the sandbox's own CPU time, so a busy machine can be told apart from a
# slow server (requests per sandbox CPU-second).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
secs=${2:-5}
bin=$build/tests/sandbox/payout-sandbox
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'bench-secret' > "$work/secret"

start() {  # start the sandbox on core 0 with extra flags; sets pid and port
  rm -f "$work/port"
  taskset -c 0 "$bin" --listen 127.0.0.1:0 --port-file "$work/port" --final-after-ms 0 \
    --max-arrivals 100000 --no-callbacks "$@" >/dev/null &
  pid=$!
  while [ ! -s "$work/port" ]; do sleep 0.05; done
  port=$(cat "$work/port")
}
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
run() {  # run NAME WRK_ARGS...
  name=$1; shift
  c0=$(cpu)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" "$@")
  c1=$(cpu)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  ticks=$((c1 - c0))
  echo "$name: $rps req/s wall; $reqs requests in $ticks sandbox CPU ticks ($(getconf CLK_TCK)/s)" \
       "= $(awk -v r="$reqs" -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN{ if (t>0) printf "%d", r*hz/t; else print "n/a" }') req per CPU-second"
}
body='{"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},"paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Test account","accountNumber":"11223344"},"paymentOperatorCode":"BNK_000"}}'

start --no-auth
curl -s -o /dev/null -X POST "http://127.0.0.1:$port/payouts/EXIST-1" -H 'X-API-Version: 2' -d "$body"
run "GET existing, auth off" -s "$here/sandbox_get.lua" "http://127.0.0.1:$port/payouts/EXIST-1"
run "POST unique, auth off" -s "$here/sandbox_post_unique.lua" "http://127.0.0.1:$port/payouts/x"
kill $pid; wait $pid 2>/dev/null || true

start --secret-file "$work/secret" --merchant BENCH
TOKEN=$(python3 -c '
import base64,hashlib,hmac,json,time
b=lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
n=int(time.time()); h=b(b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}")
c=b(json.dumps({"operations":["POST /payouts/EXIST-1","GET /payouts/EXIST-1"],"iat":n,"exp":n+3600,"jti":"bench","sub":"BENCH"}).encode())
print(h+"."+c+"."+b(hmac.new(b"bench-secret",(h+"."+c).encode(),hashlib.sha256).digest()))')
export TOKEN
curl -s -o /dev/null -X POST "http://127.0.0.1:$port/payouts/EXIST-1" -H 'X-API-Version: 2' -H "Authorization: Bearer $TOKEN" -d "$body"
run "GET existing, auth on (HS256 verify per request)" -s "$here/sandbox_get.lua" "http://127.0.0.1:$port/payouts/EXIST-1"
