#!/usr/bin/env bash
# bench/forecast/run.sh - accuracy of the spend forecasts (src/store/forecast.c) on synthetic
# series and on a replayed (synthetic) ledger, and what the spend queries (src/store/spend.c)
# cost. Writes bench/forecast/RESULTS.md (FORECAST_OUT overrides). About a minute.
#
#   bench/forecast/run.sh            2000 synthetic trials
#   FORECAST_TRIALS=500 bench/forecast/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
B=${B:-build}
OUT=${FORECAST_OUT:-$HERE/RESULTS.md}
TRIALS=${FORECAST_TRIALS:-2000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/forecast-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

PKGS="libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto"
WARN="-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wno-unused-parameter"
CFLAGS="-O2 -g -std=c17 -D_GNU_SOURCE -pthread $WARN -I$ROOT/src $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -pthread -lm"

cd "$ROOT"
make -s -j2 B="$B" "$B/libahorro.a" >/dev/null
gcc $CFLAGS -o "$WORK/forecast_bench" bench/forecast/forecast_bench.c "$B/libahorro.a" $LIBS

{
    echo "# Spend forecasts: measured accuracy"
    echo
    echo "Written by \`bench/forecast/run.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores," \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))." \
        "Method and choices: \`docs/reporting.md\`."
    echo
    "$WORK/forecast_bench" synthetic "$TRIALS"
    "$WORK/forecast_bench" replay "$WORK/replay.db"
} >"$OUT"
echo "wrote $OUT"
