#!/bin/sh
# Static checks of what payoutd ships for operations; CI runs it, and so does ctest (systemd_check).
#   systemd/check.sh [PAYOUTD_BINARY]
# - systemd/payoutd.service: `systemd-analyze verify` prints nothing, and
#   `systemd-analyze security --offline=true` rates it at most $MAX_EXPOSURE (default 2.0);
# - payoutd.sysusers and payoutd.tmpfiles apply cleanly to a scratch root;
# - config/prometheus: `promtool check rules` and `promtool test rules` pass;
# - config/grafana/payoutd.json is valid JSON, a dashboard whose PromQL parses and names only
#   metrics payoutd exports.
# verify wants ExecStart= to exist, so it checks a copy whose ExecStart= runs PAYOUTD_BINARY (the
# build's payoutd when given, else /bin/true); nothing else of the unit is changed.
# Exits 0 when all pass, 1 when any fails, 77 (skip) when a tool is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
binary=${1:-/bin/true}
max_exposure=${MAX_EXPOSURE:-2.0}
failed=0

fail() { echo "FAIL: $*" >&2; failed=1; }
pass() { echo "ok:   $*"; }

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles promtool python3; do
  if ! command -v "$tool" > /dev/null 2>&1; then
    echo "SKIP: $tool is not installed" >&2
    exit 77
  fi
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# --- systemd unit ------------------------------------------------------------------------------
unit="$here/payoutd.service"
mkdir -p "$scratch/unit"
sed "s|^ExecStart=/usr/bin/payoutd |ExecStart=$binary |" "$unit" > "$scratch/unit/payoutd.service"
if ! grep -q "^ExecStart=$binary " "$scratch/unit/payoutd.service"; then
  fail "payoutd.service: no 'ExecStart=/usr/bin/payoutd ' line to check"
fi
out=$(systemd-analyze verify "$scratch/unit/payoutd.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  fail "systemd-analyze verify payoutd.service (rc=$rc):"
  echo "$out" >&2
else
  pass "systemd-analyze verify payoutd.service"
fi

out=$(systemd-analyze security --offline=true "$unit" 2>&1)
rating=$(echo "$out" | sed -n 's/.*Overall exposure level for payoutd.service: \([0-9.]*\).*/\1/p')
if [ -z "$rating" ]; then
  fail "systemd-analyze security gave no rating:"
  echo "$out" >&2
elif awk -v r="$rating" -v m="$max_exposure" 'BEGIN { exit !(r <= m) }'; then
  pass "systemd-analyze security: exposure $rating (at most $max_exposure)"
else
  fail "systemd-analyze security: exposure $rating is above $max_exposure; what is missing:"
  echo "$out" | grep '✗' >&2
fi

# --- sysusers.d and tmpfiles.d, applied to a scratch root --------------------------------------
sysroot="$scratch/root"
mkdir -p "$sysroot/etc"
: > "$sysroot/etc/passwd"
: > "$sysroot/etc/group"
if [ "$(id -u)" -ne 0 ]; then
  # Not root: tmpfiles can chown only to ourselves, so payoutd is us in the scratch root (sysusers
  # then finds the user present and only parses its file).
  echo "payoutd:x:$(id -u):$(id -g)::/var/lib/payoutd:/usr/sbin/nologin" > "$sysroot/etc/passwd"
  echo "payoutd:x:$(id -g):" > "$sysroot/etc/group"
fi
cp "$here/payoutd.sysusers" "$sysroot/payoutd.sysusers.conf"
cp "$here/payoutd.tmpfiles" "$sysroot/payoutd.tmpfiles.conf"
out=$(systemd-sysusers --root="$sysroot" "$sysroot/payoutd.sysusers.conf" 2>&1)
rc=$?
if [ $rc -ne 0 ] || echo "$out" | grep -qiE 'fail|ignor|invalid' || ! grep -q '^payoutd:' "$sysroot/etc/passwd"; then
  fail "systemd-sysusers payoutd.sysusers (rc=$rc):"
  echo "$out" >&2
else
  pass "systemd-sysusers payoutd.sysusers"
fi
out=$(systemd-tmpfiles --create --root="$sysroot" "$sysroot/payoutd.tmpfiles.conf" 2>&1)
rc=$?
if [ $rc -ne 0 ] || echo "$out" | grep -qiE 'fail|ignor|invalid'; then
  fail "systemd-tmpfiles payoutd.tmpfiles (rc=$rc):"
  echo "$out" >&2
else
  missing=""
  for d in inbox work done rejected; do
    [ -d "$sysroot/var/spool/payoutd/$d" ] || missing="$missing $d"
  done
  if [ -n "$missing" ]; then fail "systemd-tmpfiles did not create:$missing"; else pass "systemd-tmpfiles payoutd.tmpfiles"; fi
fi

# --- Prometheus alerting rules -----------------------------------------------------------------
prom="$root/config/prometheus"
if out=$(promtool check rules "$prom/payoutd-alerts.yml" 2>&1); then
  pass "promtool check rules payoutd-alerts.yml"
else
  fail "promtool check rules payoutd-alerts.yml:"
  echo "$out" >&2
fi
if out=$(cd "$prom" && promtool test rules payoutd-alerts.test.yml 2>&1); then
  pass "promtool test rules payoutd-alerts.test.yml"
else
  fail "promtool test rules payoutd-alerts.test.yml:"
  echo "$out" >&2
fi

# --- Grafana dashboard ---------------------------------------------------------------------------
dash="$root/config/grafana/payoutd.json"
if ! python3 -m json.tool "$dash" > /dev/null; then
  fail "payoutd.json is not valid JSON"
else
  # Every expression, with Grafana's variables replaced, as recording rules: promtool parses them.
  if out=$(python3 - "$dash" "$prom/payoutd-alerts.yml" "$scratch/dashboard-rules.yml" 2>&1 <<'EOF'
import json, re, sys
dash_path, alerts_path, rules_path = sys.argv[1:4]
# docs/operations.md and daemon/metrics.h; a histogram also has _bucket, _count and _sum series.
known = {"payoutd_payouts_total", "payoutd_payouts_pending", "payoutd_http_requests_total",
         "payoutd_http_request_duration_seconds", "payoutd_http_retries_total", "payoutd_in_flight_requests",
         "payoutd_throttled_total", "payoutd_batches_total", "payoutd_amount_total",
         "payoutd_oldest_pending_payout_age_seconds", "payoutd_sending_paused", "payoutd_build_info",
         "payoutd_unknown_gateway_status_total", "payoutd_callbacks_total",
         "payoutd_gateway_circuit_open", "payoutd_gateway_outage_seconds_total",
         "payoutd_batches_awaiting_approval", "payoutd_oldest_awaiting_approval_age_seconds",
         "payoutd_approvals_invalid_total", "payoutd_batches_held",
         "payoutd_leader", "payoutd_state_commit_duration_seconds", "payoutd_state_errors_total"}

def base(name):
    m = re.fullmatch(r"(payoutd_http_request_duration_seconds|payoutd_state_commit_duration_seconds)"
                     r"_(bucket|count|sum)", name)
    return m.group(1) if m else name
d = json.load(open(dash_path))
problems = []
if not 36 <= d.get("schemaVersion", 0) <= 40: problems.append("schemaVersion %r is not ~38" % d.get("schemaVersion"))
if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in d["templating"]["list"]):
    problems.append("no Prometheus datasource variable")
ids = [p["id"] for p in d["panels"]]
if len(ids) != len(set(ids)): problems.append("panel ids repeat")
exprs = []
for p in d["panels"]:
    for t in p.get("targets", []):
        exprs.append((p["title"], t["expr"]))
for v in d["templating"]["list"]:
    if v.get("type") == "query":
        m = re.fullmatch(r'label_values\((.*), *\w+\)', v["definition"]) or re.fullmatch(r'label_values\((.*)\)', v["definition"])
        exprs.append(("variable " + v["name"], m.group(1)))
text = open(alerts_path).read()
names = set(re.findall(r"\bpayoutd_[a-z_]+", text))
rules = []
for title, e in exprs:
    names |= set(re.findall(r"\bpayoutd_[a-z_]+", e))
    e = e.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$job", ".*").replace("$instance", ".*")
    if "$" in e: problems.append("%s: unknown variable in %s" % (title, e))
    rules.append({"record": "dashboard:expr_%d" % len(rules), "expr": e})
for n in sorted(names):
    if base(n) not in known: problems.append("unknown metric %s" % n)
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(rules_path, "w"), indent=1)
if problems:
    print("\n".join(problems)); sys.exit(1)
print("%d panels, %d expressions" % (len(d["panels"]), len(rules)))
EOF
  ) && out2=$(promtool check rules "$scratch/dashboard-rules.yml" 2>&1); then
    pass "grafana payoutd.json: $out; PromQL parses; metric names known"
  else
    fail "grafana payoutd.json:"
    echo "$out" "${out2:-}" >&2
  fi
fi

[ $failed -eq 0 ] && echo "all checks passed"
exit $failed
