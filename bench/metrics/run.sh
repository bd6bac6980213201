#!/usr/bin/env bash
# bench/metrics/run.sh - does scraping /metrics under load move the gateway's latency?
#
#   bench/metrics/run.sh                  5 rounds x 4 cases x 10 s with few series, the scrape
#                                         alone at the bounds, 3 rounds more at the bounds
#                                         (about 5 minutes); writes bench/metrics/RESULTS.md
#   METRICS_RUNS=1 METRICS_DURATION=3 bench/metrics/run.sh        a quick look
#
# build/ahorro (2 event loops, ledger on) in front of build/ahorro-fake, driven by wrk
# (-t2 -c50, non-streamed chat calls with one of 8 tag values) while a scraper hits
# /metrics never, every 100 ms, or every 10 ms (and, as a control, /health every 10 ms).
# Rounds interleave the cases; the medians of p50/p99 over rounds are reported with their
# ratio to "no scraper". Then the scrape alone: the gateway is filled to its series bounds (1,024 request series,
# 256 timing series) and /metrics is fetched 50 times, one at a time.
#
# Environment: METRICS_DURATION [10] seconds per wrk run, METRICS_RUNS [5] rounds,
# METRICS_PORT_BASE [18560], METRICS_OUT [bench/metrics/RESULTS.md],
# METRICS_NO_BUILD=1 skips make. Needs wrk, curl, python3 (apt-get install -y wrk).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${METRICS_DURATION:-10}
RUNS=${METRICS_RUNS:-5}
PORT_BASE=${METRICS_PORT_BASE:-18560}
OUT=${METRICS_OUT:-$HERE/RESULTS.md}
FAKE_PORT=$PORT_BASE
AH_PORT=$((PORT_BASE + 1))
URL=http://127.0.0.1:$AH_PORT

log() { printf '[metrics-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for c in wrk curl python3; do
  command -v "$c" >/dev/null || { log "missing $c (apt-get install -y wrk curl python3)"; exit 1; }
done
[ "${METRICS_NO_BUILD:-0}" = 1 ] || make -C "$ROOT" -s -j2 >/dev/null
WORK=$(mktemp -d "${TMPDIR:-/tmp}/metrics-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$ROOT/build/ahorro-fake" --listen "127.0.0.1:$FAKE_PORT" --threads 1 >"$WORK/fake.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/ahorro.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$FAKE_PORT/v1", api_key: sk-bench }
EOF
for i in $(seq 0 39); do
  cat >>"$WORK/ahorro.yaml" <<EOF
  - model_name: m$i
    litellm_params: { model: openai/m$i, api_base: "http://127.0.0.1:$FAKE_PORT/v1", api_key: sk-bench }
EOF
done
cat >>"$WORK/ahorro.yaml" <<EOF
ahorro:
  db: $WORK/ahorro.db
  threads: 2
  metrics: { tags: [feature, team], max_values: 40 }
  routing: { retries: 0 }
EOF
"$ROOT/build/ahorro" serve --config "$WORK/ahorro.yaml" --listen "127.0.0.1:$AH_PORT" \
  >"$WORK/ahorro.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -fs "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$URL/health" >/dev/null || { log "ahorro did not start: $(tail -5 "$WORK/ahorro.log")"; exit 1; }

cat >"$WORK/chat.lua" <<'EOF'
-- non-streamed chat calls, one of 8 feature tags each
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, { ["Content-Type"] = "application/json",
    ["x-ahorro-tags"] = "feature=f" .. (n % 8) }, nil)
end
EOF

# The scraper: one keep-alive connection, a fixed period, the scrape times kept.
cat >"$WORK/scrape.py" <<'EOF'
import http.client, sys, time
port, period, until, out, path = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port)
times, size = [], 0
nxt = time.monotonic()
while time.monotonic() < until:
    t0 = time.monotonic()
    c.request("GET", path)
    r = c.getresponse()
    size = len(r.read())
    times.append(time.monotonic() - t0)
    nxt += period
    time.sleep(max(0.0, nxt - time.monotonic()))
times.sort()
with open(out, "w") as f:
    f.write("%d %.3f %.3f %d\n" % (len(times), times[len(times) // 2] * 1e3, times[-1] * 1e3, size))
EOF

# wrk --latency prints "50%  1.23ms" ... "99%  4.56ms": as microseconds.
pct() { awk -v p="$1%" '$1 == p { v = $2; u = 1;
  if (v ~ /us$/) u = 1; else if (v ~ /ms$/) u = 1000; else if (v ~ /s$/) u = 1000000;
  sub(/[a-z]+$/, "", v); printf "%.0f\n", v * u }' "$2"; }

log "warm-up"
wrk -t2 -c50 -d2s -s "$WORK/chat.lua" "$URL/v1/chat/completions" >/dev/null
CASES=("none" "0.1" "0.01")
# rounds PHASE N: N interleaved rounds of every case; files wrk-PHASE-CASE-ROUND.txt.
rounds() {
  for r in $(seq "$2"); do
    for c in "${CASES[@]}"; do
      tag="$1-$c-$r"
      if [ "$c" != none ]; then
        # "health0.01": the same scraper on /health, to tell its own CPU from the render's
        path=/metrics period=$c
        [ "${c#health}" = "$c" ] || { path=/health; period=${c#health}; }
        python3 "$WORK/scrape.py" "$AH_PORT" "$period" \
          "$(python3 -c "import time; print(time.monotonic() + $DURATION)")" "$WORK/scrape-$tag.txt" "$path" &
        SP=$!
      fi
      wrk -t2 -c50 -d"${DURATION}s" --latency -s "$WORK/chat.lua" "$URL/v1/chat/completions" >"$WORK/wrk-$tag.txt"
      [ "$c" = none ] || wait "$SP"
      bad=$(awk '/Non-2xx/ { print $NF }' "$WORK/wrk-$tag.txt")
      [ -z "$bad" ] || { log "$1 round $r, scraper $c: $bad answers were not 2xx"; exit 1; }
      log "$1 round $r, scraper $c: p50 $(pct 50 "$WORK/wrk-$tag.txt") us, p99 $(pct 99 "$WORK/wrk-$tag.txt") us, $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$tag.txt") req/s"
    done
  done
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# table PHASE N: the medians of a phase as a markdown table.
table() {
  local p50 p99 base50 base99
  echo "| scraper | scrapes per run | scrape median (ms) | exposition (bytes) | p50 (us) | p99 (us) | p50 ratio | p99 ratio | req/s |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for c in "${CASES[@]}"; do
    p50=$(for r in $(seq "$2"); do pct 50 "$WORK/wrk-$1-$c-$r.txt"; done | median)
    p99=$(for r in $(seq "$2"); do pct 99 "$WORK/wrk-$1-$c-$r.txt"; done | median)
    [ "$c" = none ] && { base50=$p50; base99=$p99; }
    rps=$(for r in $(seq "$2"); do awk '/Requests\/sec/ {printf "%.0f\n", $2}' "$WORK/wrk-$1-$c-$r.txt"; done | median)
    if [ "$c" = none ]; then
      echo "| none | 0 | - | - | $p50 | $p99 | 1.00 | 1.00 | $rps |"
    else
      n=$(for r in $(seq "$2"); do awk '{print $1}' "$WORK/scrape-$1-$c-$r.txt"; done | median)
      ms=$(for r in $(seq "$2"); do awk '{print $2}' "$WORK/scrape-$1-$c-$r.txt"; done | median)
      by=$(for r in $(seq "$2"); do awk '{print $4}' "$WORK/scrape-$1-$c-$r.txt"; done | median)
      what="every $(awk -v s="${c#health}" 'BEGIN { print s * 1000 }') ms"
      [ "${c#health}" = "$c" ] || what="/health $what (control)"
      echo "| $what | $n | $ms | $by | $p50 | $p99 | $(ratio "$p50" "$base50") | $(ratio "$p99" "$base99") | $rps |"
    fi
  done
}

CASES=("none" "0.1" "0.01" "health0.01")
rounds few "$RUNS"
CASES=("none" "0.1" "0.01")

# The scrape alone, with every table at its bound: 40 models x 40 feature values x
# 3 statuses of traffic (past 1,024 series the rest counts as "other").
log "filling the series tables"
cat >"$WORK/fill.py" <<'EOF'
import http.client, json, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port)
for m in range(40):
    for f in range(40):
        for s in ("", " [[fault:429]]", " [[fault:500]]"):
            body = json.dumps({"model": "m%d" % m, "messages": [{"role": "user", "content": "hi" + s}]})
            c.request("POST", "/v1/chat/completions", body,
                      {"Content-Type": "application/json", "x-ahorro-tags": "feature=f%d,team=t%d" % (f, m)})
            c.getresponse().read()
EOF
python3 "$WORK/fill.py" "$AH_PORT"
curl -fs "$URL/metrics" >"$WORK/full.txt"
SERIES=$(grep -c '^ahorro_requests_total{' "$WORK/full.txt")
TSERIES=$(grep -c '^ahorro_request_duration_seconds_count{' "$WORK/full.txt")
LINES=$(wc -l <"$WORK/full.txt")
BYTES=$(wc -c <"$WORK/full.txt")
for _ in $(seq 50); do curl -fs -o /dev/null -w '%{time_total}\n' "$URL/metrics"; done >"$WORK/scrape-times.txt"
SCRAPE_MED=$(awk '{ printf "%.2f\n", $1 * 1000 }' "$WORK/scrape-times.txt" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
SCRAPE_MAX=$(awk '{ printf "%.2f\n", $1 * 1000 }' "$WORK/scrape-times.txt" | sort -n | tail -1)
RSS=$(awk '/VmRSS/ { print $2 }' "/proc/${PIDS[1]}/status")
FULL_RUNS=$(( RUNS > 3 ? 3 : RUNS ))
rounds full "$FULL_RUNS"
{
  echo "# /metrics under load"
  echo
  echo "\`bench/metrics/run.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
  echo "gateway with 2 event loops and the ledger on, in front of \`ahorro-fake\`; wrk -t2 -c50,"
  echo "non-streamed calls, ${DURATION} s per run, medians of $RUNS interleaved rounds. Everything"
  echo "(wrk, gateway, fake provider, scraper) shares the same CPUs, so the figures include their"
  echo "contention; compare the rows with each other, not with bench/RESULTS.md."
  echo
  echo "## Few series (the load's own: one model, 8 tag values)"
  echo
  echo "The control scrapes /health at the /metrics scraper's fastest rate: what the scraper"
  echo "itself costs on these shared CPUs, whatever the gateway renders."
  echo
  CASES=("none" "0.1" "0.01" "health0.01")
  table few "$RUNS"
  CASES=("none" "0.1" "0.01")
  echo
  echo "## The scrape itself, tables at their bounds"
  echo
  echo "After 4,800 requests over 40 models x 40 tag values x 3 statuses: $SERIES request series"
  echo "(bound 1,024, the rest under \"other\"), $TSERIES timing series; the exposition is $LINES lines,"
  echo "$BYTES bytes. 50 sequential scrapes with curl: median ${SCRAPE_MED} ms, max ${SCRAPE_MAX} ms"
  echo "(the render runs on one event loop, which serves nothing else meanwhile). Gateway RSS"
  echo "after filling: $((RSS / 1024)) MB."
  echo
  echo "## Tables at their bounds, under the same load ($FULL_RUNS rounds)"
  echo
  table full "$FULL_RUNS"
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
