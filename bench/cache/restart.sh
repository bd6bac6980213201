#!/usr/bin/env bash
# bench/cache/restart.sh [N...] - restart time of the answer cache with N semantic entries:
# saved, then loaded with the vector-index files and without them (rebuilt). Default 10000 100000.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
make -C "$ROOT" -s build/libahorro.a
PKGS="libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto"
gcc -std=c17 -D_GNU_SOURCE -O2 -I"$ROOT/src" $(pkg-config --cflags $PKGS) -o "$ROOT/build/cache-restart" \
  "$HERE/restart.c" "$ROOT/build/libahorro.a" $(pkg-config --libs $PKGS) -pthread -lm
echo "| entries | build s | save s | load with index files s | load, indexes rebuilt s |"
echo "|---|---|---|---|---|"
for n in "${@:-10000 100000}"; do AHORRO_LOG=warn "$ROOT/build/cache-restart" "$n"; done
