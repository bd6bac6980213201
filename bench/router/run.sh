#!/usr/bin/env bash
# bench/router/run.sh - the routers measured on RouteLLM's MMLU outcomes (GPT-4-1106-preview
# vs Mixtral-8x7B): subject-wise cross-validation of the learned router with nested model
# selection, the complexity router, random routing and the oracle; cost-quality curves,
# APGR, GPT-4 call share and cost saved at 95% of GPT-4's accuracy; both rankings (by score, and
# by expected gain per extra dollar as `rank: gain_per_dollar` does) for the complexity and
# learned routers, per fold and with thresholds carried to unseen subjects; scorer speed.
# Writes bench/router/RESULTS.md and bench/router/curves.csv (a few minutes on 2 cores;
# docs/routing-quality.md reads the figures). Also checks that the `ahorro router` CLI
# gives the same complexity figures as the benchmark.
#
# Environment (defaults in brackets):
#   ROUTER_DATA     [../shared/data/routing/mmlu]  57 CSVs + contaminated_prompts.jsonl
#   ROUTER_VECTORS  [build/data/sif-100d.bin]      built by scripts/build-embeddings.sh if absent
#   ROUTER_FOLDS    [5]        subject-wise folds
#   ROUTER_SEED     [20240601] shuffle of the subjects into folds
#   ROUTER_BUILD    [build]    make's build directory (B=)
#   ROUTER_OUT      [bench/router/RESULTS.md]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
DATA=${ROUTER_DATA:-$ROOT/../shared/data/routing/mmlu}
VECTORS=${ROUTER_VECTORS:-build/data/sif-100d.bin}
FOLDS=${ROUTER_FOLDS:-5}
SEED=${ROUTER_SEED:-20240601}
B=${ROUTER_BUILD:-build}
OUT=${ROUTER_OUT:-$HERE/RESULTS.md}
PKGS="libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto"

make -s -j2 B="$B" "$B/libahorro.a" "$B/ahorro"
scripts/build-embeddings.sh "$VECTORS"

mkdir -p "$B/bench"
# shellcheck disable=SC2086
cc -O2 -g -std=c17 -D_GNU_SOURCE -pthread -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
  -Isrc $(pkg-config --cflags $PKGS) -o "$B/bench/router-cv" "$HERE/cv.c" "$B/libahorro.a" \
  $(pkg-config --libs $PKGS) -pthread -lm

TMP=$(mktemp)
CLI=$(mktemp)
CLIG=$(mktemp)
trap 'rm -f "$TMP" "$CLI" "$CLIG"' EXIT
"$B/bench/router-cv" "$DATA" "$VECTORS" "$HERE/curves.csv" "$FOLDS" "$SEED" >"$TMP"
AHORRO_LOG=error "$B/ahorro" router eval --data "$DATA"/*.csv \
  --exclude "$DATA/contaminated_prompts.jsonl" --kind complexity 2>/dev/null >"$CLI"
AHORRO_LOG=error "$B/ahorro" router eval --data "$DATA"/*.csv \
  --exclude "$DATA/contaminated_prompts.jsonl" --kind complexity --rank gain_per_dollar \
  2>/dev/null >"$CLIG"
{
  echo "# Routers on MMLU: cost and quality"
  echo
  echo "Written by \`bench/router/run.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m))."
  echo "Data: RouteLLM's MMLU outcomes (\`routing/mmlu/\`, lm-sys/RouteLLM @0b64fda)."
  echo "Method, reading and limits: \`docs/routing-quality.md\`. Curves (101 points each): \`bench/router/curves.csv\`."
  echo
  cat "$TMP"
  echo
  echo "## The same complexity figures from the CLI"
  echo
  echo '```'
  echo "\$ ahorro router eval --data mmlu/*.csv --exclude mmlu/contaminated_prompts.jsonl --kind complexity"
  cat "$CLI"
  echo '```'
  echo
  echo "Ranked by gain per extra dollar:"
  echo
  echo '```'
  echo "\$ ahorro router eval --data mmlu/*.csv --exclude mmlu/contaminated_prompts.jsonl --kind complexity --rank gain_per_dollar"
  cat "$CLIG"
  echo '```'
} >"$OUT"
echo "wrote $OUT"
