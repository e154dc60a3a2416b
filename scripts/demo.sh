#!/usr/bin/env bash
# The main job, end to end, on this machine: installs packages, builds payoutd and the sandbox
# gateway, starts both on 127.0.0.1, drops a sample batch (a few payouts are meant to fail), shows
# progress, prints the results and the per-currency summary, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh

echo "== building payoutd and payout-sandbox (Release)"
cmake -S . -B ${BUILD:-build} -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build ${BUILD:-build} -j"$(nproc)" --target payoutd payout-sandbox

run=$(mktemp -d /tmp/payoutd-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

umask 077
printf 'demo-merchant-secret-%s\n' "$RANDOM$RANDOM" > "$run/secret.key"
mkdir -p "$run/spool"

echo "== starting the sandbox gateway (accounts ending 13 fail, operator BNK_REJECT is refused)"
./${BUILD:-build}/tests/sandbox/payout-sandbox --listen 127.0.0.1:0 --port-file "$run/sandbox.port" \
  --secret-file "$run/secret.key" --merchant DEMO_MERCHANT --final-after-ms 1500 \
  >"$run/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run/sandbox.port" ] && break; sleep 0.1; done
gw_port=$(cat "$run/sandbox.port")

cat > "$run/payoutd.yaml" <<YAML
gateway:
  base_url: http://127.0.0.1:${gw_port}
  timeout: 5s
auth:
  merchant_code: DEMO_MERCHANT
  secret_file: secret.key
limits:
  requests_per_second: 20
  burst: 5
polling:
  initial_delay: 500ms
  max_interval: 2s
spool:
  dir: spool
  settle: 500ms
state:
  path: state/payoutd.db
metrics:
  listen: 127.0.0.1:0
log:
  level: info
YAML

echo "== payoutd check"
./${BUILD:-build}/daemon/payoutd check --config "$run/payoutd.yaml"

echo "== starting payoutd run (log: $run/payoutd.log)"
./${BUILD:-build}/daemon/payoutd run --config "$run/payoutd.yaml" >"$run/payoutd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q payoutd.ready "$run/payoutd.log" && break; sleep 0.1; done
metrics_port=$(grep -o 'port [0-9]*' "$run/payoutd.log" | head -1 | awk '{print $2}')

batch=payroll-demo
cp samples/payroll-demo.csv "$run/spool/inbox/$batch.csv.part"
mv "$run/spool/inbox/$batch.csv.part" "$run/spool/inbox/$batch.csv"
echo "== dropped $batch.csv into $run/spool/inbox; waiting for results"
for i in $(seq 1 120); do
  [ -f "$run/spool/done/$batch.summary.json" ] && break
  if [ $((i % 4)) -eq 1 ]; then
    ./${BUILD:-build}/daemon/payoutd status --config "$run/payoutd.yaml" "$batch" 2>/dev/null | sed -n '2p' || true
  fi
  sleep 0.5
done
if [ ! -f "$run/spool/done/$batch.summary.json" ]; then
  echo "demo: no results after 60s; payoutd log:" >&2
  tail -n 30 "$run/payoutd.log" >&2
  exit 1
fi

echo
echo "== results: $run/spool/done/$batch.results.csv"
column -s, -t < "$run/spool/done/$batch.results.csv" | cut -c1-150
echo
echo "== summary: $run/spool/done/$batch.summary.json"
cat "$run/spool/done/$batch.summary.json"
echo
if [ -n "${metrics_port:-}" ]; then
  echo "== metrics were at http://127.0.0.1:${metrics_port}/metrics, e.g.:"
  curl -s "http://127.0.0.1:${metrics_port}/metrics" | grep -E '^payoutd_(payouts_total|batches_total|http_requests_total)' | head -12
fi
echo
echo "== stopping payoutd and the sandbox"
cleanup
pids=()
echo "demo done; files kept in $run"
