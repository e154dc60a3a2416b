#!/usr/bin/env bash
# The main job, end to end, on this machine: installs packages, builds payoutd and the sandbox
# gateway, starts both on 127.0.0.1, drops a sample batch (a few payouts are meant to fail), shows
# progress; then the finance controls: a large batch approved by two SSH keys, and a batch held
# then cancelled; finally prints the sample batch's results and per-currency summary, and stops
# everything it started.
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
approvals:
  # Dual control for large batches (docs/approvals.md): above 50,000.00 USD two people must sign.
  allowed_signers: allowed_signers
  large_above: {USD: "50000.00"}
  large_required: 2
control:
  socket: control.sock
metrics:
  listen: 127.0.0.1:0
log:
  level: info
YAML

echo "== two approvers' SSH keys (alice, bob) and the allowed_signers file"
mkdir -p "$run/keys"
: > "$run/allowed_signers"
for who in alice bob; do
  ssh-keygen -q -t ed25519 -N "" -C "$who@example.com" -f "$run/keys/$who"
  echo "$who@example.com namespaces=\"payoutd-batch\" $(cat "$run/keys/$who.pub")" >> "$run/allowed_signers"
done
cat "$run/allowed_signers" | cut -c1-90

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

wait_for() {  # wait_for FILE SECONDS
  for _ in $(seq 1 $(($2 * 10))); do [ -e "$1" ] && return 0; sleep 0.1; done
  echo "demo: $1 did not appear within $2 s; payoutd log:" >&2
  tail -n 30 "$run/payoutd.log" >&2
  exit 1
}
payoutd() { ./${BUILD:-build}/daemon/payoutd "$@" --config "$run/payoutd.yaml"; }
drop() {  # drop BATCH ROWS AMOUNT
  { echo "id,amount,currency,account_number,account_name,operator_code"
    for i in $(seq 1 "$2"); do echo "$1-$i,$3,USD,DE8937040044053201$((1000 + i)),Payee $i,BNK_000"; done
  } > "$run/spool/inbox/$1.csv.part"
  mv "$run/spool/inbox/$1.csv.part" "$run/spool/inbox/$1.csv"
}

echo
echo "== approvals: bonus-demo totals 60,000.00 USD, above large_above: it waits for two signers"
drop bonus-demo 3 20000.00
wait_for "$run/spool/approval/bonus-demo.csv" 10
payoutd status bonus-demo | head -1
echo "-- alice approves (payoutd approve shows what she signs)"
payoutd approve bonus-demo --key "$run/keys/alice" --yes
for _ in $(seq 1 30); do grep -q "approval.counted" "$run/payoutd.log" && break; sleep 0.1; done
payoutd status bonus-demo | head -1
echo "-- bob approves"
payoutd approve bonus-demo --key "$run/keys/bob" --yes | tail -1
wait_for "$run/spool/done/bonus-demo.summary.json" 30
echo "-- paid; the summary names who approved it:"
grep -o '"approvals": \[.*\]' "$run/spool/done/bonus-demo.summary.json"

echo
echo "== hold, then cancel: march-duplicate (300 payouts at 20 a second) was dropped by mistake"
drop march-duplicate 300 12.50
for _ in $(seq 1 100); do grep -q "batch_started batch=march-duplicate" "$run/payoutd.log" && break; sleep 0.1; done
sleep 1
payoutd hold march-duplicate --reason "is this the March run again?"
payoutd status march-duplicate | head -2
payoutd cancel march-duplicate --reason "duplicate of the March run"
wait_for "$run/spool/done/march-duplicate.summary.json" 60
echo "-- reported; no cancelled payout ever reached the gateway:"
grep -o '"states": {[^}]*}' "$run/spool/done/march-duplicate.summary.json"
grep -o '"audit": \[.*\]' "$run/spool/done/march-duplicate.summary.json"

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
echo "== stopping payoutd and the sandbox"
cleanup
pids=()
echo "demo done; files kept in $run"
