#!/usr/bin/env bash
# bench/batch/run.sh - `ahorro batch run` on 100,000 requests against rate limits (issue 6).
#
# The fake provider answers after BATCH_LATENCY_MS (1 s) and enforces, per model, a
# sliding-window RPM as OpenAI does (429 + Retry-After): 600 RPM for the "slow"
# deployment's model and 10,000 RPM for the "fast" one; the gateway's configuration
# gives the same rpm to the two deployments of the alias the batch asks for. The batch
# is killed with SIGKILL half-way and run again on the same files, which must resume.
#
# Measured: wall time against the ideal the limits allow (N / 10,600 per minute, plus
# one answer's latency), peak RSS of each run, lines lost or answered twice (from the
# output file), requests the fake received (from its own log: a line sent again after
# the kill costs one more), the most requests each model received in any sliding
# 60-second window (from the fake's log: must stay within its limit), and 429s.
# Writes bench/batch/RESULTS.md.
#
# Environment (defaults in brackets):
#   BATCH_N            [100000]  requests
#   BATCH_LATENCY_MS   [1000]    the fake's time to answer
#   BATCH_SLOW_RPM     [600]
#   BATCH_FAST_RPM     [10000]
#   BATCH_CONCURRENCY  [256]
#   BATCH_KILL_AT      [0.5]     share of lines done when the first run is killed (0: no kill)
#   BATCH_BUILD        [build]
#   BATCH_OUT          [bench/batch/RESULTS.md]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
N=${BATCH_N:-100000}
LAT=${BATCH_LATENCY_MS:-1000}
SLOW=${BATCH_SLOW_RPM:-600}
FAST=${BATCH_FAST_RPM:-10000}
CONC=${BATCH_CONCURRENCY:-256}
KILL_AT=${BATCH_KILL_AT:-0.5}
B=${BATCH_BUILD:-build}
OUT=${BATCH_OUT:-$HERE/RESULTS.md}

make -s -j2 B="$B" "$B/ahorro" "$B/ahorro-fake"
W=$(mktemp -d)
FAKE_PID=
cleanup() { [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; [ -n "${BATCH_KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT

node -e '
const n = +process.argv[1], out = [];
for (let i = 0; i < n; i++)
  out.push(JSON.stringify({ custom_id: `doc-${i}`, method: "POST", url: "/v1/chat/completions",
    body: { model: "bulk", max_tokens: 20, messages: [
      { role: "system", content: "Classify the compliance risk of the document: low, medium or high." },
      { role: "user", content: `Document ${i}: the supplier agreement renews every year unless cancelled ninety days before; penalties apply to late deliveries.` }] } }));
require("fs").writeFileSync(process.argv[2], out.join("\n") + "\n");' "$N" "$W/in.jsonl"

PORT=$((20000 + RANDOM % 20000))
"$B/ahorro-fake" --listen "127.0.0.1:$PORT" --threads 2 --ttft-ms "$LAT" \
  --rate-limit "gpt-4o-mini=$SLOW" --rate-limit "gpt-4o=$FAST" --log "$W/fake.log" >"$W/fake.out" 2>&1 &
FAKE_PID=$!
for _ in $(seq 50); do grep -q listening "$W/fake.out" && break; sleep 0.1; done
cat >"$W/ahorro.yaml" <<YAML
model_list:
  - model_name: bulk
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$PORT/v1", api_key: sk-fake, rpm: $SLOW }
  - model_name: bulk
    litellm_params: { model: openai/gpt-4o, api_base: "http://127.0.0.1:$PORT/v1", api_key: sk-fake, rpm: $FAST }
ahorro:
  db: $W/ahorro.db
  threads: 2
  logging: { requests: false }
YAML

# one run; prints "wall_s peak_rss_kb exit_code"
run() {
  local kill_at=$1 t0 t1 pid rss=0 code=0
  t0=$(date +%s.%N)
  AHORRO_LOG=error "$B/ahorro" --config "$W/ahorro.yaml" batch run "$W/in.jsonl" -o "$W/out.jsonl" \
    --concurrency "$CONC" --quiet &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$hwm" ] && rss=$hwm
    if [ "$kill_at" != 0 ] && [ -f "$W/out.jsonl" ]; then
      local done_n
      done_n=$(wc -l <"$W/out.jsonl")
      if [ "$(echo "$done_n >= $N * $kill_at" | bc)" = 1 ]; then
        kill -9 "$pid"
        break
      fi
    fi
    sleep 0.5
  done
  wait "$pid" || code=$?
  t1=$(date +%s.%N)
  echo "$(echo "$t1 - $t0" | bc) $rss $code"
}

read -r W1 R1 C1 < <(run "$KILL_AT")
D1=$(wc -l <"$W/out.jsonl")
W2=0; R2=0; C2=0
if [ "$KILL_AT" != 0 ]; then
  read -r W2 R2 C2 < <(run 0)
fi
kill "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true; FAKE_PID=

node "$HERE/check.mjs" "$W" "$N" "$LAT" "$SLOW" "$FAST" "$CONC" "$KILL_AT" "$W1" "$R1" "$C1" "$D1" "$W2" "$R2" "$C2" >"$OUT"
cat "$OUT"
