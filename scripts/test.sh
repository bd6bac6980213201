#!/usr/bin/env bash
# test.sh - install what is missing, build, and run every test:
#   1. C unit tests (Check), gcc build
#   2. integration tests: the real gateway and fake provider, driven by the official
#      openai and @anthropic-ai/sdk npm packages under node's test runner
#   3. the same unit and integration tests in an ASan+UBSan build (clang)
#   4. the libFuzzer drivers (request parser, upstream SSE parser), briefly, over their seeds
# Set AHORRO_QUICK=1 to skip 3 and 4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
(cd tests/integration && npm ci --no-audit --no-fund --silent)
# A Redis of the tests' own on a free loopback port (never the system's), for the
# shared counters' tests (docs/state.md); killed at exit.
REDIS_PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1",
  () => { console.log(s.address().port); s.close(); })')
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no --save '' --appendonly no \
  --logfile '' >/dev/null 2>&1 &
REDIS_PID=$!
trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
  kill -0 "$REDIS_PID" 2>/dev/null || { echo "redis-server did not start"; exit 1; }
  sleep 0.1
done
export AHORRO_TEST_REDIS="redis://127.0.0.1:$REDIS_PORT/0"
echo "== Redis for the tests at $AHORRO_TEST_REDIS"
# A PostgreSQL cluster of the tests' own (a scratch data directory, a free loopback
# port, trust authentication), for the shared ledger's tests (docs/postgres.md). The
# server refuses to run as root: then the cluster belongs to the postgres user.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PG_PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1",
  () => { console.log(s.address().port); s.close(); })')
PG_DIR=$(mktemp -d /tmp/ahorro-test-pg.XXXXXX)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" -eq 0 ]; then chown postgres "$PG_DIR"; fi
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\n" \
  "$PG_PORT" "$PG_DIR" | as_pg tee -a "$PG_DIR/data/postgresql.conf" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start >/dev/null
stop_services() {
  kill "$REDIS_PID" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_services EXIT
export AHORRO_TEST_POSTGRES="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export AHORRO_TEST_PGDATA="$PG_DIR/data" AHORRO_TEST_PG_BIN="$PG_BIN"
echo "== PostgreSQL for the tests at $AHORRO_TEST_POSTGRES"
echo "== lint: clang-format, banned functions"
make -s lint
make -s -j"$(nproc)" all
echo "== word vectors of the semantic cache (set-up step, once)"
bash scripts/build-embeddings.sh
echo "== tokenizer rank files (set-up step, once)"
bash scripts/build-tokenizers.sh
(cd tests/tokenize && npm ci --no-audit --no-fund --silent)
echo "== unit tests (gcc)"
make -s unit
echo "== tokenizer ids against tiktoken (npm WASM) on the mixed corpus"
node tests/tokenize/compare.mjs --bin build/ahorro --data-dir build/data
echo "== the Claude estimate against counts the Anthropic API billed (recorded requests and answers)"
node tests/tokenize/claude_real.mjs --bin build/ahorro --data-dir build/data --check
echo "== integration tests (gcc build)"
make -s test-integration
if [ "${AHORRO_QUICK:-0}" != "1" ]; then
  echo "== unit + integration tests under ASan+UBSan (clang)"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  make -s -j"$(nproc)" SAN=1 CC=clang all
  make -s SAN=1 CC=clang unit
  make -s SAN=1 CC=clang test-integration
  node tests/tokenize/compare.mjs --bin build-san/ahorro --data-dir build/data --quick
  node tests/tokenize/claude_real.mjs --bin build-san/ahorro --data-dir build/data --check >/dev/null
  echo "== fuzzing the request parser, the upstream stream parser, the compressors, the shaping engine, the scorers and the labelled history (20 s each)"
  make -s fuzz
  for f in request sse shape_compress shape score multipart intent; do
    # New inputs go to a scratch corpus; the committed seed corpus stays small.
    scratch=$(mktemp -d)
    ./build-fuzz/fuzz_$f -max_total_time=20 -max_len=65536 -timeout=10 \
      -artifact_prefix="$scratch/" "$scratch" fuzz/corpus/$f 2>&1 | tail -n 2
    rm -rf "$scratch"
  done
fi
echo "all tests passed"
