#!/usr/bin/env bash
# bench/run.sh - ahorro's overhead against nginx, in one run, against one upstream.
#
#   bench/run.sh                          full run (about 11 minutes), writes bench/RESULTS.md
#   BENCH_DURATION=3 BENCH_RUNS=1 bench/run.sh      a quick look (about 1 minute)
#   bench/run.sh exec CMD [ARGS]          start the targets, run CMD instead of the benchmark
#                                         (BENCH_URL_DIRECT/_NGINX/_AHORRO, BENCH_PID_AHORRO... set)
#
# Three targets, all on 127.0.0.1, all in front of the same upstream:
#   direct  nginx answering POST /v1/chat/completions with a fixed OpenAI
#           chat.completion (or, on "Accept: text/event-stream", a fixed SSE stream)
#   nginx   nginx proxy_pass to that upstream (upstream{} keepalive 64): the floor of a proxy hop
#   ahorro  build/ahorro serve, ledger on (temp SQLite), same upstream
# Each under wrk at -t1 -c1 and -t2 -c50, non-streamed and streamed, BENCH_RUNS
# interleaved rounds of BENCH_DURATION seconds; medians. See bench/README.md.
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10]  seconds per wrk run        BENCH_RUNS [3]  rounds
#   BENCH_WARMUP [2]     seconds of -c50 warm-up per target and mode
#   BENCH_TTFB_REQUESTS [200]  sequential stream requests per target and round for TTFB (bench/ttfb.c)
#   BENCH_PORT_BASE [18460]    upstream = base, nginx proxy = base+1, ahorro = base+2, fake = base+3
#   BENCH_PIN [1]        also run the 1-connection cases with wrk and every server pinned to CPU 0
#   BENCH_PACED_REQUESTS [60]  TTFB requests per target and round against the paced upstream
#                        (build/ahorro-fake --itl-ms BENCH_PACED_ITL_MS [1]); 0 skips it
#   BENCH_UPSTREAM_WORKERS [1] BENCH_NGINX_WORKERS [2] BENCH_AHORRO_THREADS [2]
#   BENCH_OUT [bench/RESULTS.md]   BENCH_KEEP=1 keeps the work directory (raw wrk output, logs)
#   BENCH_NO_INSTALL=1   never call apt-get         BENCH_NO_BUILD=1  do not run make
#   BENCH_AHORRO_BIN [build/ahorro]  BENCH_FAKE_BIN [build/ahorro-fake]  the binaries to measure
#                        (another build directory, or a copy kept for an A/B comparison)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${BENCH_DURATION:-10}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-2}
TTFB_N=${BENCH_TTFB_REQUESTS:-200}
PORT_BASE=${BENCH_PORT_BASE:-18460}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
PX_WORKERS=${BENCH_NGINX_WORKERS:-2}
AH_THREADS=${BENCH_AHORRO_THREADS:-2}
OUT=${BENCH_OUT:-$HERE/RESULTS.md}
UP_PORT=$PORT_BASE
PX_PORT=$((PORT_BASE + 1))
AH_PORT=$((PORT_BASE + 2))
FAKE_PORT=$((PORT_BASE + 3))
PIN=${BENCH_PIN:-1}
PACED_N=${BENCH_PACED_REQUESTS:-60}
PACED_ITL=${BENCH_PACED_ITL_MS:-1}
PATH_CHAT=/v1/chat/completions

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- prerequisites ---------------------------------------------------------
need_pkgs=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v sqlite3 >/dev/null || need_pkgs+=(sqlite3)
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "${BENCH_NO_INSTALL:-0}" = 1 ] && die "missing: ${need_pkgs[*]}"
  log "installing ${need_pkgs[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "building (make -s -j2)"
  make -C "$ROOT" -s -j2 >/dev/null
fi
AHORRO=${BENCH_AHORRO_BIN:-$ROOT/build/ahorro}
FAKE=${BENCH_FAKE_BIN:-$ROOT/build/ahorro-fake}
[ -x "$AHORRO" ] && [ -x "$FAKE" ] || die "$AHORRO or $FAKE missing"

for p in "$UP_PORT" "$PX_PORT" "$AH_PORT" "$FAKE_PORT"; do
  if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
    die "port $p is in use (set BENCH_PORT_BASE)"
  fi
done

# ---- work directory and cleanup ----------------------------------------------
WORK=$(mktemp -d /tmp/ahorro-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers may run as another user
mkdir -p "$WORK/raw" "$WORK/tmp"
declare -a STARTED=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${STARTED[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM
gcc -O2 -Wall -o "$WORK/ttfb" "$HERE/ttfb.c" || die "cannot build bench/ttfb.c"

# ---- the upstream's answers ------------------------------------------------------
# A fixed chat.completion, shaped like OpenAI's (usage with the details objects).
JSON_ANSWER='{"id":"chatcmpl-bench000000000000000000000001","object":"chat.completion","created":1732700000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today? Ask me anything and I will do my best.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":19,"total_tokens":27,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}'
# A fixed stream: role chunk, 20 content chunks, finish chunk, usage chunk
# ("choices":[], as OpenAI sends with stream_options.include_usage), [DONE].
# Written with nginx's "\n" escape; nginx turns it into newlines.
chunk() { # delta finish_reason
  printf 'data: {"id":"chatcmpl-bench000000000000000000000001","object":"chat.completion.chunk","created":1732700000,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}],"usage":null}\\n\\n' "$1" "$2"
}
# nginx limits one config token to 4 KB, so the stream is kept in parts of at
# most 5 events (set $sse_N) and joined by the return.
SSE_PARTS=()
SSE_PARTS+=("$(chunk '{"role":"assistant","content":"","refusal":null}' null)")
for w in Hello '!' ' How' ' can' ' I' ' help' ' you' ' today' '?' ' Ask' ' me' ' anything' ' and' ' I' ' will' ' do' ' my' ' very' ' best' '.'; do
  SSE_PARTS+=("$(chunk "{\"content\":\"$w\"}" null)")
done
SSE_PARTS+=("$(chunk '{}' '"stop"')")
SSE_PARTS+=('data: {"id":"chatcmpl-bench000000000000000000000001","object":"chat.completion.chunk","created":1732700000,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_0ba0d124f1","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":20,"total_tokens":28,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n')
SSE_PARTS+=('data: [DONE]\n\n')
SSE_SET=
SSE_JOIN=
for ((k = 0; k < ${#SSE_PARTS[@]}; k += 5)); do
  part=$(printf '%s' "${SSE_PARTS[@]:k:5}")
  SSE_SET+="      set \$sse_$k '$part';"$'\n'
  SSE_JOIN+="\$sse_$k"
done

nginx_common() { # name
  cat <<EOF
pid $WORK/$1.pid;
error_log $WORK/$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/$1-body;
  proxy_temp_path $WORK/tmp/$1-proxy;
  fastcgi_temp_path $WORK/tmp/$1-fastcgi;
  uwsgi_temp_path $WORK/tmp/$1-uwsgi;
  scgi_temp_path $WORK/tmp/$1-scgi;
  keepalive_timeout 65s;
  keepalive_requests 100000000;
EOF
}
{
  echo "worker_processes $UP_WORKERS;"
  nginx_common upstream
  cat <<EOF
  map \$http_accept \$bench_stream { ~*text/event-stream 1; default 0; }
  server {
    listen 127.0.0.1:$UP_PORT;
    location = $PATH_CHAT {
      if (\$bench_stream) { rewrite ^ /_bench_sse last; }
      default_type application/json;
      return 200 '$JSON_ANSWER';
    }
    location = /_bench_sse {
      internal;
      default_type text/event-stream;
$SSE_SET      return 200 "$SSE_JOIN";
    }
  }
}
EOF
} >"$WORK/upstream.conf"
{
  echo "worker_processes $PX_WORKERS;"
  nginx_common proxy
  cat <<EOF
  upstream llm {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 100000000;
  }
  upstream paced {
    server 127.0.0.1:$FAKE_PORT;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$PX_PORT;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    location / {
      proxy_pass http://llm;
    }
    location /paced/ {
      proxy_pass http://paced/;
    }
  }
}
EOF
} >"$WORK/proxy.conf"
cat >"$WORK/ahorro.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$UP_PORT/v1", api_key: bench }
  - model_name: bench-paced
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$FAKE_PORT/v1", api_key: bench }
# The request log off, as nginx's access_log is: the comparison is of the proxy hop.
ahorro: { db: $WORK/bench.db, threads: $AH_THREADS, logging: { requests: false } }
EOF
printf '%s' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}' >"$WORK/body.json"
printf '%s' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"stream":true}' >"$WORK/body_stream.json"
printf '%s' '{"model":"bench-paced","messages":[{"role":"user","content":"hello"}],"stream":true}' >"$WORK/body_paced.json"

# ---- start the servers ------------------------------------------------------------
declare -A PID URL
start_nginx() { # name port
  "$NGINX" -t -q -p "$WORK" -c "$WORK/$1.conf" -g 'daemon off;' 2>"$WORK/$1.test.log" ||
    { cat "$WORK/$1.test.log" >&2; die "nginx $1 config"; }
  "$NGINX" -p "$WORK" -c "$WORK/$1.conf" -g 'daemon off;' 2>>"$WORK/$1.error.log" &
  PID[$1]=$!
  STARTED+=("$!")
  URL[$1]="http://127.0.0.1:$2$PATH_CHAT"
}
wait_port() { # port
  for _ in $(seq 1 100); do
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  die "nothing listens on port $1"
}
log "starting upstream nginx ($UP_WORKERS worker) on $UP_PORT, proxy nginx ($PX_WORKERS workers) on $PX_PORT"
start_nginx upstream "$UP_PORT"
start_nginx proxy "$PX_PORT"
wait_port "$UP_PORT"
wait_port "$PX_PORT"
sleep 0.3
URL[direct]=${URL[upstream]}
URL[nginx]=${URL[proxy]}

wait_line() { # file pid what
  for _ in $(seq 1 200); do
    grep -q listening "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "${1%.stdout}.stderr" >&2; die "$3 exited"; }
    sleep 0.05
  done
  die "$3 did not print its listening line"
}
if [ "$PACED_N" -gt 0 ]; then
  log "starting the paced upstream (ahorro-fake --itl-ms $PACED_ITL) on $FAKE_PORT"
  "$FAKE" --listen "127.0.0.1:$FAKE_PORT" --threads 1 --itl-ms "$PACED_ITL" \
    >"$WORK/fake.stdout" 2>"$WORK/fake.stderr" &
  PID[fake]=$!
  STARTED+=("$!")
  wait_line "$WORK/fake.stdout" "${PID[fake]}" ahorro-fake
  URL[paced_direct]="http://127.0.0.1:$FAKE_PORT$PATH_CHAT"
  URL[paced_nginx]="http://127.0.0.1:$PX_PORT/paced$PATH_CHAT"
  URL[paced_ahorro]="http://127.0.0.1:$AH_PORT$PATH_CHAT"
fi

log "starting ahorro ($AH_THREADS threads, ledger $WORK/bench.db) on $AH_PORT"
# BENCH_AHORRO_PRELOAD: a library to preload into ahorro only (an allocator to compare).
env ${BENCH_AHORRO_PRELOAD:+LD_PRELOAD=$BENCH_AHORRO_PRELOAD} \
  "$AHORRO" serve --config "$WORK/ahorro.yaml" --listen "127.0.0.1:$AH_PORT" \
  >"$WORK/ahorro.stdout" 2>"$WORK/ahorro.stderr" &
PID[ahorro]=$!
STARTED+=("$!")
URL[ahorro]="http://127.0.0.1:$AH_PORT$PATH_CHAT"
wait_line "$WORK/ahorro.stdout" "${PID[ahorro]}" ahorro
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
AH_IDLE_RSS=$(status_kb "${PID[ahorro]}" VmRSS)
AH_IDLE_THREADS=$(status_kb "${PID[ahorro]}" Threads)
log "ahorro idle: VmRSS ${AH_IDLE_RSS} kB, $AH_IDLE_THREADS threads"

# nginx workers: the masters' children
workers_of() { pgrep -P "$1" | tr '\n' ' '; }
declare -A PIDS_OF
PIDS_OF[direct]=$(workers_of "${PID[upstream]}")
PIDS_OF[nginx]=$(workers_of "${PID[proxy]}")
PIDS_OF[ahorro]=${PID[ahorro]}
[ -n "${PIDS_OF[direct]// /}" ] && [ -n "${PIDS_OF[nginx]// /}" ] || die "no nginx workers"
cputicks() { # pids... -> utime+stime ticks summed
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
TCK=$(getconf CLK_TCK)
median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

ledger_count() { sqlite3 -cmd '.timeout 5000' "$WORK/bench.db" 'SELECT count(*) FROM ledger' 2>/dev/null || echo -1; }
ledger_settle() { # wait until the writer has committed everything (count stable for 0.3 s)
  local a b
  a=$(ledger_count)
  for _ in $(seq 1 50); do
    sleep 0.3
    b=$(ledger_count)
    [ "$a" = "$b" ] && break
    a=$b
  done
  echo "$a"
}

# ---- sanity: every target answers both ways -------------------------------------------
for t in direct nginx ahorro; do
  body=$(curl -sS --max-time 5 -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "${URL[$t]}")
  case $body in *'"usage"'*'"prompt_tokens"'*) ;; *) die "$t: unexpected non-stream answer: ${body:0:300}" ;; esac
  sse=$(curl -sS --max-time 5 -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    --data-binary @"$WORK/body_stream.json" "${URL[$t]}")
  case $sse in *'data: [DONE]'*) ;; *) die "$t: unexpected stream answer: ${sse:0:300}" ;; esac
  n_events=$(grep -c '^data: ' <<<"$sse")
  eval "SANITY_${t}='$(printf '%s' "$body" | wc -c) B JSON, ${n_events} events / $(printf '%s\n' "$sse" | wc -c) B SSE'"
done
log "sanity: direct ${SANITY_direct}; nginx ${SANITY_nginx}; ahorro ${SANITY_ahorro}"

# bench/run.sh exec CMD ARGS...: start the three targets, run CMD with their
# addresses in the environment instead of the benchmark, then clean up.
if [ "${1:-}" = exec ]; then
  shift
  export BENCH_URL_DIRECT=${URL[direct]} BENCH_URL_NGINX=${URL[nginx]} BENCH_URL_AHORRO=${URL[ahorro]}
  export BENCH_PID_AHORRO=${PID[ahorro]} BENCH_PIDS_UPSTREAM=${PIDS_OF[direct]} BENCH_PIDS_NGINX=${PIDS_OF[nginx]}
  export BENCH_WORK=$WORK BENCH_LUA=$HERE/chat.lua BENCH_DB=$WORK/bench.db
  log "exec $*"
  "$@"
  exit $?
fi
JSON_BYTES=$(printf '%s' "$JSON_ANSWER" | wc -c)

# ---- wrk runs -------------------------------------------------------------------
to_us() { # wrk latency "123.45us" / "1.23ms" / "1.02s" -> microseconds
  awk -v v="$1" 'BEGIN{ n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /m$/) m = 60e6; else m = 1e6; printf "%.0f", n * m }'
}
SAMPLES=$WORK/samples.tsv
printf 'target\tmode\tconns\trun\trps\tp50_us\tp99_us\tcompleted\terrors\tcpu_us_req\tledger_added\n' >"$SAMPLES"
wopts_for() { case $1 in 1 | 1pin) echo "-t1 -c1" ;; *) echo "-t2 -c$1" ;; esac; }
CONNS_LIST=(1 50)
[ "$PIN" = 1 ] && CONNS_LIST+=(1pin)
ALL_CPUS=0-$(($(nproc) - 1))
# 1pin: the servers on the request's path (the upstream's workers, and the proxy's
# workers or ahorro's threads) and wrk all on CPU 0, so the round trip is the
# sum of CPU work on one core with no cross-CPU wake-ups.
pin() { # cpus target
  local p
  # shellcheck disable=SC2086
  for p in ${PIDS_OF[direct]} ${PIDS_OF[$2]}; do taskset -a -p -c "$1" "$p" >/dev/null; done
}

log "warm-up: ${WARMUP}s at -c50 per target and mode"
for mode in nonstream stream; do
  for t in direct nginx ahorro; do
    BENCH_STREAM=$([ $mode = stream ] && echo 1 || echo 0) timeout --foreground $((WARMUP + 30)) \
      wrk -t2 -c50 -d"${WARMUP}s" -s "$HERE/chat.lua" "${URL[$t]}" >"$WORK/raw/warmup_${t}_${mode}.txt"
  done
done

# TTFB of streams: sequential stream requests on one keep-alive connection
# (bench/ttfb.c): time to the answer's first byte and to its first body byte
# (the first event), median of each per round.
# The paced variant does the same against ahorro-fake --itl-ms, whose events come
# one at a time, so the first one is forwarded before the next exists.
declare -A TPORT
TPORT[direct]=$UP_PORT TPORT[nginx]=$PX_PORT TPORT[ahorro]=$AH_PORT
TPORT[paced_direct]=$FAKE_PORT TPORT[paced_nginx]=$PX_PORT TPORT[paced_ahorro]=$AH_PORT
declare -A TPATH
TPATH[direct]=$PATH_CHAT TPATH[nginx]=$PATH_CHAT TPATH[ahorro]=$PATH_CHAT
TPATH[paced_direct]=$PATH_CHAT TPATH[paced_nginx]=/paced$PATH_CHAT TPATH[paced_ahorro]=$PATH_CHAT
ttfb_round() { # target run requests body -> "median_first_byte_us median_first_event_us"
  local f=$WORK/raw/ttfb_${1}_r$2.txt n
  timeout --foreground 300 "$WORK/ttfb" 127.0.0.1 "${TPORT[$1]}" "${TPATH[$1]}" "$4" "$3" >"$f" || die "ttfb $1 failed"
  n=$(wc -l <"$f")
  [ "$n" = "$3" ] || die "ttfb $1: $n answers of $3"
  echo "$(awk '{print $1}' "$f" | median) $(awk '{print $2}' "$f" | median)"
}
TTFB_TSV=$WORK/ttfb.tsv
printf 'target\trun\tfirst_byte_us\tfirst_event_us\tledger_added\trequests\n' >"$TTFB_TSV"
ttfb_measure() { # target run requests body
  local before=0 v added=
  [ "${1#paced_}" = ahorro ] && before=$(ledger_settle)
  v=$(ttfb_round "$@")
  [ "${1#paced_}" = ahorro ] && added=$(($(ledger_settle) - before))
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "${v% *}" "${v#* }" "$added" "$3" >>"$TTFB_TSV"
  log "run $2 ttfb $1: median first byte ${v% *} us, first event ${v#* } us over $3 stream requests${added:+  ledger +$added}"
}

total_runs=$((RUNS * 6 * ${#CONNS_LIST[@]}))
i=0
for run in $(seq 1 "$RUNS"); do
  for conns in "${CONNS_LIST[@]}"; do
    for mode in nonstream stream; do
      for t in direct nginx ahorro; do
        i=$((i + 1))
        f="$WORK/raw/${t}_${mode}_c${conns}_r${run}.txt"
        # shellcheck disable=SC2086
        pids=(${PIDS_OF[$t]})
        before=0
        [ "$t" = ahorro ] && before=$(ledger_settle)
        taskset_wrk=()
        if [ "$conns" = 1pin ]; then
          pin 0 "$t"
          taskset_wrk=(taskset -c 0)
        fi
        c0=$(cputicks "${pids[@]}")
        # shellcheck disable=SC2046
        BENCH_STREAM=$([ $mode = stream ] && echo 1 || echo 0) timeout --foreground $((DURATION + 30)) \
          "${taskset_wrk[@]}" wrk $(wopts_for "$conns") -d"${DURATION}s" --latency -s "$HERE/chat.lua" "${URL[$t]}" >"$f"
        c1=$(cputicks "${pids[@]}")
        [ "$conns" = 1pin ] && pin "$ALL_CPUS" "$t"
        added=
        [ "$t" = ahorro ] && added=$(($(ledger_settle) - before))
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
        done_n=$(awk '/requests in/ {print $1}' "$f")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$f")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$f")")
        err=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e + 0}' "$f")
        cpu=$(awk -v d=$((c1 - c0)) -v n="$done_n" -v t="$TCK" 'BEGIN{ printf "%.1f", (n > 0) ? d * 1e6 / t / n : 0 }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$mode" "$conns" "$run" "$rps" "$p50" "$p99" \
          "$done_n" "$err" "$cpu" "$added" >>"$SAMPLES"
        log "$(printf '%2d/%d run %s %-6s %-9s c%-4s %9s req/s  p50 %6s us  p99 %6s us  cpu %6s us/req  err %s%s' \
          "$i" "$total_runs" "$run" "$t" "$mode" "$conns" "$rps" "$p50" "$p99" "$cpu" "$err" \
          "${added:+  ledger +$added}")"
        sleep 0.5
      done
    done
  done
  for t in direct nginx ahorro; do
    ttfb_measure "$t" "$run" "$TTFB_N" "$WORK/body_stream.json"
  done
  if [ "$PACED_N" -gt 0 ]; then
    ttfb_measure paced_direct "$run" "$PACED_N" "$WORK/body_stream.json"
    ttfb_measure paced_nginx "$run" "$PACED_N" "$WORK/body_stream.json"
    ttfb_measure paced_ahorro "$run" "$PACED_N" "$WORK/body_paced.json"
  fi
done

# ---- peak RSS, then stop ahorro and check its ledger ------------------------------------
hwm_sum() { local s=0 p; for p in "$@"; do s=$((s + $(status_kb "$p" VmHWM))); done; echo "$s"; }
# shellcheck disable=SC2086
HWM_direct=$(hwm_sum ${PIDS_OF[direct]})
# shellcheck disable=SC2086
HWM_nginx=$(hwm_sum ${PIDS_OF[nginx]})
HWM_up_master=$(status_kb "${PID[upstream]}" VmHWM)
HWM_px_master=$(status_kb "${PID[proxy]}" VmHWM)
HWM_ahorro=$(status_kb "${PID[ahorro]}" VmHWM)
AH_END_RSS=$(status_kb "${PID[ahorro]}" VmRSS)
AH_END_THREADS=$(status_kb "${PID[ahorro]}" Threads)
LEDGER_BEFORE_STOP=$(ledger_settle)
kill -TERM "${PID[ahorro]}"
AH_EXIT=0
wait "${PID[ahorro]}" || AH_EXIT=$?
LEDGER_TOTAL=$(ledger_count)
LEDGER_STATUS=$(sqlite3 "$WORK/bench.db" "SELECT status || ': ' || count(*) FROM ledger GROUP BY status ORDER BY status" | paste -sd, - | sed 's/,/, /g')
LEDGER_PROVIDER_USAGE=$(sqlite3 "$WORK/bench.db" "SELECT count(*) FROM ledger WHERE status = 200 AND usage_source = 'provider' AND cost_usd > 0")
LEDGER_200=$(sqlite3 "$WORK/bench.db" "SELECT count(*) FROM ledger WHERE status = 200")
LEDGER_OVERHEAD=$(sqlite3 "$WORK/bench.db" "SELECT CASE stream WHEN 1 THEN 'streams' ELSE 'non-streamed' END || ': mean ' || printf('%.1f', avg(overhead_us)) || ' us over ' || count(*) || ' rows' FROM ledger WHERE status = 200 GROUP BY stream" | paste -sd';' - | sed 's/;/; /g')

# ---- summary ------------------------------------------------------------------------------
col() { awk -F'\t' -v t="$1" -v m="$2" -v c="$3" -v k="$4" '$1 == t && $2 == m && $3 == c {print $k}' "$SAMPLES"; }
med() { col "$@" | median; } # target mode conns field
us_ms() { awk -v u="$1" 'BEGIN{ if (u == "nan" || u == "") print "n/a"; else if (u >= 1000 || u <= -1000) printf "%.2f ms", u / 1000; else printf "%.0f us", u }'; }
us1() { awk -v u="$1" 'BEGIN{ if (u == "nan" || u == "") print "n/a"; else printf "%.1f us", u }'; }
mb() { awk -v k="$1" 'BEGIN{ printf "%.1f MB", k / 1024 }'; }
verdict() { # value op target -> PASS/MISS
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN{ if (v == "n/a" || v == "nan" || v == "") { print "n/a"; exit }
    ok = (op == "<=") ? v <= t : (op == ">=") ? v >= t : (op == "<") ? v < t : v > t; print ok ? "PASS" : "MISS" }'
}
ttfb_med() { awk -F'\t' -v t="$1" -v k="$2" '$1 == t {print $k}' "$TTFB_TSV" | median; } # target field
sub_() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "nan" || b == "nan") print "nan"; else printf "%.1f", a - b }'; }
ratio() { awk -v a="$1" -v n="$2" 'BEGIN{ if (a == "nan" || n == "nan" || n <= 0) print "n/a"; else printf "%.2f", a / n }'; }

# Added latency: p50(proxy) - p50(direct) within each round (the two runs a few
# seconds apart), then the median of the rounds.
added_med() { # proxy mode conns
  awk -F'\t' -v p="$1" -v m="$2" -v c="$3" '$2 == m && $3 == c && $1 == "direct" {d[$4] = $6}
    $2 == m && $3 == c && $1 == p {x[$4] = $6} END {for (r in x) if (r in d) print x[r] - d[r]}' "$SAMPLES" | median
}
declare -A ADDED RATIO_ADD RATIO_TPUT
for c in "${CONNS_LIST[@]}"; do
  [ "$c" = 50 ] && continue
  for mode in nonstream stream; do
    ADDED[nginx_${mode}_$c]=$(added_med nginx $mode $c)
    ADDED[ahorro_${mode}_$c]=$(added_med ahorro $mode $c)
    RATIO_ADD[${mode}_$c]=$(ratio "${ADDED[ahorro_${mode}_$c]}" "${ADDED[nginx_${mode}_$c]}")
  done
done
for mode in nonstream stream; do
  RATIO_TPUT[$mode]=$(ratio "$(med ahorro $mode 50 5)" "$(med nginx $mode 50 5)")
done
declare -A TTFB TTFB_ADD TTFE TTFE_ADD
for t in direct nginx ahorro paced_direct paced_nginx paced_ahorro; do
  TTFB[$t]=$(ttfb_med $t 3)
  TTFE[$t]=$(ttfb_med $t 4)
done
for t in nginx ahorro; do
  TTFB_ADD[$t]=$(sub_ "${TTFB[$t]}" "${TTFB[direct]}")
  TTFB_ADD[paced_$t]=$(sub_ "${TTFB[paced_$t]}" "${TTFB[paced_direct]}")
  TTFE_ADD[$t]=$(sub_ "${TTFE[$t]}" "${TTFE[direct]}")
  TTFE_ADD[paced_$t]=$(sub_ "${TTFE[paced_$t]}" "${TTFE[paced_direct]}")
done

# ledger check: each ahorro wrk run (and TTFB round) added rows = completed + in flight at wrk's stop
LEDGER_ROWS=$(awk -F'\t' '$1 == "ahorro" {n = ($3 == "50") ? 50 : 1; extra = $11 - $8; ok = (extra >= 0 && extra <= n) ? "ok" : "MISMATCH";
  printf "| %s | %s | %s | %s | %s | %d | %s |\n", $2, $3, $4, $8, $11, extra, ok}' "$SAMPLES")
LEDGER_BAD=$(awk -F'\t' '$1 == "ahorro" {n = ($3 == "50") ? 50 : 1; extra = $11 - $8; if (extra < 0 || extra > n) bad++} END {print bad + 0}' "$SAMPLES")
TTFB_BAD=$(awk -F'\t' '($1 == "ahorro" || $1 == "paced_ahorro") && $5 != $6 {bad++} END {print bad + 0}' "$TTFB_TSV")
TTFB_REQS_AH=$(awk -F'\t' '$1 == "ahorro" || $1 == "paced_ahorro" {s += $6} END {print s + 0}' "$TTFB_TSV")
WRK_DONE_AH=$(awk -F'\t' '$1 == "ahorro" {s += $8} END {print s + 0}' "$SAMPLES")
ROWS_AH=$(awk -F'\t' '$1 == "ahorro" {s += $11} END {print s + 0}' "$SAMPLES")
ERRORS_TOTAL=$(awk -F'\t' 'NR > 1 {s += $9} END {print s + 0}' "$SAMPLES")
LEDGER_VERDICT=PASS
[ "$LEDGER_BAD" = 0 ] && [ "$TTFB_BAD" = 0 ] && [ "$LEDGER_TOTAL" = "$LEDGER_BEFORE_STOP" ] && [ "$AH_EXIT" = 0 ] ||
  LEDGER_VERDICT=MISS
log "ledger: $LEDGER_VERDICT ($LEDGER_TOTAL rows; wrk completed $WRK_DONE_AH, rows added in wrk runs $ROWS_AH)"

CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NGINX_V=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
WRK_V=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $1, $2}')
CURL_V=$( (curl --version || true) | awk 'NR == 1 {print $1, $2}')
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
LIBS=$(for p in libevent libcurl jansson sqlite3; do printf '%s %s, ' "$p" "$(pkg-config --modversion $p 2>/dev/null || echo '?')"; done | sed 's/, $//')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
conns_label() { case $1 in 1pin) echo "1, pinned" ;; *) echo "$1" ;; esac; }

row() { # label target mode conns
  local t=$2 m=$3 c=$4
  [ -n "$(col $t $m $c 5)" ] || return 0
  printf '| %s | %s | %s | %.0f | %s | %s | %s | %s |\n' "$1" "$m" "$(conns_label $c)" "$(med $t $m $c 5)" \
    "$(us_ms "$(med $t $m $c 6)")" "$(us_ms "$(med $t $m $c 7)")" "$(med $t $m $c 10)" \
    "$(col $t $m $c 9 | awk '{s += $1} END {print s + 0}')"
}
added_row() { # label mode conns [target note]
  local m=$2 c=$3
  printf '| %s | %s | %s | %s | ahorro/nginx <= 2.5%s | %s |\n' "$1" "$(us_ms "${ADDED[nginx_${m}_$c]}")" \
    "$(us_ms "${ADDED[ahorro_${m}_$c]}")" "${RATIO_ADD[${m}_$c]}" "${4:-}" "$(verdict "${RATIO_ADD[${m}_$c]}" "<=" 2.5)"
}

{
  cat <<EOF
# ahorro benchmark results

Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Method and how to run: \`bench/README.md\`.

## Machine and versions

- Machine: $(nproc) cores, ${CPU_MODEL}, kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM.
  A shared, noisy VM: other tenants' load moves these figures from run to run (load average at the end
  of this run: ${LOADAVG}), and 1-connection latencies are bimodal (a request whose hops stay on one CPU
  takes a fraction of one that wakes the other CPU at each hop). Read the figures as ratios within this
  run and as orders of magnitude, not as absolutes; the per-run table at the end shows the spread.
- nginx ${NGINX_V}; ${WRK_V}; ${CURL_V}; ahorro \`${GIT_REV}\` (gcc -O2, ${LIBS}).
- Everything on 127.0.0.1; wrk, the upstream and the proxy under test share the $(nproc) cores.

## Setup

| role | what | processes |
|---|---|---|
| upstream (\`direct\`) | nginx \`return 200\`: a fixed ${JSON_BYTES}-byte OpenAI \`chat.completion\` (\`"model":"gpt-4o-mini"\`, full \`usage\`), or on \`Accept: text/event-stream\` a fixed SSE stream (role chunk, 20 content chunks, finish chunk, usage chunk with \`"choices":[]\`, \`data: [DONE]\`), sent in one piece | ${UP_WORKERS} worker |
| \`nginx\` | nginx \`proxy_pass\` to the upstream, \`upstream{}\` with \`keepalive 64\`, \`proxy_http_version 1.1\`, \`Connection ""\`, \`proxy_buffering off\` | ${PX_WORKERS} workers |
| \`ahorro\` | \`${AHORRO#"$ROOT"/} serve\`, keyless loopback mode, one deployment \`openai/gpt-4o-mini\` at the upstream, ledger on (SQLite, WAL, temp file) | ${AH_THREADS} worker threads + ledger writer |
| paced upstream (TTFB only) | \`build/ahorro-fake --threads 1 --itl-ms ${PACED_ITL}\`: the same kind of stream, one event at a time | 1 thread |

Answers as checked before the runs: direct ${SANITY_direct}; nginx ${SANITY_nginx}; ahorro ${SANITY_ahorro}
(ahorro asks the upstream for usage in streams and drops the usage chunk for a client that did not ask for it).

Load: wrk 4.1 with \`bench/chat.lua\` (\`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}\`,
plus \`"stream":true\` for streams), \`-t1 -c1\` and \`-t2 -c50\`, ${DURATION} s per run, ${RUNS} interleaved rounds
(every case once per round), ${WARMUP} s warm-up per target and mode. Each figure is the median over the rounds.
"1, pinned" is the same \`-t1 -c1\` run with wrk and every server process on the path pinned to CPU 0
(\`taskset\`): no cross-CPU wake-ups, so its latency is the sum of the CPU work of one round trip; it
is a cross-check for the noisy unpinned 1-connection figures, not one of the targets.
Server CPU is utime+stime of the server's processes (nginx: its workers; ahorro: all its threads,
ledger writer included) over the run, per completed request.
Added latency at 1 connection: p50(proxy) - p50(direct) within each round, then the median of the rounds.
Stream TTFB: sequential stream requests on one keep-alive connection (\`bench/ttfb.c\`, which times from
the request's write to the answer's first byte, as curl's \`time_starttransfer\`, and to the first byte of
its body, i.e. the first event), ${TTFB_N} per target and round against the nginx upstream (and ${PACED_N}
against the paced one); median per round, then the median of the rounds.

## Medians

| target | mode | conns | req/s | p50 | p99 | server CPU us/req | errors (all runs) |
|---|---|---:|---:|---:|---:|---:|---:|
EOF
  for mode in nonstream stream; do
    for c in "${CONNS_LIST[@]}"; do
      row "direct (upstream)" direct $mode $c
      row "nginx proxy" nginx $mode $c
      row "ahorro" ahorro $mode $c
    done
  done
  cat <<EOF

| process | idle RSS | peak RSS (VmHWM) | notes |
|---|---:|---:|---|
| upstream nginx | | $(mb "$HWM_direct") | sum of ${UP_WORKERS} worker(s); master $(mb "$HWM_up_master") |
| nginx proxy | | $(mb "$HWM_nginx") | sum of ${PX_WORKERS} workers; master $(mb "$HWM_px_master") |
| ahorro | $(mb "$AH_IDLE_RSS") | $(mb "$HWM_ahorro") | idle: right after its listening line, ${AH_IDLE_THREADS} threads; after the runs $(mb "$AH_END_RSS"), ${AH_END_THREADS} threads |

| stream TTFB (median) | direct | nginx proxy | ahorro | added: nginx | added: ahorro |
|---|---:|---:|---:|---:|---:|
| nginx upstream (whole stream in one piece): first byte | $(us1 "${TTFB[direct]}") | $(us1 "${TTFB[nginx]}") | $(us1 "${TTFB[ahorro]}") | $(us1 "${TTFB_ADD[nginx]}") | $(us1 "${TTFB_ADD[ahorro]}") |
| nginx upstream: first event | $(us1 "${TTFE[direct]}") | $(us1 "${TTFE[nginx]}") | $(us1 "${TTFE[ahorro]}") | $(us1 "${TTFE_ADD[nginx]}") | $(us1 "${TTFE_ADD[ahorro]}") |
EOF
  if [ "$PACED_N" -gt 0 ]; then
    echo "| paced upstream (ahorro-fake, one event at a time): first byte | $(us1 "${TTFB[paced_direct]}") | $(us1 "${TTFB[paced_nginx]}") | $(us1 "${TTFB[paced_ahorro]}") | $(us1 "${TTFB_ADD[paced_nginx]}") | $(us1 "${TTFB_ADD[paced_ahorro]}") |"
    echo "| paced upstream: first event | $(us1 "${TTFE[paced_direct]}") | $(us1 "${TTFE[paced_nginx]}") | $(us1 "${TTFE[paced_ahorro]}") | $(us1 "${TTFE_ADD[paced_nginx]}") | $(us1 "${TTFE_ADD[paced_ahorro]}") |"
  fi
  cat <<EOF

With the nginx upstream the whole stream reaches the proxy in one read, so a proxy's first byte
leaves only after it has handled every event of that read. Against the paced upstream the first
event is handled alone, but the machine idles between events (a stream lasts about 20 ms), so each
hop also pays the VM's wake-up of an idle CPU: nginx's added TTFB grows there too, and ahorro is
best compared with nginx in that row.

## Derived figures vs targets

| figure | nginx | ahorro | ahorro/nginx or value | target | verdict |
|---|---:|---:|---:|---|---|
EOF
  added_row "added p50 latency, 1 conn, non-stream (p50 proxy - p50 direct)" nonstream 1
  added_row "added p50 latency, 1 conn, stream (whole stream)" stream 1
  cat <<EOF
| throughput, 50 conns, non-stream | $(printf '%.0f' "$(med nginx nonstream 50 5)") req/s | $(printf '%.0f' "$(med ahorro nonstream 50 5)") req/s | ${RATIO_TPUT[nonstream]} | ahorro/nginx >= 0.5 | $(verdict "${RATIO_TPUT[nonstream]}" ">=" 0.5) |
| throughput, 50 conns, stream | $(printf '%.0f' "$(med nginx stream 50 5)") req/s | $(printf '%.0f' "$(med ahorro stream 50 5)") req/s | ${RATIO_TPUT[stream]} | ahorro/nginx >= 0.5 | $(verdict "${RATIO_TPUT[stream]}" ">=" 0.5) |
| ahorro idle RSS | | $(mb "$AH_IDLE_RSS") | $(mb "$AH_IDLE_RSS") | < 20 MB | $(verdict "$AH_IDLE_RSS" "<" 20480) |
| added stream TTFB (ahorro - direct), nginx upstream, first byte | $(us1 "${TTFB_ADD[nginx]}") | $(us1 "${TTFB_ADD[ahorro]}") | $(awk -v u="${TTFB_ADD[ahorro]}" 'BEGIN{printf "%.3f ms", u / 1000}') | < 0.2 ms | $(verdict "${TTFB_ADD[ahorro]}" "<" 200) |
EOF
  if [ "$PACED_N" -gt 0 ]; then
    echo "| added stream TTFB (ahorro - direct), paced upstream, first event | $(us1 "${TTFE_ADD[paced_nginx]}") | $(us1 "${TTFE_ADD[paced_ahorro]}") | $(awk -v u="${TTFE_ADD[paced_ahorro]}" 'BEGIN{printf "%.3f ms", u / 1000}') | < 0.2 ms | $(verdict "${TTFE_ADD[paced_ahorro]}" "<" 200) |"
  fi
  echo "| ledger: one row per request (below) | | | ${LEDGER_TOTAL} rows | every request one row | ${LEDGER_VERDICT} |"
  if [ "$PIN" = 1 ]; then
    added_row "cross-check: added p50 latency, 1 conn pinned, non-stream" nonstream 1pin " (cross-check)"
    added_row "cross-check: added p50 latency, 1 conn pinned, stream" stream 1pin " (cross-check)"
  fi
  cat <<EOF

## Ledger check

After each ahorro run the script waits until the ledger's row count is stable (\`sqlite3\` count), then
compares the rows added with the requests wrk reports completed. wrk stops with up to one request in
flight per connection; ahorro still answers and records those, so rows - completed must be between 0
and the connection count.

| mode | conns | round | wrk completed | ledger rows added | in flight at wrk's stop | check |
|---|---|---:|---:|---:|---:|---|
${LEDGER_ROWS}

- TTFB rounds (${TTFB_REQS_AH} stream requests to ahorro): each round added exactly as many rows as it sent requests: $([ "$TTFB_BAD" = 0 ] && echo yes || echo "NO ($TTFB_BAD rounds differ)").
- ahorro stopped with SIGTERM (exit ${AH_EXIT}); ledger rows before the stop ${LEDGER_BEFORE_STOP}, after ${LEDGER_TOTAL}
  (warm-up and sanity requests included). Measured wrk runs: ${WRK_DONE_AH} requests completed, ${ROWS_AH} rows added.
- Rows by status: ${LEDGER_STATUS} (499: a request wrk left in flight when it stopped and closed its connections). Rows with status 200 priced from the provider's usage: ${LEDGER_PROVIDER_USAGE} of ${LEDGER_200}.
- ahorro's own \`overhead_us\` column (status 200 rows): ${LEDGER_OVERHEAD}.
- wrk errors (non-2xx, socket errors) over all runs and targets: ${ERRORS_TOTAL}.

## Raw per-run figures

<details><summary>every wrk run (round = interleaved round)</summary>

| target | mode | conns | round | req/s | p50 us | p99 us | completed | errors | CPU us/req |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|
EOF
  awk -F'\t' 'NR > 1 {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}' "$SAMPLES"
  cat <<EOF

| stream TTFB | round | requests | first byte us (median) | first event us (median) |
|---|---:|---:|---:|---:|
EOF
  awk -F'\t' 'NR > 1 {printf "| %s | %s | %s | %s | %s |\n", $1, $2, $6, $3, $4}' "$TTFB_TSV"
  echo
  echo "</details>"
} >"$OUT"
log "wrote $OUT"
sed -n '/^## Medians/,/^## Ledger check/p' "$OUT" >&2
