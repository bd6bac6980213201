#!/usr/bin/env bash
# deps.sh - install what building and testing ahorro needs, from Debian's packages.
# Safe to rerun: installs only what is missing. Uses sudo when not root.
set -euo pipefail
PKGS=(build-essential clang pkg-config libevent-dev libcurl4-openssl-dev libjansson-dev
      libsqlite3-dev libyaml-dev libssl-dev libhiredis-dev libpq-dev libjemalloc-dev check sqlite3 curl
      ca-certificates
      nodejs npm) # node: the set-up step that builds the semantic cache's word vectors
if [ "${1:-}" = "--test" ]; then
  PKGS+=(libclang-rt-14-dev clang-format chromium # chromium: the dashboard's browser test
         redis-server postgresql) # the shared backends' tests (scripts/test.sh starts both on loopback)
fi
if [ "${1:-}" = "--bench" ]; then
  PKGS+=(nginx-light wrk)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node may come from elsewhere than Debian's package; accept any node >= 18 with npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -ra missing <<< "${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
