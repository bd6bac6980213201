#!/usr/bin/env bash
# bench/multi/run.sh - one, two and three gateway instances sharing PostgreSQL and Redis,
# against the embedded default (SQLite, in-process state), in one run (issue 9).
#
#   bench/multi/run.sh                       full run (about 6 minutes), writes bench/multi/RESULTS.md
#   MB_DURATION=3 MB_RUNS=1 bench/multi/run.sh   a quick look
#
# Every scenario is reached through the same nginx (proxy_pass, round robin over the
# scenario's instances, upstream keepalive), so each pays the same extra hop. The upstream
# is build/ahorro-fake. Every request carries a new prompt (bench/multi/unique.lua), so it
# misses the answer cache and goes upstream, and every scenario has the same policies on
# the path: a global daily budget (never reached: a reservation and a settlement per
# request), a global rate limit (never reached: a conditional add) and the exact cache (a
# lookup and a store). Scenarios:
#   embedded    1 instance: SQLite ledger, counters and cache in the process (the default)
#   shared-1    1 instance: ledger and keys in PostgreSQL, counters and cache in Redis
#   shared-2    2 instances, same backends
#   shared-3    3 instances, same backends
#   (MB_SCENARIOS="embedded redis-only pg-only shared-1" splits shared-1's cost: redis-only has
#   the counters and cache in Redis and the SQLite ledger; pg-only the PostgreSQL ledger and
#   in-process counters and cache)
# Figures: requests/s and p99 at 50 connections, p50 at 1 connection; medians of MB_RUNS
# interleaved rounds of MB_DURATION seconds. The "Redis and PostgreSQL on the path" line
# is shared-1's 1-connection p50 less embedded's: what the round trips add to a request.
#
# Environment: MB_DURATION [8] MB_RUNS [3] MB_CONNS [50] MB_THREADS [2] (each instance's
# event loops) MB_PORT_BASE [18560] MB_OUT [bench/multi/RESULTS.md] MB_KEEP=1 keeps the
# work directory.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${MB_DURATION:-8}
RUNS=${MB_RUNS:-3}
CONNS=${MB_CONNS:-50}
THREADS=${MB_THREADS:-2}
PORT=${MB_PORT_BASE:-18560}
OUT=${MB_OUT:-$HERE/RESULTS.md}
FAKE_PORT=$PORT LB_PORT=$((PORT + 1)) REDIS_PORT=$((PORT + 2)) PG_PORT=$((PORT + 3))
MASTER=sk-bench-master-0123456789

log() { printf '[multi %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in wrk redis-server; do command -v "$t" >/dev/null || die "$t is missing (bash scripts/deps.sh --bench; apt-get install redis-server)"; done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is missing (bash scripts/deps.sh --bench)"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || die "PostgreSQL is missing (apt-get install postgresql)"
make -C "$ROOT" -s -j2 >/dev/null
AHORRO=$ROOT/build/ahorro FAKE=$ROOT/build/ahorro-fake

WORK=$(mktemp -d /tmp/ahorro-multi.XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
declare -a PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_instances
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -d "$WORK/pg/data" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  if [ "${MB_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
declare -a INST=()
stop_instances() {
  for p in "${INST[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${INST[@]}"; do wait "$p" 2>/dev/null || true; done
  INST=()
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

wait_port() { # port
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on $1"
}

# ---- the shared services -------------------------------------------------------
log "starting the fake upstream, Redis and PostgreSQL"
"$FAKE" --listen "127.0.0.1:$FAKE_PORT" --threads 1 >"$WORK/fake.log" 2>&1 &
PIDS+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --logfile "$WORK/redis.log" &
PIDS+=($!)
mkdir -p "$WORK/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -A trust -U postgres >/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" \
  "$PG_PORT" "$WORK/pg" | as_pg tee -a "$WORK/pg/data/postgresql.conf" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w start >/dev/null
wait_port "$FAKE_PORT"; wait_port "$REDIS_PORT"

# ---- instances and the load balancer ---------------------------------------------
config() { # dir shared(0: none, 1: both, pg: ledger only, redis: state only) tag
  local shared=""
  if [ "$2" = 1 ] || [ "$2" = pg ]; then
    shared+="  ledger:
    url: postgres://postgres@127.0.0.1:$PG_PORT/$3
"
  fi
  if [ "$2" = 1 ] || [ "$2" = redis ]; then
    shared+="  state:
    url: redis://127.0.0.1:$REDIS_PORT/0
    prefix: \"bench-$3:\""
  fi
  cat <<EOF
model_list:
  - model_name: m
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$FAKE_PORT/v1", api_key: sk-fake, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 }
general_settings:
  master_key: $MASTER
ahorro:
  db: $1/ahorro.db
  threads: $THREADS
  cache: { exact: true, semantic: false, persist: false }
  budgets:
    - { name: day, scope: global, period: day, limit_usd: 1000000 }
  rate_limits:
    - { scope: global, rpm: 100000000 }
$shared
EOF
}

start_lb() { # ports...
  [ -f "$WORK/nginx.pid" ] && { kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; sleep 0.5; }
  local servers=""
  for p in "$@"; do servers+="    server 127.0.0.1:$p;"$'\n'; done
  cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-tmp;
  upstream gw {
$servers    keepalive 128;
  }
  server {
    listen 127.0.0.1:$LB_PORT;
    location / {
      proxy_pass http://gw;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
  mkdir -p "$WORK/nginx-tmp"
  "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" 2>>"$WORK/nginx-error.log" || die "nginx did not start"
  wait_port "$LB_PORT"
}

SCEN=0
start_scenario() { # name
  stop_instances
  local name=$1 n=1 shared=1
  case "$name" in
    embedded) shared=0 ;; shared-1) n=1 ;; shared-2) n=2 ;; shared-3) n=3 ;;
    redis-only) shared=redis ;; pg-only) shared=pg ;;
  esac
  SCEN=$((SCEN + 1))
  local tag="mb_${SCEN}"
  [ "$shared" != 0 ] && psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -XAtqc "CREATE DATABASE $tag" >/dev/null
  local ports=()
  for i in $(seq 1 "$n"); do
    local d="$WORK/$tag-$i" p=$((PORT + 10 + i))
    mkdir -p "$d"
    config "$d" "$shared" "$tag" >"$d/ahorro.yaml"
    "$AHORRO" serve --config "$d/ahorro.yaml" --listen "127.0.0.1:$p" >"$d/out.log" 2>"$d/err.log" &
    INST+=($!)
    ports+=("$p")
  done
  for p in "${ports[@]}"; do wait_port "$p"; done
  start_lb "${ports[@]}"
  # warm-up: connections, prepared state
  BENCH_KEY=$MASTER wrk -t2 -c"$CONNS" -d2 -s "$HERE/unique.lua" "http://127.0.0.1:$LB_PORT/" >/dev/null
}

# wrk's figures: requests/s, p50 and p99 in ms
measure() { # conns threads
  local out
  out=$(BENCH_KEY=$MASTER wrk -t"$2" -c"$1" -d"$DURATION" --latency -s "$HERE/unique.lua" "http://127.0.0.1:$LB_PORT/")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || die "non-2xx answers: $out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { # wrk's 1.23ms / 456.00us / 1.20s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

read -ra SCENARIOS <<<"${MB_SCENARIOS:-embedded shared-1 shared-2 shared-3}"
declare -A RPS P99 P50_1
for s in "${SCENARIOS[@]}"; do RPS[$s]=""; P99[$s]=""; P50_1[$s]=""; done
for r in $(seq 1 "$RUNS"); do
  for s in "${SCENARIOS[@]}"; do
    log "round $r: $s"
    start_scenario "$s"
    read -r rps _ p99 < <(measure "$CONNS" 2)
    read -r _ p50 _ < <(measure 1 1)
    RPS[$s]+="$rps "; P99[$s]+="$p99 "; P50_1[$s]+="$p50 "
    log "  $rps req/s, p99 $p99 ms at $CONNS connections; p50 $p50 ms at 1"
  done
done
stop_instances

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
M_RPS_E=$(median <<<"${RPS[embedded]}")
M_P50_E=$(median <<<"${P50_1[embedded]}")
{
  echo "# Many instances: one, two and three gateways on shared PostgreSQL and Redis"
  echo
  echo "\`bench/multi/run.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))."
  echo "Every figure is the median of $RUNS interleaved rounds of ${DURATION} s; each instance runs $THREADS event loops;"
  echo "all scenarios behind the same nginx round robin; every request misses the cache and meets a"
  echo "budget and a rate limit (see the script's header). Ratios are against \`embedded\` in the same run."
  echo "Everything (wrk, nginx, the instances, the fake upstream, Redis, PostgreSQL) shares this machine's CPUs."
  echo
  echo "| scenario | requests/s at $CONNS conns | vs embedded | p99 at $CONNS conns (ms) | p50 at 1 conn (ms) | added p50 vs embedded (ms) |"
  echo "|---|---|---|---|---|---|"
  for s in "${SCENARIOS[@]}"; do
    rps=$(median <<<"${RPS[$s]}"); p99=$(median <<<"${P99[$s]}"); p50=$(median <<<"${P50_1[$s]}")
    printf '| %s | %.0f | %.2f× | %.2f | %.3f | %+.3f |\n' "$s" "$rps" "$(awk -v a="$rps" -v b="$M_RPS_E" 'BEGIN {print a/b}')" \
      "$p99" "$p50" "$(awk -v a="$p50" -v b="$M_P50_E" 'BEGIN {print a-b}')"
  done
  echo
  echo "Raw rounds (requests/s; p99 ms; p50 ms at 1 connection):"
  echo
  for s in "${SCENARIOS[@]}"; do echo "- $s: ${RPS[$s]}; ${P99[$s]}; ${P50_1[$s]}"; done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
