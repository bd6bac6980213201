#!/usr/bin/env bash
# bench/profile.sh - where ahorro's time goes under wrk (perf record -g on the ahorro process).
#
#   bench/profile.sh                 non-streamed, -t2 -c50, 10 s
#   BENCH_STREAM=1 bench/profile.sh  streamed
#   PROFILE_CONNS=1 PROFILE_SECONDS=5 PROFILE_OUT=/tmp/prof bench/profile.sh
#
# Starts the same targets as bench/run.sh (through `run.sh exec`), records ahorro
# with perf while wrk runs against it, and writes perf reports to PROFILE_OUT
# (default: a new /tmp/ahorro-profile.XXXXXX): report-self.txt (flat, by symbol),
# report-children.txt (inclusive, call graph), report-dso.txt (by library).
# Needs perf (apt-get install linux-perf) and kernel.perf_event_paranoid <= 1 or root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${BENCH_URL_AHORRO:-}" ]; then
  exec "$HERE/run.sh" exec "$0" "$@"
fi
command -v perf >/dev/null || { echo "perf missing (apt-get install linux-perf)" >&2; exit 1; }
SECS=${PROFILE_SECONDS:-10}
CONNS=${PROFILE_CONNS:-50}
OUTD=${PROFILE_OUT:-$(mktemp -d /tmp/ahorro-profile.XXXXXX)}
mkdir -p "$OUTD"
WOPTS="-t2 -c$CONNS"
[ "$CONNS" = 1 ] && WOPTS="-t1 -c1"
# warm the pool
wrk -t2 -c50 -d2s -s "$BENCH_LUA" "$BENCH_URL_AHORRO" >/dev/null
perf record -q -F 2999 -g --call-graph dwarf,16384 -p "$BENCH_PID_AHORRO" -o "$OUTD/perf.data" -- sleep "$((SECS + 1))" &
PERF=$!
sleep 0.5
# shellcheck disable=SC2086
wrk $WOPTS -d"${SECS}s" --latency -s "$BENCH_LUA" "$BENCH_URL_AHORRO" | tee "$OUTD/wrk.txt"
wait "$PERF" || true
perf report -i "$OUTD/perf.data" --no-children --sort symbol --stdio --percent-limit 0.7 -g none \
  >"$OUTD/report-self.txt" 2>/dev/null
perf report -i "$OUTD/perf.data" --children --sort symbol --stdio --percent-limit 3 -g caller,0.5,callee,function,percent \
  >"$OUTD/report-children.txt" 2>/dev/null
perf report -i "$OUTD/perf.data" --no-children --sort dso --stdio -g none >"$OUTD/report-dso.txt" 2>/dev/null
echo "profile in $OUTD" >&2
