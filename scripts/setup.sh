#!/usr/bin/env bash
# Installs every Debian 12 package payoutd needs to build, test, benchmark and run its demo.
# Idempotent: packages already present are left as they are; apt is only asked when one is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates python3
  libboost-dev libboost-system-dev libcurl4-openssl-dev libsimdjson-dev libyaml-cpp-dev
  prometheus-cpp-dev libsqlite3-dev libssl-dev libsystemd-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  prometheus systemd wrk hey sqlite3 procps
  scdoc lintian dpkg-dev man-db
  postgresql libpq-dev
  openssh-client curl bsdextrautils
  ccache
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
