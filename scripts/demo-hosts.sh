#!/usr/bin/env bash
# Two payoutd instances on one machine sharing one PostgreSQL state and one spool folder
# (docs/several-hosts.md): a throwaway PostgreSQL 15 server and the sandbox gateway on this
# machine, "pay1" and "pay2" started, the sample batch dropped, the leader killed with SIGKILL
# halfway, and the standby finishing the batch. Stops everything it started.
#
# usage: scripts/demo-hosts.sh    (after scripts/demo.sh or a build in ${BUILD:-build})
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
pg_bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
payoutd=./$build/daemon/payoutd
[ -x "$payoutd" ] && [ -x "$pg_bindir/pg_ctl" ] || {
  echo "demo-hosts: needs $payoutd (scripts/demo.sh builds it) and PostgreSQL 15 in $pg_bindir" >&2
  exit 2
}

run=$(mktemp -d /tmp/payoutd-hosts.XXXXXX)
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  as_pg "$pg_bindir/pg_ctl" -D "$run/pg/data" stop -m fast -w >/dev/null 2>&1 || true
}
trap cleanup EXIT
umask 077
printf 'demo-merchant-secret-%s\n' "$RANDOM$RANDOM" > "$run/secret.key"
mkdir -p "$run/spool" "$run/pg"

echo "== a PostgreSQL server for the shared state (socket in $run/pg)"
if [ "$(id -u)" = 0 ]; then chmod 711 "$run"; chown nobody "$run/pg"; fi  # it refuses root
as_pg "$pg_bindir/initdb" -D "$run/pg/data" -U postgres --auth-local=trust >/dev/null
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$pg_bindir/pg_ctl" -D "$run/pg/data" -l "$run/pg/server.log" -w \
  -o "-c listen_addresses='' -c port=$pg_port -c unix_socket_directories='$run/pg'" start >/dev/null
as_pg "$pg_bindir/psql" -q -h "$run/pg" -p "$pg_port" -U postgres -c "CREATE DATABASE payoutd"
url="postgresql:///payoutd?host=$run/pg&port=$pg_port&user=postgres"

echo "== the sandbox gateway"
./"$build"/tests/sandbox/payout-sandbox --listen 127.0.0.1:0 --port-file "$run/sandbox.port" \
  --secret-file "$run/secret.key" --merchant DEMO_MERCHANT --final-after-ms 1500 --no-callbacks \
  >"$run/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run/sandbox.port" ] && break; sleep 0.1; done

# Everything but state.instance is the same on every host.
for host in pay1 pay2; do
  mkdir -p "$run/$host"
  cat > "$run/$host/payoutd.yaml" <<YAML
gateway:
  base_url: http://127.0.0.1:$(cat "$run/sandbox.port")
auth:
  merchant_code: DEMO_MERCHANT
  secret_file: $run/secret.key
limits:
  requests_per_second: 4
  burst: 2
polling:
  initial_delay: 500ms
  max_interval: 2s
spool:
  dir: $run/spool
  settle: 500ms
state:
  backend: postgresql
  url: "$url"
  instance: $host
  lease: 5s
metrics:
  listen: 127.0.0.1:0
control:
  socket: $run/$host/control.sock   # on separate machines, the default serves
YAML
done

declare -A pid
start() {
  "$payoutd" run --config "$run/$1/payoutd.yaml" >>"$run/$1/payoutd.log" 2>&1 &
  pid[$1]=$!
  pids+=($!)
}
echo "== pay1, then pay2 (logs: $run/pay1/payoutd.log, $run/pay2/payoutd.log)"
start pay1
until grep -q leadership.acquired "$run/pay1/payoutd.log"; do sleep 0.1; done
start pay2
until grep -q leadership.standby "$run/pay2/payoutd.log"; do sleep 0.1; done
"$payoutd" status --config "$run/pay2/payoutd.yaml" | head -3

cp samples/payroll-demo.csv "$run/spool/inbox/payroll-demo.csv.part"
mv "$run/spool/inbox/payroll-demo.csv.part" "$run/spool/inbox/payroll-demo.csv"
echo "== dropped payroll-demo.csv; the leader pay1 will be killed (SIGKILL) once 4 payouts are sent"
posts() {
  curl -s "http://127.0.0.1:$(cat "$run/sandbox.port")/_sandbox/stats" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("posts", 0))'
}
until [ "$(posts)" -ge 2 ]; do sleep 0.2; done
echo "== from pay2's host, where payoutd stands by: hold and resume reach the leader pay1 through the database"
"$payoutd" hold payroll-demo --reason "demo: a second look" --config "$run/pay2/payoutd.yaml"
"$payoutd" status payroll-demo --config "$run/pay2/payoutd.yaml" | grep -m1 held || true
"$payoutd" resume payroll-demo --config "$run/pay2/payoutd.yaml"
until [ "$(posts)" -ge 4 ]; do sleep 0.2; done
kill -KILL "${pid[pay1]}"
echo "== pay2 takes over within the lease (5s) and finishes the batch"
until [ -f "$run/spool/done/payroll-demo.summary.json" ]; do sleep 0.5; done
grep -h 'leadership.acquired' "$run/pay1/payoutd.log" "$run/pay2/payoutd.log"
"$payoutd" status --config "$run/pay2/payoutd.yaml" | head -3
echo "== summary"
cat "$run/spool/done/payroll-demo.summary.json"; echo
