#!/usr/bin/env bash
# bench/semcache/intent.sh - the semantic cache with a labelled history (cache.intents,
# src/cache/intent.c) on Banking77: trained on one half of the replay order, replayed on
# the other half alone, and the halves swapped; the rules without labels on the same halves
# for reference; the classifier's accuracy, speed and a learning curve. Writes
# bench/semcache/INTENTS.md (about a minute on 2 cores). `node bench/semcache/replay.mjs
# --intents` checks the same halves through the real gateway (REPLAY_INTENTS.md).
#
# Environment (defaults in brackets):
#   SEMCACHE_BANKING  [/work/shared/data/workloads/banking77-train.csv]
#   SEMCACHE_VECTORS  [build/data/sif-100d.bin]   built by scripts/build-embeddings.sh if absent
#   SEMCACHE_OUT      [bench/semcache/INTENTS.md]
#   INTENT_BITS, INTENT_EPOCHS, INTENT_RATE, INTENT_CHAR, INTENT_L2  training options other
#                     than the shipped defaults (ah_intent_defaults), for experiments
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
BANKING=${SEMCACHE_BANKING:-/work/shared/data/workloads/banking77-train.csv}
VECTORS=${SEMCACHE_VECTORS:-build/data/sif-100d.bin}
OUT=${SEMCACHE_OUT:-$HERE/INTENTS.md}
PKGS="libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto hiredis libpq"

make -s -j"$(nproc)" build/libahorro.a
scripts/build-embeddings.sh "$VECTORS"
mkdir -p build/bench
# shellcheck disable=SC2086
cc -O2 -g -std=c17 -D_GNU_SOURCE -pthread -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
  -Isrc $(pkg-config --cflags $PKGS) -o build/bench/semcache-intent "$HERE/intent.c" \
  build/libahorro.a $(pkg-config --libs $PKGS) -pthread -lm

TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
build/bench/semcache-intent "$BANKING" "$VECTORS" >"$TMP"
{
  echo "# Semantic cache with a labelled history (Banking77)"
  echo
  echo "Written by \`bench/semcache/intent.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m))."
  echo "Data: \`$(basename "$BANKING")\` in replay.mjs's order (seed 77), cut into halves A (first"
  echo "5,001) and B (5,002). Each half is replayed alone from an empty cache; \"B\" columns: the model"
  echo "learnt from A, replayed on B; \"A\" columns: the other way round. Candidates: the 4 nearest"
  echo "stored prompts by SIF cosine, as the gateway looks them up. Rules: \`cosine\` (>= t), \`check\`"
  echo "(the re-ranking check, the default without labels), \`intent\` (same label, both with"
  echo "probability >= t, cosine >= floor: what \`cache.intents\` ships), \`intent+neg\` (also no"
  echo "negation or unknown-token mismatch), \`agree\` (sum of p_query x p_candidate >= t)."
  echo "Read with docs/semantic-cache-quality.md (\"Labelled history\")."
  echo
  cat "$TMP"
} >"$OUT"
echo "wrote $OUT"
