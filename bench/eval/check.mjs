// bench/eval/check.mjs - recompute `ahorro eval`'s MMLU figures by hand and write the
// results page (called by bench/eval/run.sh).
//
// For every variant and row: the model the gateway served (from the ledger), whether
// that model was recorded right on the row (RouteLLM's data), and the cost by the fake
// provider's token rule (prompt: words + 4 + 3; answer "The answer is X.": 4 words) at
// the list prices. The report's accuracy and cost must equal these.
import { readFileSync } from 'node:fs';

const [dataPath, reportPath, servedPath, tablePath, wall, subjects] = process.argv.slice(2);
const rows = readFileSync(dataPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const report = JSON.parse(readFileSync(reportPath, 'utf8'));
const served = JSON.parse(readFileSync(servedPath, 'utf8') || '[]');
const table = readFileSync(tablePath, 'utf8');
const PRICE = { 'gpt-4-1106-preview': [10e-6, 30e-6], 'open-mixtral-8x7b': [0.7e-6, 0.7e-6] };
// the fake splits on ASCII whitespace only (space, tab, CR, LF, FF, VT), not on Unicode spaces
const words = (s) => s.split(/[ \t\r\n\f\v]+/).filter(Boolean).length;

const byVariant = new Map();
for (const s of served) {
  if (!byVariant.has(s.variant)) byVariant.set(s.variant, []);
  byVariant.get(s.variant).push(s);
}
const out = [];
const p = (s = '') => out.push(s);
p('# `ahorro eval` on MMLU with recorded answers');
p();
p(`Written by \`bench/eval/run.sh\` on ${new Date().toISOString().slice(0, 10)}. Method and limits: \`docs/evaluation.md\`, "Measured".`);
p();
p(`Held-out subjects (the learned router was trained on the other 51): ${subjects.split(',').join(', ')}; ${rows.length} prompts.`);
p(`The whole run (${report.variants.length} variants x ${rows.length} rows through the in-process gateway, fake provider answering from the recording): ${Number(wall).toFixed(1)} s.`);
p();
p('| variant | accuracy (report) | accuracy (by hand) | vs GPT-4 | GPT-4 share | cost (report) | cost (by hand) | saved vs GPT-4 | p50 ms |');
p('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
let base = null, mismatches = 0;
for (const v of report.variants) {
  const list = byVariant.get(v.name) || [];
  let right = 0, cost = 0, strong = 0, ledgerCost = 0;
  for (const s of list) {
    const row = rows[s.row_idx];
    const isStrong = s.served_model === 'gpt-4-1106-preview';
    strong += isStrong;
    right += (isStrong ? row.recorded.gpt4 : row.recorded.mixtral) ? 1 : 0;
    const [pin, pout] = PRICE[s.served_model];
    cost += (words(row.input) + 7) * pin + 4 * pout;
    ledgerCost += s.cost_usd;
  }
  const acc = right / list.length;
  base ??= { acc, cost };
  const repAcc = v.scores.choice.mean, repCost = v.cost_total_usd;
  const ok = list.length === rows.length && Math.abs(acc - repAcc) < 1e-12 &&
    Math.abs(cost - repCost) < 1e-9 && Math.abs(ledgerCost - repCost) < 1e-9;
  if (!ok) mismatches++;
  p(`| ${v.name} | ${(100 * repAcc).toFixed(2)}% ± ${(50 * (v.scores.choice.ci95[1] - v.scores.choice.ci95[0])).toFixed(2)} | ${(100 * acc).toFixed(2)}% | ${(100 * repAcc / base.acc).toFixed(1)}% | ${(100 * strong / list.length).toFixed(1)}% | $${repCost.toFixed(4)} | $${cost.toFixed(4)} | ${(100 * (1 - repCost / base.cost)).toFixed(1)}% | ${v.latency_p50_ms.toFixed(1)} |`);
}
p();
p(mismatches ? `**${mismatches} variant(s) do not match the hand computation.**` :
  'Every variant\'s accuracy and cost in the report equal the hand computation (accuracy exactly, cost to 1e-9 USD, and the ledger\'s cost to the same).');
p();
p('Paired against GPT-4 (the same rows; from the report):');
p();
p('| variant | accuracy difference | p | cost difference per query | verdict (accuracy) |');
p('|---|---:|---:|---:|---|');
for (const v of report.variants.slice(1)) {
  const q = v.vs_control.quality, c = v.vs_control.cost;
  p(`| ${v.name} | ${(100 * q.diff).toFixed(2)} pts | ${q.p === null ? '-' : q.p.toPrecision(2)} | $${c.diff.toFixed(7)} | ${q.verdict} |`);
}
p();
p('The report as `ahorro eval report` prints it:');
p();
p('```');
p(table.trimEnd());
p('```');
console.log(out.join('\n'));
if (mismatches) process.exitCode = 1;
