#!/usr/bin/env bash
# Builds the Debian package and proves it installs, works and removes cleanly:
#   scripts/package-check.sh
# - builds payoutd (Release, tests and benchmarks off) in build-pkg/ and runs `cpack -G DEB`;
# - checks the file name (payoutd_<version>_<arch>.deb), the files and the conffile it holds, and
#   that Depends was computed;
# - lintian: fails on any error (warnings and infos are printed);
# - dpkg -i, then: `payoutd --version`, `payoutd check` on the packaged configuration with a
#   throw-away secret (an existing /etc/payoutd/secret.key is used and left alone), the service
#   user and the spool, `man -w payoutd` and `man --warnings`, the bash completion;
# - dpkg -r (binary gone, configuration kept), dpkg -P (configuration gone).
# The service is never started. Needs root (or sudo) and a Debian 12 machine; it refuses to run
# where payoutd is already installed from a package (set PAYOUTD_PACKAGE_CHECK_FORCE=1 to allow it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
failed=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*" >&2; failed=1; }
die() { echo "FAIL: $*" >&2; exit 1; }

bash scripts/setup.sh

version=$(sed -n 's/^project(payoutd VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || die "cannot read the project version from CMakeLists.txt"
build=${PAYOUTD_PACKAGE_BUILD_DIR:-build-pkg}
deb="$build/payoutd_${version}_${arch}.deb"

if dpkg-query -W -f='${Status}' payoutd 2>/dev/null | grep -q "install ok installed" &&
   [ "${PAYOUTD_PACKAGE_CHECK_FORCE:-0}" != 1 ]; then
  die "payoutd is already installed from a package here; this check would replace and remove it" \
      "(PAYOUTD_PACKAGE_CHECK_FORCE=1 to go on anyway)"
fi

echo "== building payoutd $version in $build (Release)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DPAYOUTD_TESTS=OFF -DPAYOUTD_BENCHMARKS=OFF -DPAYOUTD_SANDBOX=OFF > /dev/null
cmake --build "$build" -j"$(nproc)"

echo "== cpack -G DEB"
rm -f "$build"/payoutd_*.deb
(cd "$build" && cpack -G DEB > /dev/null)
[ -f "$deb" ] || die "cpack did not produce $deb (found: $(ls "$build"/*.deb 2>/dev/null || echo none))"
pass "package $deb ($(du -k "$deb" | cut -f1) KiB)"

# --- what the package holds ---------------------------------------------------------------------
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for f in /usr/bin/payoutd /lib/systemd/system/payoutd.service /usr/lib/sysusers.d/payoutd.conf \
         /usr/lib/tmpfiles.d/payoutd.conf /etc/payoutd/payoutd.yaml \
         /usr/share/man/man8/payoutd.8.gz /usr/share/man/man5/payoutd.yaml.5.gz \
         /usr/share/doc/payoutd/copyright /usr/share/doc/payoutd/changelog.gz \
         /usr/share/doc/payoutd/README.md /usr/share/bash-completion/completions/payoutd \
         /usr/share/payoutd/prometheus/payoutd-alerts.yml /usr/share/payoutd/grafana/payoutd.json; do
  grep -qx "$f" <<< "$contents" || fail "the package lacks $f"
done
[ $failed -eq 0 ] && pass "the package holds the binary, unit, sysusers, tmpfiles, configuration, man pages, docs, completion"
conffiles=$(dpkg-deb -I "$deb" conffiles 2>/dev/null || true)
if grep -qx /etc/payoutd/payoutd.yaml <<< "$conffiles"; then
  pass "conffile /etc/payoutd/payoutd.yaml"
else
  fail "/etc/payoutd/payoutd.yaml is not a conffile"
fi
depends=$(dpkg-deb -f "$deb" Depends)
if grep -q libc6 <<< "$depends"; then pass "Depends: $depends"; else fail "Depends was not computed: '$depends'"; fi
# Metrics are served by payoutd's own HTTP server: neither civetweb nor prometheus-cpp's pull
# library (which wraps it) may come back as a dependency.
if grep -Eq 'civetweb|prometheus-cpp-pull' <<< "$depends"; then
  fail "Depends names civetweb or prometheus-cpp-pull: '$depends'"
else
  pass "Depends: no civetweb"
fi

# --- lintian ------------------------------------------------------------------------------------
echo "== lintian"
lint_rc=0
lint=$(lintian --fail-on error "$deb" 2>&1) || lint_rc=$?
lint=$(grep -v 'running with root privileges is not recommended' <<< "$lint" || true)
[ -n "$lint" ] && echo "$lint"
errors=$(grep -c '^E: ' <<< "$lint" || true)
warnings=$(grep -c '^W: ' <<< "$lint" || true)
if [ "$lint_rc" -ne 0 ] || [ "$errors" -ne 0 ]; then
  fail "lintian: $errors error(s), $warnings warning(s) (rc=$lint_rc)"
else
  pass "lintian: no errors, $warnings warning(s)"
fi
[ $failed -eq 0 ] || die "the package is not right; not installing it"

# --- install ------------------------------------------------------------------------------------
echo "== dpkg -i"
secret=/etc/payoutd/secret.key
made_secret=0
installed=0
cleanup() {
  if [ $made_secret -eq 1 ]; then $sudo rm -f "$secret"; fi
  if [ $installed -eq 1 ]; then $sudo dpkg -P payoutd > /dev/null 2>&1 || true; fi
}
trap cleanup EXIT

$sudo dpkg -i "$deb"
installed=1
pass "dpkg -i $(basename "$deb")"

out=$(/usr/bin/payoutd --version)
if [ "$out" = "payoutd $version" ]; then pass "payoutd --version: $out"; else fail "payoutd --version said '$out'"; fi

if getent passwd payoutd > /dev/null; then
  pass "user payoutd exists (systemd-sysusers)"
elif command -v systemd-sysusers > /dev/null; then
  fail "no user payoutd after install"
else
  echo "skip: systemd-sysusers is not installed; no user payoutd"
fi
if [ -d /var/spool/payoutd/inbox ] && [ -d /var/spool/payoutd/done ]; then
  pass "spool /var/spool/payoutd created (systemd-tmpfiles): $(stat -c '%A %U:%G' /var/spool/payoutd/inbox) inbox"
elif command -v systemd-tmpfiles > /dev/null; then
  fail "no /var/spool/payoutd/inbox after install"
fi

if [ ! -e "$secret" ]; then
  $sudo sh -c "umask 077; echo 'package-check-secret' > $secret"
  made_secret=1
fi
if out=$($sudo /usr/bin/payoutd check --config /etc/payoutd/payoutd.yaml 2>&1); then
  pass "payoutd check --config /etc/payoutd/payoutd.yaml: $(tail -n 1 <<< "$out")"
else
  fail "payoutd check --config /etc/payoutd/payoutd.yaml:"
  echo "$out" >&2
fi

man_page=/usr/share/man/man8/payoutd.8.gz
if [ ! -e "$man_page" ] && grep -rqs '^path-exclude=*/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  echo "skip: man pages are excluded by a dpkg path-exclude in /etc/dpkg/dpkg.cfg.d/"
elif ! command -v man > /dev/null; then
  fail "man is not installed (package man-db)"
else
  if found=$(man -w payoutd 2>&1) && [ "$found" = "$man_page" ]; then
    pass "man -w payoutd: $found"
  else
    fail "man -w payoutd: '$found'"
  fi
  if found=$(man -w 5 payoutd.yaml 2>&1); then pass "man -w 5 payoutd.yaml: $found"; else fail "man -w 5 payoutd.yaml: $found"; fi
  for page in "$man_page" /usr/share/man/man5/payoutd.yaml.5.gz; do
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 > /dev/null)
    if [ -z "$warnings" ]; then pass "man --warnings -l $page: no warnings"; else fail "man --warnings -l $page:"; echo "$warnings" >&2; fi
  done
fi

if bash -c 'source /usr/share/bash-completion/completions/payoutd && complete -p payoutd' > /dev/null; then
  pass "bash completion loads and registers payoutd"
else
  fail "bash completion /usr/share/bash-completion/completions/payoutd does not load"
fi

if [ $made_secret -eq 1 ]; then
  $sudo rm -f "$secret"
  made_secret=0
fi

# --- remove and purge ---------------------------------------------------------------------------
echo "== dpkg -r, dpkg -P"
$sudo dpkg -r payoutd > /dev/null
if [ ! -e /usr/bin/payoutd ] && [ ! -e /lib/systemd/system/payoutd.service ] && [ ! -e "$man_page" ]; then
  pass "dpkg -r: binary, unit and man pages gone"
else
  fail "dpkg -r left files behind: $(ls -d /usr/bin/payoutd /lib/systemd/system/payoutd.service "$man_page" 2>/dev/null | tr '\n' ' ')"
fi
if [ -e /etc/payoutd/payoutd.yaml ]; then pass "dpkg -r: /etc/payoutd/payoutd.yaml kept"; else fail "dpkg -r removed the configuration"; fi
$sudo dpkg -P payoutd > /dev/null
installed=0
if [ ! -e /etc/payoutd/payoutd.yaml ] && ! dpkg-query -W -f='${Status}' payoutd 2>/dev/null | grep -q installed; then
  pass "dpkg -P: configuration gone, package purged"
else
  fail "dpkg -P: /etc/payoutd/payoutd.yaml or the package is still there"
fi
left=$(ls -d /var/lib/payoutd /var/spool/payoutd 2>/dev/null | tr '\n' ' ' || true)
echo "note: left in place on purpose: ${left:-nothing}${left:+(state and spool)}; user payoutd"

if [ $failed -eq 0 ]; then
  echo "package check passed: $deb"
else
  echo "package check FAILED" >&2
fi
exit $failed
