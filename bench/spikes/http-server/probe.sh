#!/usr/bin/env bash
# Disconnect-notification probe: a client (curl --max-time) hangs up while the
# server is (a) waiting before replying, (b) streaming chunks every 200 ms.
# Prints the servers' stderr, which logs when each library tells the app.
# Usage: bench/spikes/http-server/probe.sh   (run.sh builds the binaries first)
set -euo pipefail
cd "$(dirname "$0")"
B=build
[ -x $B/evhttp_srv ] && [ -x $B/mhd_srv ] || { echo "build first (./run.sh build)"; exit 1; }
PE=18190 PM=18191
$B/evhttp_srv $PE 1 2>/tmp/probe-evhttp.$$ & E=$!
$B/mhd_srv ext $PM 1 2>/tmp/probe-mhd.$$ & M=$!
trap 'kill $E $M 2>/dev/null || true; rm -f /tmp/probe-*.$$' EXIT
sleep 0.5
hang() { # $1 port, $2 path, $3 seconds before hanging up
  curl -s -N --max-time "$3" -X POST -d '{"x":1}' "http://127.0.0.1:$1$2" >/dev/null || true
}
for path in /probe/wait /probe/wait_hdrs_plain /probe/wait_hdrs /probe/wait_evclosed /probe/drip; do
  echo "=== evhttp $path (client hangs up after 0.3 s / 0.5 s for drip)"
  start=$(wc -l </tmp/probe-evhttp.$$)
  t=0.3; [ $path = /probe/drip ] && t=0.5
  hang $PE $path $t; sleep 2.5
  tail -n +$((start + 1)) /tmp/probe-evhttp.$$
done
for path in /probe/wait /probe/wait_evclosed /probe/drip; do
  echo "=== mhd(ext) $path (client hangs up after 0.3 s / 0.5 s for drip)"
  start=$(wc -l </tmp/probe-mhd.$$)
  t=0.3; [ $path = /probe/drip ] && t=0.5
  hang $PM $path $t; sleep 2.5
  tail -n +$((start + 1)) /tmp/probe-mhd.$$
done

# ---- timeouts: evhttp_set_timeout / MHD_OPTION_CONNECTION_TIMEOUT = 2 s ----
kill $E $M 2>/dev/null || true; wait $E $M 2>/dev/null || true
export SPIKE_TIMEOUT=2 SPIKE_WAIT_MS=3500 SPIKE_DRIP_MS=3000
$B/evhttp_srv $PE 1 2>/tmp/probe-evhttp.$$ & E=$!
$B/mhd_srv ext $PM 1 2>/tmp/probe-mhd.$$ & M=$!
sleep 0.5
full() { # curl rc 18 = response cut short
  local rc=0
  curl -s -N --max-time 40 -X POST -d '{"x":1}' -o /dev/null \
    -w "  client: HTTP %{http_code}, %{size_download} bytes, %{time_total} s" "http://127.0.0.1:$1$2" || rc=$?
  echo " (curl rc=$rc)"
}
echo "=== timeout 2 s: /probe/wait replies after 3.5 s (no client hang-up)"
echo "evhttp:"; full $PE /probe/wait
echo "mhd(ext):"; full $PM /probe/wait
echo "=== timeout 2 s: /probe/drip with 3 s between chunks (10 chunks expected)"
echo "evhttp:"; full $PE /probe/drip; grep -E "closecb|end at" /tmp/probe-evhttp.$$ | tail -2
echo "mhd(ext):"; full $PM /probe/drip; grep -E "NOTIFY_COMPLETED" /tmp/probe-mhd.$$ | tail -1

# ---- limits: evhttp max_headers 16 KiB, max_body 4 MiB; MHD memory limit 32 KiB ----
echo "=== limits: 40 KB header, 5 MB body"
BIGH=$(head -c 40000 /dev/zero | tr '\0' a)
head -c 5000000 /dev/zero | tr '\0' b >/tmp/probe-body.$$
for n in "evhttp $PE" "mhd(ext) $PM"; do
  set -- $n
  echo "$1: header -> $(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Big: $BIGH" -d '{}' "http://127.0.0.1:$2/v1/chat/completions")," \
    "body -> $(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @/tmp/probe-body.$$ "http://127.0.0.1:$2/v1/chat/completions")"
done
rm -f /tmp/probe-body.$$
