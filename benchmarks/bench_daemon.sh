#!/usr/bin/env bash
# End to end against the sandbox: `payoutd run` paying batches through payout-sandbox on 127.0.0.1.
#
# usage: benchmarks/bench_daemon.sh [BUILD_DIR] [ROWS_A] [ROWS_B]
#   BUILD_DIR  where payoutd and payout-sandbox are built [build]
#   ROWS_A     payouts in part (a) [100000]
#   ROWS_B     payouts in part (b) [20000]
#   AUTH=off   run the sandbox with --no-auth (default: on, HS256 JWT signed and verified per request)
#   PARTS="a b" which parts to run
#   STATE=postgresql  also keep the state in PostgreSQL: a throwaway server on this machine
#              (PG_BINDIR [/usr/lib/postgresql/15/bin], Unix socket, fsync on). Part (a) then runs
#              twice, SQLite then PostgreSQL, and compares (target: PostgreSQL >= 0.7x SQLite);
#              part (t) runs too (add "t" to PARTS to run it alone with STATE=postgresql).
#
# (a) throughput: sandbox with no latency and --final-after-ms 0, rate limit effectively off
#     (requests_per_second 1e6, burst 100000, max_in_flight 64), polling.initial_delay 10ms.
#     Measures payouts/s from the drop (rename into inbox/) to the report (summary.json in done/),
#     daemon CPU per payout (utime+stime from /proc/PID/stat over that span), peak RSS (VmHWM),
#     state file size. Target: >= 5000 payouts/s.
# (b) rate-limit fidelity: sandbox --latency-ms 200, limits.requests_per_second 2000, burst 100,
#     max_in_flight 1000. Achieved request rate (from /_sandbox/arrivals, the steady part: 1 s after
#     the first request to 1 s before the last) / 2000. Target: >= 0.95. Also the busiest 1-second
#     window, which may hold at most requests_per_second + burst
#     (docs/gateway.md#rate-and-concurrency).
# (t) takeover (STATE=postgresql): two instances, state.lease 5s, a batch paying at 200 requests/s;
#     the leader is SIGKILLed at a random moment and the time until the standby's first gateway
#     request is measured (sandbox arrival log, User-Agent names the instance); five times,
#     median. Bound: state.lease + 2 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
rows_a=${2:-100000}
rows_b=${3:-20000}
state_backend=${STATE:-sqlite}
parts=${PARTS:-a b}
[ "$state_backend" = postgresql ] && [ -z "${PARTS:-}" ] && parts="a b t"
auth=${AUTH:-on}
pg_bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
payoutd=$build/daemon/payoutd
sandbox=$build/tests/sandbox/payout-sandbox
hz=$(getconf CLK_TCK)
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-daemon.XXXXXX")   # TMPDIR=/dev/shm: state on tmpfs (no fsync cost)
pids=()
pg_dir=""
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$pg_dir" ] && as_pg "$pg_bindir/pg_ctl" -D "$pg_dir/data" stop -m immediate -w >/dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
umask 077
printf 'bench-daemon-secret\n' > "$work/secret.key"

# PostgreSQL refuses to run as root: as root, its commands run as nobody.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }

# start_postgres: a throwaway server in $work/pg on a Unix socket (port chosen free, fsync on as
# in production); sets pg_dir and pg_url_base (append a database name).
start_postgres() {
  pg_dir=$work/pg
  mkdir -p "$pg_dir"
  if [ "$(id -u)" = 0 ]; then chmod 711 "$work"; chown nobody "$pg_dir"; fi
  as_pg "$pg_bindir/initdb" -D "$pg_dir/data" -U postgres -E UTF8 --locale=C --auth-local=trust \
    >"$pg_dir/initdb.log" 2>&1 || { cat "$pg_dir/initdb.log"; exit 1; }
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg "$pg_bindir/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-c listen_addresses='' -c port=$port -c unix_socket_directories='$pg_dir' -c max_connections=40" \
    start >/dev/null || { cat "$pg_dir/server.log"; exit 1; }
  pg_port=$port
}
# createdb_pg NAME: a new database; prints its URL.
createdb_pg() {
  as_pg "$pg_bindir/psql" -q -h "$pg_dir" -p "$pg_port" -U postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgresql:///$1?host=$pg_dir&port=$pg_port&user=postgres"
}

now_ms() { date +%s%3N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Sum over a process's threads of /proc/PID/task/TID/schedstat: "on-CPU-ns runqueue-wait-ns".
# Run-queue wait is time a thread was ready but another process had the CPU (a busy machine).
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{r += $1; w += $2} END {printf "%.0f %.0f\n", r, w}'; }

start_sandbox() {  # start_sandbox DIR FLAGS...; sets sb_pid, sb_port
  local dir=$1; shift
  local auth_flags=(--secret-file "$work/secret.key" --merchant BENCH)
  [ "$auth" = off ] && auth_flags=(--no-auth)
  "$sandbox" --listen 127.0.0.1:0 --port-file "$dir/sandbox.port" --no-callbacks "${auth_flags[@]}" "$@" \
    >"$dir/sandbox.log" 2>&1 &
  sb_pid=$!
  pids+=("$sb_pid")
  for _ in $(seq 1 200); do [ -s "$dir/sandbox.port" ] && break; sleep 0.05; done
  sb_port=$(cat "$dir/sandbox.port")
}

# start_daemon DIR RPS BURST MAX_IN_FLIGHT INITIAL_DELAY; sets d_pid, m_port. The state section
# is $state_yaml when set (PostgreSQL), else the SQLite file in DIR; the spool $spool when set.
start_daemon() {
  local dir=$1
  local spool_dir=${spool:-$dir/spool}
  local state_section=${state_yaml:-"  path: $dir/state/payoutd.db"}
  mkdir -p "$spool_dir"
  cat > "$dir/payoutd.yaml" <<YAML
gateway:
  base_url: http://127.0.0.1:${sb_port}
  timeout: 10s
auth:
  merchant_code: BENCH
  secret_file: $work/secret.key
limits:
  requests_per_second: $2
  burst: $3
  max_in_flight: $4
retry:
  initial_backoff: 50ms
  max_backoff: 1s
polling:
  initial_delay: $5
  max_interval: 1s
spool:
  dir: $spool_dir
  settle: 50ms
state:
$state_section
metrics:
  listen: 127.0.0.1:0
log:
  level: info
YAML
  "$payoutd" run --config "$dir/payoutd.yaml" 2>"$dir/payoutd.log" &
  d_pid=$!
  pids+=("$d_pid")
  for _ in $(seq 1 400); do grep -q payoutd.ready "$dir/payoutd.log" && break; sleep 0.05; done
  grep -q payoutd.ready "$dir/payoutd.log" || { echo "payoutd did not start:"; cat "$dir/payoutd.log"; exit 1; }
  m_port=$(grep -o '(port [0-9]*)' "$dir/payoutd.log" | head -1 | tr -dc 0-9)
}

# durations DIR ROWS MS PART: mean request duration per method from the daemon's own histogram.
durations() {
  for m in POST GET; do
    awk -v m="$m" -v ms="$3" -v part="$4" '$1 == "payoutd_http_request_duration_seconds_sum{method=\"" m "\"}" {s = $2}
      $1 == "payoutd_http_request_duration_seconds_count{method=\"" m "\"}" {c = $2}
      END { if (c) printf "(%s) %s: %d requests, mean duration %.2f ms as the daemon measured it; %.1f requests in flight on average\n", part, m, c, s * 1000 / c, s * 1000 / ms }' "$1/metrics.txt"
  done
}

# drop_and_wait DIR BATCH CSV: rename into inbox/, wait for done/BATCH.summary.json.
# Sets t_drop, t_done (ms), cpu0, cpu1 (daemon ticks), sb_cpu0, sb_cpu1.
drop_and_wait() {
  local dir=$1 batch=$2 csv=$3
  cp "$csv" "$dir/spool/inbox/$batch.csv.part"
  cpu0=$(cpu_ticks "$d_pid"); sb_cpu0=$(cpu_ticks "$sb_pid")
  read -r run0 wait0 < <(sched_ns "$d_pid")
  read -r sb_run0 sb_wait0 < <(sched_ns "$sb_pid")
  t_drop=$(now_ms)
  mv "$dir/spool/inbox/$batch.csv.part" "$dir/spool/inbox/$batch.csv"
  until [ -f "$dir/spool/done/$batch.summary.json" ]; do
    kill -0 "$d_pid" 2>/dev/null || { echo "payoutd died:"; tail -20 "$dir/payoutd.log"; exit 1; }
    sleep 0.01
  done
  t_done=$(now_ms)
  cpu1=$(cpu_ticks "$d_pid"); sb_cpu1=$(cpu_ticks "$sb_pid")
  read -r run1 wait1 < <(sched_ns "$d_pid")
  read -r sb_run1 sb_wait1 < <(sched_ns "$sb_pid")
  awk -v r="$((run1 - run0))" -v w="$((wait1 - wait0))" -v sr="$((sb_run1 - sb_run0))" -v sw="$((sb_wait1 - sb_wait0))" \
      -v ms="$((t_done - t_drop))" 'BEGIN {
    printf "    over the %d ms: daemon threads on CPU %.2f s, ready but waiting for a CPU %.2f s; sandbox on CPU %.2f s, waiting for a CPU %.2f s\n", ms, r / 1e9, w / 1e9, sr / 1e9, sw / 1e9 }'
}

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); auth $auth; $(date -u +%FT%TZ)"

part_a() {  # part_a sqlite|postgresql
  local dir=$work/a-$1; mkdir -p "$dir"
  python3 "$here/gen_batch.py" "$dir/batch.csv" "$rows_a" BA
  start_sandbox "$dir" --final-after-ms 0 --max-arrivals $((rows_a * 3))
  start_daemon "$dir" 1000000 100000 64 10ms
  # On PostgreSQL the first ready line is the standby's: wait until it leads (the spool is ready).
  until grep -q 'payoutd.ready.*gateway=' "$dir/payoutd.log"; do sleep 0.05; done
  drop_and_wait "$dir" bench-a "$dir/batch.csv"
  ms=$((t_done - t_drop))
  a_ms[$1]=$ms
  ok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['states'].get('SUCCESS',0))" "$dir/spool/done/bench-a.summary.json")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$d_pid/status")
  if [ "$1" = sqlite ]; then
    db=$(du -cb "$dir/state/"payoutd.db* | tail -1 | cut -f1)
  else
    db=$(as_pg "$pg_bindir/psql" -At -h "$pg_dir" -p "$pg_port" -U postgres -c "SELECT pg_database_size('bench_a')")
  fi
  curl -s "http://127.0.0.1:$m_port/metrics" > "$dir/metrics.txt"
  req=$(awk '/^payoutd_http_requests_total/ {s += $2} END {print s}' "$dir/metrics.txt")
  durations "$dir" "$rows_a" "$ms" "a/$1"
  echo "(a/$1) $rows_a payouts ($ok SUCCESS) from drop to report in $ms ms"
  awk -v n="$rows_a" -v ms="$ms" -v s="$1" 'BEGIN { r = n * 1000 / ms; printf "(a/%s) throughput: %.0f payouts/s vs target 5000 payouts/s: ratio %.2f %s\n", s, r, r / 5000, (r >= 5000 ? "MET" : "MISSED") }'
  awk -v n="$rows_a" -v t="$((cpu1 - cpu0))" -v hz="$hz" -v req="$req" -v st="$((sb_cpu1 - sb_cpu0))" -v s="$1" 'BEGIN {
    printf "(a/%s) daemon CPU: %.2f s = %.0f us per payout (%d gateway requests, %.0f us per request); sandbox CPU %.2f s\n",
           s, t / hz, t * 1e6 / hz / n, req, t * 1e6 / hz / req, st / hz }'
  echo "(a/$1) daemon peak RSS (VmHWM): $((hwm / 1024)) MiB"
  awk -v b="$db" -v n="$rows_a" -v s="$1" 'BEGIN { printf "(a/%s) state: %.1f MiB (%.0f bytes per payout)\n", s, b / 1048576, b / n }'
  curl -s "http://127.0.0.1:$sb_port/_sandbox/arrivals" > "$dir/arrivals.json"
  python3 - "$dir/arrivals.json" "$1" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["arrivals"]
posts = sorted(x["t_us"] for x in a if x["method"] == "POST")
gets = sorted(x["t_us"] for x in a if x["method"] == "GET")
t0 = min(posts[0], gets[0] if gets else posts[0])
span = lambda v: f"{(v[0] - t0) / 1e6:.2f}..{(v[-1] - t0) / 1e6:.2f} s" if v else "none"
print(f"(a/{sys.argv[2]}) at the sandbox: {len(posts)} POST ({span(posts)}), {len(gets)} GET ({span(gets)}), times from the first request")
allt = sorted(posts + gets)
buckets = {}
for t in allt:
    buckets[(t - t0) // 100_000] = buckets.get((t - t0) // 100_000, 0) + 1
nb = max(buckets) + 1
idle = sum(1 for b in range(nb) if b not in buckets)
print(f"(a/{sys.argv[2]}) 100-ms buckets: {nb}, of which {idle} without any request; busiest {max(buckets.values())} requests")
PY
  kill -TERM "$d_pid" "$sb_pid"; wait "$d_pid" "$sb_pid" 2>/dev/null || true
  pids=()
}

declare -A a_ms
if [[ " $parts " == *" a "* || " $parts " == *" t "* ]] && [ "$state_backend" = postgresql ]; then
  start_postgres
fi
if [[ " $parts " == *" a "* ]]; then
  part_a sqlite
  if [ "$state_backend" = postgresql ]; then
    state_yaml="  backend: postgresql
  url: \"$(createdb_pg bench_a)\""
    part_a postgresql
    unset state_yaml
    awk -v s="${a_ms[sqlite]}" -v p="${a_ms[postgresql]}" 'BEGIN {
      r = s / p; printf "(a) PostgreSQL vs SQLite throughput: %.2fx (target >= 0.7x): %s\n", r, (r >= 0.7 ? "MET" : "MISSED") }'
  fi
fi

if [[ " $parts " == *" b "* ]]; then
  dir=$work/b; mkdir -p "$dir"
  python3 "$here/gen_batch.py" "$dir/batch.csv" "$rows_b" BB
  start_sandbox "$dir" --final-after-ms 0 --latency-ms 200 --max-arrivals $((rows_b * 4))
  start_daemon "$dir" 2000 100 1000 10ms
  drop_and_wait "$dir" bench-b "$dir/batch.csv"
  curl -s "http://127.0.0.1:$m_port/metrics" > "$dir/metrics.txt"
  durations "$dir" "$rows_b" "$((t_done - t_drop))" b
  curl -s "http://127.0.0.1:$sb_port/_sandbox/arrivals" > "$dir/arrivals.json"
  python3 - "$dir/arrivals.json" 2000 100 "$((t_done - t_drop))" "$rows_b" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
limit, burst, ms, rows = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t = sorted(a["t_us"] for a in doc["arrivals"])
if doc.get("not_recorded"):
    print(f"(b) warning: {doc['not_recorded']} arrivals not recorded")
lo, hi = t[0] + 1_000_000, t[-1] - 1_000_000
n = sum(1 for x in t if lo <= x < hi)
rate = n / ((hi - lo) / 1e6)
# busiest 1-second window (two pointers)
j = best = 0
for i in range(len(t)):
    while t[i] - t[j] >= 1_000_000:
        j += 1
    best = max(best, i - j + 1)
print(f"(b) {rows} payouts, {len(t)} requests in {(t[-1] - t[0]) / 1e6:.2f} s of arrivals; drop to report {ms} ms")
print(f"(b) steady part ({(hi - lo) / 1e6:.2f} s): {rate:.0f} requests/s vs limit {limit:.0f}: ratio {rate / limit:.3f} "
      f"{'MET' if rate / limit >= 0.95 else 'MISSED'} (target 0.95)")
print(f"(b) busiest 1-second window: {best} requests (bound requests_per_second + burst = {limit + burst:.0f}): "
      f"{'held' if best <= limit + burst else 'EXCEEDED'}")
PY
  awk -v t="$((cpu1 - cpu0))" -v st="$((sb_cpu1 - sb_cpu0))" -v hz="$hz" 'BEGIN { printf "(b) CPU: daemon %.2f s, sandbox %.2f s\n", t / hz, st / hz }'
  kill -TERM "$d_pid" "$sb_pid"; wait "$d_pid" "$sb_pid" 2>/dev/null || true
  pids=()
fi

if [[ " $parts " == *" t "* ]] && [ "$state_backend" = postgresql ]; then
  dir=$work/t; mkdir -p "$dir/spool/inbox"
  python3 "$here/gen_batch.py" "$dir/batch.csv" 20000 BT
  start_sandbox "$dir" --final-after-ms 0 --max-arrivals 200000
  url=$(createdb_pg bench_t)
  spool=$dir/spool
  declare -A inst_pid
  leads() { grep -q leadership.acquired "$dir/$1/payoutd.log" && kill -0 "${inst_pid[$1]}" 2>/dev/null; }
  start_instance() {  # start_instance NAME
    mkdir -p "$dir/$1"
    state_yaml="  backend: postgresql
  url: \"$url\"
  instance: $1
  lease: 5s"
    start_daemon "$dir/$1" 200 20 64 10ms
    inst_pid[$1]=$d_pid
  }
  start_instance one
  until leads one; do sleep 0.05; done
  start_instance two
  cp "$dir/batch.csv" "$spool/inbox/bench-t.csv.part" && mv "$spool/inbox/bench-t.csv.part" "$spool/inbox/bench-t.csv"
  takeovers=()
  for round in 1 2 3 4 5; do
    if leads one; then old=one new=two; else old=two new=one; fi
    sleep "$(python3 -c 'import random; print(round(random.uniform(1, 3), 2))')"  # a random moment
    t_kill=$(curl -s "http://127.0.0.1:$sb_port/_sandbox/clock" | python3 -c 'import json, sys; print(json.load(sys.stdin)["t_us"])')
    kill -KILL "${inst_pid[$old]}"; wait "${inst_pid[$old]}" 2>/dev/null || true
    # The new leader's first request after the kill, from the sandbox's arrival log.
    for _ in $(seq 1 600); do
      s=$(curl -s "http://127.0.0.1:$sb_port/_sandbox/arrivals" | python3 -c '
import json, sys
t_kill, who = int(sys.argv[1]), "(" + sys.argv[2] + ";"
firsts = [a["t_us"] for a in json.load(sys.stdin)["arrivals"] if a["t_us"] > t_kill and who in a.get("agent", "")]
print(f"{(min(firsts) - t_kill) / 1e6:.3f}" if firsts else "")' "$t_kill" "$new")
      [ -n "$s" ] && break
      sleep 0.05
    done
    [ -n "$s" ] || { echo "(t) no takeover by $new"; tail -5 "$dir/$new/payoutd.log"; exit 1; }
    echo "(t) round $round: SIGKILL of $old -> first request of $new after $s s"
    start_instance "$old"   # back, as a standby
    takeovers+=("$s")
  done
  printf '%s\n' "${takeovers[@]}" | sort -n | awk '{v[NR] = $1} END {
    printf "(t) takeover (SIGKILL of the leader to the standby'"'"'s first request), lease 5s: median %.2f s of %d (min %.2f, max %.2f); bound lease + 2 s = 7 s: %s\n",
           v[3], NR, v[1], v[NR], (v[3] <= 7 ? "MET" : "MISSED") }'
  for p in "${inst_pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  kill -TERM "$sb_pid"; wait 2>/dev/null || true
  pids=()
fi
