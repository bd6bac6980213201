#!/usr/bin/env bash
# bench/shape/run.sh - what each shaping strategy (src/shape/) saves and costs, on real data:
# context windows over Banking77 support conversations, prompt-cache friendliness of trim_to,
# top-K retrieval (QQP, MMLU), lossless and lossy compression. Writes bench/shape/RESULTS.md
# (SHAPE_OUT overrides). About 30 s on 2 cores once libahorro.a is built.
#
#   bench/shape/run.sh [DATA_DIR]      DATA_DIR: the shared data [$ROOT/../shared/data]
#
# Environment: B [build]  build folder of libahorro.a, the rank files and the SIF vectors
#                         ($B/data/o200k_base.tiktoken, $B/data/sif-100d.bin; without the
#                         vectors the nearest-neighbour retrieval set is left out)
#              CC [gcc]   compiler of the bench
#              SHAPE_REPS [5]  timings repeated this often, the median quoted
#              SHAPE_OUT  [bench/shape/RESULTS.md]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DATA=$(cd "${1:-$ROOT/../shared/data}" && pwd)
B=${B:-build}
CC=${CC:-gcc}
OUT=${SHAPE_OUT:-$HERE/RESULTS.md}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shape-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

PKGS="libevent libevent_pthreads libcurl jansson sqlite3 yaml-0.1 libcrypto"
WARN="-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wno-unused-parameter"
CFLAGS="-O2 -g -std=c17 -D_GNU_SOURCE -pthread $WARN -I$ROOT/src $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -pthread -lm"

cd "$ROOT"
make -s -j2 B="$B" "$B/libahorro.a" >/dev/null
[ -s "$B/data/o200k_base.tiktoken" ] || bash scripts/build-tokenizers.sh "$B/data"
$CC $CFLAGS -o "$WORK/shape_bench" bench/shape/shape_bench.c "$B/libahorro.a" $LIBS

START=$(date +%s)
"$WORK/shape_bench" "$DATA" "$B/data" data/prices.json >"$WORK/tables.md"
SECS=$(($(date +%s) - START))

{
    echo "# Shaping: what each strategy saves and what it costs"
    echo
    echo "Written by \`bench/shape/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)" \
        "($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
        "$($CC --version | head -1), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "with the working tree as it was. The bench took ${SECS} s. Data: \`$DATA\`" \
        "(see its README.md); tokens are o200k_base (gpt-4o), counted as OpenAI bills a chat" \
        "body. Every data set is drawn with a fixed seed: a rerun gives the same figures but for" \
        "the times. Times are medians of ${SHAPE_REPS:-5} runs on a shared machine: read them as" \
        "orders of magnitude."
    echo
    cat "$WORK/tables.md"
    cat <<'MD'
## Where the methods fall short

What the figures above do not show, or show only in part. Read with the tables of the run above.

**The conversations are half synthetic.** User turns are real Banking77 queries, but a
conversation is a random walk over intents, and each assistant reply is real text in a synthetic
structure (an opening sentence naming the intent, then other customers' queries of that intent):
replies are shorter and more repetitive than an agent's, and they echo their intent's words, which
helps token_budget's lexical scoring. The needle test is the case token_budget is made for (the
final question returns to one earlier topic, no other turn shares its intent); it does not measure
the price of dropping a middle turn that a later turn refers to by "it" or "that", which
sliding_window keeps and token_budget may not. The needles token_budget loses are paraphrases with
no shared term after stemming ("I can't recall my password." against "I've totally forgotten my
passcode"; "When will the transaction post to my account?" against "How long do I have to wait
for the transfer to be finalized?"): BM25 sees no overlap. Blending in the built-in SIF
embedder's cosine (`dense_weight`, the "+ dense" rows) finds a few of them (92.0% to 93.7%) for
some 80 µs more per request; a stronger embedder would do better, and is not measured here.

**trim_to keeps a prefix only as long as the budget allows a block to stay.** The engine is
stateless: each request is trimmed from the full history the client resends. With trim_to 1.0
the oldest kept turn moves with almost every new turn once a conversation is over its budget,
so request t+1 seldom starts with request t's messages ("prefix hit once trimmed": 11 to 12%).
With trim_to below 1 the cut is made at turn boundaries fixed by the history itself (the first
turn at which the tokens counted from the start pass each multiple of (1 - trim_to) x budget),
so it stays put for several turns and then moves by a block: 67% of trimmed pairs hit at 600
tokens and 0.7, 90% at 1,500 tokens. The misses are the requests at which the block moves; with
the summarize strategy those are the requests that pay for a summary extension, so the same
column is the share of trimmed requests that need no summarizer call. The 600-token budget is
under every provider's cache minimum (OpenAI caches prompts from 1,024 tokens; Anthropic from
1,024 or 2,048 depending on the model), so at that size no request would be served from a cache
at all; the 1500-token rows are the realistic ones.

**Retrieval with random distractors is too easy to tell methods apart.** A QQP paraphrase among
49 random questions almost always shares a rare word with the question, and an MMLU excerpt is
a verbatim piece of its chunk; both give BM25 near-perfect recall. The nearest-neighbour set
(distractors a vector retriever would return) is the realistic case. Its recall counts only the
labelled duplicate as relevant, although QQP holds other near-duplicates of many questions
(several about the same topic can be among the 49), so it understates what a reader would judge
relevant. The dense blend uses the built-in SIF embedder, the one that picked the distractors, so
those rows understate what a different embedder would add. Tokens saved depend only on K and the
chunk sizes, not on the scoring: recall is the figure to watch.

**Lossless saves nothing on prose that is already clean** (the MMLU prompts, and most
hand-written prompts); its savings come from pretty-printed JSON, and only where the JSON is
marked: inside a json code fence, or the whole message. The same JSON pasted into prose without a
fence is left as it is, indentation included (a run of blanks at the start of a line is kept as
indentation).

**Lossy shortens answer choices but keeps them.** A line that opens with a list marker ("A.",
"B)", "(c)", "3.", "-") is an item: its marker stays with it, and items are left out of the
first pass, which drops whole sentences least worth first; words inside an item may go, and a
whole item goes only in the last resort, when words alone cannot reach the ratio. So every
choice letter and every list number is kept at every ratio above, while the share of choice
lines kept byte for byte falls with the ratio (their less informative words are cut: "B. the
rate increases" may become "B. rate increases"). Through `ah_shape_apply` the last user message
is never cut, so choices that travel in the last message are untouched. Section labels such as
"SEC. 2." lose their "SEC." (an upper-case word that ends with a dot opens its own sentence and
can be dropped as one), and keep the "2.". The
information measure (the BPE rank of a word's tokens) is a proxy for a language model's surprise;
nothing here measures whether a model still answers the question from the cut text.

**Times** are of the shaping call alone on one core, for bodies already parsed (no JSON parsing,
no I/O). The window strategies tokenize the body more than once (the count before, each
message on its own to find the cut, the count after); retrieval's time grows with the bytes of
all chunks (BM25 reads them all, and `tokens_before` tokenizes them all).
MD
} >"$OUT"
echo "wrote $OUT"
