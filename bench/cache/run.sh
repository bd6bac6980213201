#!/usr/bin/env bash
# bench/cache/run.sh - the gateway answering from its cache, against nginx serving a static
# file, in one run (the floor: no proxy can answer faster than a static file).
#
#   bench/cache/run.sh            BENCH_DURATION [10] s per run, BENCH_RUNS [3] rounds, medians
#
# Targets, all on 127.0.0.1:
#   static    nginx (2 workers), GET of a file holding the chat.completion JSON
#   exact     ahorro (2 threads, ledger on), the same POST every time: exact hits
#   stream    ahorro, the same streamed POST: exact hits replayed as SSE
#   semantic  ahorro, a new spelling every time (letter case): exact misses answered by the
#             semantic cache (embedding, vector index lookup and word check on every request)
# Each under wrk -t1 -c1 and -t2 -c50. Writes bench/cache/RESULTS.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${BENCH_DURATION:-10}
RUNS=${BENCH_RUNS:-3}
PORT=${BENCH_PORT_BASE:-18560}
ST_PORT=$PORT UP_PORT=$((PORT + 1)) AH_PORT=$((PORT + 2))
OUT=${BENCH_OUT:-$HERE/RESULTS.md}
log() { printf '[cache-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } ||
  bash "$ROOT/scripts/deps.sh" --bench
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
make -C "$ROOT" -s -j2 >/dev/null
bash "$ROOT/scripts/build-embeddings.sh"
WORK=$(mktemp -d /tmp/ahorro-cache-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/tmp"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT
ANSWER='{"id":"chatcmpl-bench000000000000000000000001","object":"chat.completion","created":1732700000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"To reset your online banking password, open the app, choose Forgot password and follow the steps.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}'
printf '%s' "$ANSWER" >"$WORK/www/answer.json"
SSE="data: {\\\"id\\\":\\\"c1\\\",\\\"object\\\":\\\"chat.completion.chunk\\\",\\\"created\\\":1,\\\"model\\\":\\\"gpt-4o-mini\\\",\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{\\\"role\\\":\\\"assistant\\\",\\\"content\\\":\\\"To reset your password, choose Forgot password.\\\"},\\\"finish_reason\\\":null}]}\\n\\ndata: {\\\"id\\\":\\\"c1\\\",\\\"object\\\":\\\"chat.completion.chunk\\\",\\\"created\\\":1,\\\"model\\\":\\\"gpt-4o-mini\\\",\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{},\\\"finish_reason\\\":\\\"stop\\\"}]}\\n\\ndata: {\\\"id\\\":\\\"c1\\\",\\\"object\\\":\\\"chat.completion.chunk\\\",\\\"created\\\":1,\\\"model\\\":\\\"gpt-4o-mini\\\",\\\"choices\\\":[],\\\"usage\\\":{\\\"prompt_tokens\\\":12,\\\"completion_tokens\\\":9,\\\"total_tokens\\\":21}}\\n\\ndata: [DONE]\\n\\n"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/b; proxy_temp_path $WORK/tmp/p; fastcgi_temp_path $WORK/tmp/f;
  uwsgi_temp_path $WORK/tmp/u; scgi_temp_path $WORK/tmp/s;
  keepalive_requests 100000000;
  map \$http_accept \$sse { ~*text/event-stream 1; default 0; }
  server {
    listen 127.0.0.1:$ST_PORT;
    location / { root $WORK/www; default_type application/json; }
  }
  server {
    listen 127.0.0.1:$UP_PORT;
    location / {
      if (\$sse) { rewrite ^ /_sse last; }
      default_type application/json;
      return 200 '$ANSWER';
    }
    location = /_sse { internal; default_type text/event-stream; return 200 "$SSE"; }
  }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
cat >"$WORK/ahorro.yaml" <<CONF
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$UP_PORT/v1", api_key: bench }
ahorro:
  db: $WORK/bench.db
  threads: 2
  cache:
    exact: true
    persist: false
    embedder_path: $ROOT/build/data/sif-100d.bin
    routes:
      gpt-4o-mini: { semantic: true }
CONF
AHORRO_LOG=warn "$ROOT/build/ahorro" serve --config "$WORK/ahorro.yaml" --listen "127.0.0.1:$AH_PORT" &
PIDS+=($!)
sleep 1
AH=http://127.0.0.1:$AH_PORT/v1/chat/completions
# warm: one miss of each kind fills the cache
curl -sf "$AH" -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"how do I reset my online banking password"}]}' >/dev/null
curl -sfN "$AH" -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"how do I reset my online banking password"}]}' >/dev/null
sleep 0.2
check=$(curl -s -D - -o /dev/null "$AH" -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"HOW do I reset my online banking password"}]}' | tr -d '\r' | awk -F': ' 'tolower($1)=="x-ahorro-cache"{print $2}')
[ "$check" = semantic ] || { log "semantic path not hit (x-ahorro-cache: $check)"; exit 1; }

to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1e6} else print v}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A RPS P50 P99
for run in $(seq "$RUNS"); do
  for target in static exact stream semantic; do
    for conns in 1 50; do
      threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
      if [ "$target" = static ]; then
        out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency "http://127.0.0.1:$ST_PORT/answer.json")
      else
        out=$(BENCH_MODE=$target wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$HERE/hit.lua" "$AH")
      fi
      if echo "$out" | grep -q "Non-2xx"; then log "errors: $out"; exit 1; fi
      k="$target/$conns"
      RPS[$k]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
      P50[$k]+="$(echo "$out" | awk '$1=="50%" {print $2}' | to_us) "
      P99[$k]+="$(echo "$out" | awk '$1=="99%" {print $2}' | to_us) "
      log "run $run $k: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s"
    done
  done
done
med() { tr ' ' '\n' | grep . | median; }
stats=$(curl -s "http://127.0.0.1:$AH_PORT/admin/cache")
{
  echo "# Cache hits against a static file"
  echo
  echo "Written by \`bench/cache/run.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, shared machine). wrk for"
  echo "${DURATION} s per case, ${RUNS} interleaved rounds, medians. nginx (2 workers) serves the answer"
  echo "as a static file: the floor for any server. ahorro (2 threads, ledger on) answers from its cache."
  echo
  echo "| target | conns | req/s | vs static | p50 µs | p99 µs |"
  echo "|---|---|---|---|---|---|"
  for target in static exact stream semantic; do
    for conns in 1 50; do
      k="$target/$conns"
      r=$(echo "${RPS[$k]}" | med); s=$(echo "${RPS[static/$conns]}" | med)
      printf '| %s | %s | %.0f | %.2f | %.0f | %.0f |\n' "$target" "$conns" "$r" "$(echo "$r $s" | awk '{print $1/$2}')" \
        "$(echo "${P50[$k]}" | med)" "$(echo "${P99[$k]}" | med)"
    done
  done
  echo
  echo "- exact: the same request every time; stream: the same request streamed (replayed as SSE);"
  echo "  semantic: a new spelling every time (the letters' case), so an exact miss, then the"
  echo "  embedding of the last user turn, a vector-index lookup and the word-level check."
  echo "- Cache counters after the run: \`$stats\`"
} >"$OUT"
cat "$OUT"
