#!/usr/bin/env bash
# bench/eval/run.sh - `ahorro eval` measured on MMLU with recorded answers (issue 7).
#
# RouteLLM's MMLU data records, for each prompt, whether GPT-4-1106-preview and
# Mixtral-8x7B answered it right, not what they answered. build-mmlu.mjs turns that
# into a data set (each row's reference letter is synthetic, the same for both models)
# and a recording for `ahorro-fake --answers`: a model that was right answers the
# reference, one that was wrong answers another letter. The gateway then serves the
# variants below exactly as it would serve real providers (routing, pricing, ledger),
# and `ahorro eval run` scores them with the multiple-choice scorer.
#
# Variants: always GPT-4 (the control), always Mixtral, the learned router trained on
# the other subjects (ranked by gain per extra dollar, and by score), and the
# complexity router; thresholds from bench/router/RESULTS.md (chosen on other subjects).
# check.mjs then recomputes every variant's accuracy and cost by hand, from the
# recording and the ledger's served model per request, with the fake's token rule and
# the list prices, and writes bench/eval/RESULTS.md.
#
# Environment (defaults in brackets):
#   EVAL_DATA      [../shared/data/routing/mmlu]
#   EVAL_SUBJECTS  [six held-out subjects, below]
#   EVAL_BUILD     [build]
#   EVAL_OUT       [bench/eval/RESULTS.md]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
DATA=${EVAL_DATA:-$ROOT/../shared/data/routing/mmlu}
SUBJECTS=${EVAL_SUBJECTS:-college_medicine,high_school_macroeconomics,elementary_mathematics,world_religions,high_school_us_history,computer_security}
B=${EVAL_BUILD:-build}
OUT=${EVAL_OUT:-$HERE/RESULTS.md}

make -s -j2 B="$B" "$B/ahorro" "$B/ahorro-fake"
scripts/build-embeddings.sh build/data/sif-100d.bin

W=$(mktemp -d)
FAKE_PID=
cleanup() { [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; [ -n "${EVAL_KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT

# the learned router, trained on every other subject
TRAIN=()
for f in "$DATA"/mmlu_*.csv; do
  s=$(basename "$f" .csv); s=${s#mmlu_}
  case ",$SUBJECTS," in *",$s,"*) ;; *) TRAIN+=("$f") ;; esac
done
AHORRO_LOG=error "$B/ahorro" router train --data "${TRAIN[@]}" --exclude "$DATA/contaminated_prompts.jsonl" \
  --target gain --l2 0.01 -o "$W/router.bin" >&2

node "$HERE/build-mmlu.mjs" --data "$DATA" --subjects "$SUBJECTS" \
  --out-dataset "$W/data.jsonl" --out-answers "$W/answers.jsonl"

PORT=$((20000 + RANDOM % 20000))
"$B/ahorro-fake" --listen "127.0.0.1:$PORT" --threads 2 --answers "$W/answers.jsonl" >"$W/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 50); do grep -q listening "$W/fake.log" && break; sleep 0.1; done

cat >"$W/ahorro.yaml" <<YAML
model_list:
  - model_name: gpt-4-1106-preview
    litellm_params: { model: openai/gpt-4-1106-preview, api_base: "http://127.0.0.1:$PORT/v1", api_key: sk-fake }
  - model_name: mixtral
    litellm_params: { model: openai/open-mixtral-8x7b, api_base: "http://127.0.0.1:$PORT/v1", api_key: sk-fake,
                      input_cost_per_token: 0.0000007, output_cost_per_token: 0.0000007 }
ahorro:
  db: $W/ahorro.db
  threads: 2
  routing:
   routers:
    - name: learned-per-dollar
      kind: learned
      model_path: $W/router.bin
      rank: gain_per_dollar
      expected_output_tokens: 5
      tiers:
        - { name: high, model: gpt-4-1106-preview, min_gain_per_usd: 73.7 }
        - { name: low, model: mixtral }
    - name: learned-score
      kind: learned
      model_path: $W/router.bin
      tiers:
        - { name: high, model: gpt-4-1106-preview, min_score: 0.55 }
        - { name: low, model: mixtral }
    - name: complexity
      kind: complexity
      tiers:
        - { name: high, model: gpt-4-1106-preview, min_score: 0.455 }
        - { name: low, model: mixtral }
YAML

START=$(date +%s.%N)
AHORRO_LOG=error "$B/ahorro" --config "$W/ahorro.yaml" eval run --dataset "$W/data.jsonl" \
  --variant name=gpt-4,model=gpt-4-1106-preview --variant mixtral \
  --variant learned-per-dollar --variant learned-score --variant complexity \
  --metric choice --scorers choice --concurrency 16 --run-id mmlu --format json -o "$W/report.json"
END=$(date +%s.%N)
AHORRO_LOG=error "$B/ahorro" --config "$W/ahorro.yaml" eval report mmlu --format html -o "$HERE/report.html" 2>/dev/null
AHORRO_LOG=error "$B/ahorro" --config "$W/ahorro.yaml" eval report mmlu >"$W/report.txt"
sqlite3 -json "$W/ahorro.db" "SELECT e.variant, e.row_idx, l.served_model, l.prompt_tokens, l.completion_tokens, l.cost_usd
  FROM eval_results e JOIN ledger l ON l.request_id = e.request_id WHERE e.run_id = 'mmlu'" >"$W/served.json"
node "$HERE/check.mjs" "$W/data.jsonl" "$W/report.json" "$W/served.json" "$W/report.txt" \
  "$(echo "$END - $START" | bc)" "$SUBJECTS" >"$OUT"
cat "$OUT"
