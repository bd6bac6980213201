#!/usr/bin/env bash
# HTTP server library spike: libevent 2.1 evhttp vs libmicrohttpd (Debian 12).
#
#   bench/spikes/http-server/run.sh          build, benchmark, summarise, probe
#   bench/spikes/http-server/run.sh build    build only
#
# Env: DURATION (s per wrk run, default 5), RUNS (default 3), OUT (results dir).
# Needs: gcc, pkg-config, libevent-dev, libmicrohttpd-dev, wrk.
# Every server runs with 2 threads / loops on 127.0.0.1.  All servers are
# started once and the wrk runs are interleaved (run 1 of every case, then
# run 2, ...) so slow phases of a noisy machine spread over all cases.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
B=$HERE/build
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
OUT=${OUT:-$HERE/results}
CFLAGS="-std=c17 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread"

build() {
  mkdir -p "$B"
  gcc $CFLAGS evhttp_srv.c -o "$B/evhttp_srv" $(pkg-config --cflags --libs libevent)
  gcc $CFLAGS mhd_srv.c -o "$B/mhd_srv" $(pkg-config --cflags --libs libmicrohttpd libevent)
}
build
[ "${1:-}" = build ] && exit 0
command -v wrk >/dev/null || { echo "wrk missing (apt-get install -y wrk)"; exit 1; }

mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*.txt
SAMPLES=$OUT/samples.tsv
printf 'case\tconns\trun\trps\tp50_us\tp99_us\tcpu_us_per_req\terrors\n' >"$SAMPLES"
TCK=$(getconf CLK_TCK)

# name port command...
declare -A PORT PID
start() {
  local name=$1 port=$2; shift 2
  "$@" 2>"$OUT/raw/$name.stderr" &
  PID[$name]=$!
  PORT[$name]=$port
}
SERVERS=(evhttp mhd-pool mhd-turbo mhd-tpc mhd-ext)
start evhttp 18080 "$B/evhttp_srv" 18080 2
start mhd-pool 18081 "$B/mhd_srv" pool 18081 2
start mhd-turbo 18082 "$B/mhd_srv" turbo 18082 2
start mhd-tpc 18083 "$B/mhd_srv" tpc 18083 2
start mhd-ext 18084 "$B/mhd_srv" ext 18084 2
cleanup() { for s in "${SERVERS[@]}"; do kill "${PID[$s]}" 2>/dev/null || true; done; }
trap cleanup EXIT
sleep 1

status() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/${PID[$1]}/status"; }
cputicks() { awk '{print $14 + $15}' "/proc/${PID[$1]}/stat"; }

declare -A IDLE_RSS IDLE_THR
for s in "${SERVERS[@]}"; do
  kill -0 "${PID[$s]}" || { echo "$s did not start"; cat "$OUT/raw/$s.stderr"; exit 1; }
  IDLE_RSS[$s]=$(status "$s" VmRSS)
  IDLE_THR[$s]=$(status "$s" Threads)
done

# case = server:endpoint-label:path
CASES=(
  "evhttp:nonstream:/v1/chat/completions"
  "evhttp:stream:/v1/chat/completions/stream"
  "evhttp:stream-burst:/v1/chat/completions/stream_burst"
  "mhd-pool:nonstream:/v1/chat/completions"
  "mhd-pool:stream:/v1/chat/completions/stream"
  "mhd-pool:stream-burst:/v1/chat/completions/stream_burst"
  "mhd-turbo:nonstream:/v1/chat/completions"
  "mhd-turbo:stream:/v1/chat/completions/stream"
  "mhd-tpc:nonstream:/v1/chat/completions"
  "mhd-tpc:stream:/v1/chat/completions/stream"
  "mhd-ext:nonstream:/v1/chat/completions"
  "mhd-ext:stream:/v1/chat/completions/stream"
  "mhd-ext:stream-resume:/v1/chat/completions/stream_resume"
)
# "1pin": same -t1 -c1 run with the server's threads and wrk pinned to CPU 0.
# Unpinned -c1 latency on this VM is bimodal (~10 us when the scheduler keeps
# client and server on one CPU, ~85 us when every hop is a cross-CPU wake-up),
# so the pinned row is the reproducible per-request round trip.
CONNS=("1:-t1 -c1" "1pin:-t1 -c1" "50:-t2 -c50")

to_us() { # wrk latency "123.45us" / "1.23ms" / "1.02s" -> microseconds
  awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) m=1; else if (v ~ /ms$/) m=1000; else if (v ~ /m$/) m=60e6; else m=1e6; printf "%.0f", n*m }'
}

echo "warm-up (1 s per case)..."
for c in "${CASES[@]}"; do
  IFS=: read -r srv ep path <<<"$c"
  wrk -t2 -c50 -d1s -s post.lua "http://127.0.0.1:${PORT[$srv]}$path" >/dev/null
done

for run in $(seq 1 "$RUNS"); do
  for cc in "${CONNS[@]}"; do
    conns=${cc%%:*}; wopts=${cc#*:}
    for c in "${CASES[@]}"; do
      IFS=: read -r srv ep path <<<"$c"
      f="$OUT/raw/${srv}_${ep}_c${conns}_r${run}.txt"
      pin=()
      if [ "$conns" = 1pin ]; then
        taskset -a -p -c 0 "${PID[$srv]}" >/dev/null
        pin=(taskset -c 0)
      fi
      t0=$(cputicks "$srv")
      # shellcheck disable=SC2086
      "${pin[@]}" wrk $wopts -d"${DURATION}s" --latency -s post.lua "http://127.0.0.1:${PORT[$srv]}$path" >"$f"
      t1=$(cputicks "$srv")
      [ "$conns" = 1pin ] && taskset -a -p -c 0-$(($(nproc) - 1)) "${PID[$srv]}" >/dev/null
      rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
      nreq=$(awk '/requests in/ {print $1}' "$f")
      p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$f")")
      p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$f")")
      err=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e + 0}' "$f")
      cpu=$(awk -v d=$((t1 - t0)) -v n="$nreq" -v t="$TCK" 'BEGIN{ printf "%.1f", (n > 0) ? d * 1e6 / t / n : 0 }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv/$ep" "$conns" "$run" "$rps" "$p50" "$p99" "$cpu" "$err" >>"$SAMPLES"
      printf 'run %s c%-2s %-24s %10s req/s  p50 %6s us  p99 %6s us  cpu %6s us/req  err %s\n' \
        "$run" "$conns" "$srv/$ep" "$rps" "$p50" "$p99" "$cpu" "$err"
    done
  done
done

# ---- summary ----
median() { sort -g | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v c="$1" -v n="$2" -v k="$3" '$1 == c && $2 == n {print $k}' "$SAMPLES"; }
fmt_lat() { awk -v u="$1" 'BEGIN{ if (u >= 1000) printf "%.2f ms", u / 1000; else printf "%d us", u }'; }
SUM=$OUT/summary.md
{
  echo "Medians of $RUNS runs x ${DURATION}s (wrk; -t1 -c1 and -t2 -c50; POST $(awk '/BODYLEN/ {print $2; exit}' "$OUT"/raw/*_r1.txt)-byte body)."
  echo
  echo "conns 1pin = -t1 -c1 with server and wrk pinned to CPU 0 (see run.sh)."
  echo
  echo "| server / endpoint | conns | req/s (median) | req/s min-max | p50 | p99 | server CPU us/req | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for c in "${CASES[@]}"; do
    IFS=: read -r srv ep path <<<"$c"
    for cc in "${CONNS[@]}"; do
      n=${cc%%:*}
      rps=$(col "$srv/$ep" "$n" 4 | median)
      mn=$(col "$srv/$ep" "$n" 4 | sort -g | head -1)
      mx=$(col "$srv/$ep" "$n" 4 | sort -g | tail -1)
      p50=$(col "$srv/$ep" "$n" 5 | median)
      p99=$(col "$srv/$ep" "$n" 6 | median)
      cpu=$(col "$srv/$ep" "$n" 7 | median)
      err=$(col "$srv/$ep" "$n" 8 | awk '{s += $1} END {print s + 0}')
      printf '| %s / %s | %s | %.0f | %.0f-%.0f | %s | %s | %s | %s |\n' "$srv" "$ep" "$n" "$rps" "$mn" "$mx" \
        "$(fmt_lat "$p50")" "$(fmt_lat "$p99")" "$cpu" "$err"
    done
  done
  echo
  echo "| server | threads idle | VmRSS idle (kB) | threads after | VmRSS after load (kB) | VmHWM (kB) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for s in "${SERVERS[@]}"; do
    echo "| $s | ${IDLE_THR[$s]} | ${IDLE_RSS[$s]} | $(status "$s" Threads) | $(status "$s" VmRSS) | $(status "$s" VmHWM) |"
  done
} >"$SUM"
echo
cat "$SUM"

{
  echo "# machine"
  nproc; grep -m1 'model name' /proc/cpuinfo; uname -r
  echo "# load during run (uptime at end)"; uptime
  dpkg-query -W -f='${Package} ${Version}\n' libevent-dev libmicrohttpd-dev wrk 2>/dev/null || true
} >"$OUT/machine.txt"

echo
echo "disconnect probes:"
./probe.sh | tee "$OUT/probe.txt"
