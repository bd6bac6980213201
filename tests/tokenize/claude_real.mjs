// claude_real.mjs - ahorro's Claude token estimate against counts Anthropic's API billed.
//
//   node tests/tokenize/claude_real.mjs [--bin build/ahorro] [--data-dir build/data] [--json] [--check]
//
// data/claude_usage.jsonl holds requests and answers recorded from the real API by other
// projects' test suites (sources, licences and how it was collected: data/README.md):
//   kind "request": an Anthropic Messages (or count_tokens) body and the prompt tokens the API
//                   billed for it (input + cache write + cache read);
//   kind "output":  an answer's text (one text block) and the output tokens billed for it.
// Each request is counted as the gateway counts it before sending (`ahorro tokens --anthropic`:
// the gateway's own translation to the canonical chat body, OpenAI's chat rules on o200k_base,
// times the Claude factor); each answer's text as plain text (`ahorro tokens --model M`).
// Prints the error per group: mean signed error, MAPE, p90 of |error|, sum(estimate)/sum(real),
// share of records counted low. Exits 1 if a record cannot be counted. A measurement, not a
// timed test; docs/tokenizer.md records its results.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const BIN = resolve(opt('--bin', join(ROOT, 'build', 'ahorro')));
const DATA_DIR = resolve(opt('--data-dir', join(ROOT, 'build', 'data')));
const JSON_OUT = args.includes('--json');

const records = readFileSync(join(HERE, 'data', 'claude_usage.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));

function tokens(argv, input) {
  const r = spawnSync(BIN, ['tokens', ...argv, '--json', '--data-dir', DATA_DIR, '-'], {
    input,
    encoding: 'utf8',
    env: { ...process.env, AHORRO_LOG: 'error' },
  });
  if (r.status !== 0) throw new Error(`ahorro tokens ${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  const out = JSON.parse(r.stdout);
  return { raw: out.tokens, estimate: out.prices[0].tokens, chat: out.chat };
}

// Models whose tool-use system prompt comes from Anthropic's pricing page, not from a fit.
const LISTED = /claude-3|claude-(sonnet|opus)-4(-0|-1|-\d{8})?$/;

// Claude generations, by the model name's version.
function family(model) {
  if (/claude-3/.test(model)) return 'Claude 3.x';
  if (/-4(-|$)|-4-\d/.test(model)) return 'Claude 4.x';
  return 'later (5 and named)';
}

const rows = [];
for (const rec of records) {
  let c;
  if (rec.kind === 'request') {
    const body = { ...rec.request, model: rec.model };
    c = tokens(['--anthropic', '--model', rec.model], JSON.stringify(body));
  } else {
    c = tokens(['--model', rec.model], rec.text);
  }
  const real = rec.kind === 'request' ? rec.input_tokens : rec.output_tokens;
  const f = rec.features || [];
  const group =
    rec.kind === 'output'
      ? 'answers (plain text)'
      : f.includes('structured_output')
        ? 'requests: structured output'
        : f.includes('tools')
          ? 'requests: with tools'
          : f.includes('thinking')
            ? 'requests: thinking, no tools'
            : 'requests: text (system, turns)';
  // The tool-use system prompt of Claude 4.5 and later (src/tokenize/chat.c) was fitted on
  // pydantic-ai's recordings of those models; every other tools record is out of sample.
  const fitted =
    group === 'requests: with tools' && rec.source.startsWith('pydantic/pydantic-ai@') && !LISTED.test(rec.model);
  rows.push({ ...rec, real, raw: c.raw, estimate: c.estimate, group, fitted, family: family(rec.model) });
}

function stats(sel, field = 'estimate') {
  const errs = sel.map((r) => (r[field] - r.real) / r.real);
  const abs = errs.map(Math.abs).sort((a, b) => a - b);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const q = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
  return {
    n: sel.length,
    real_tokens: sum(sel.map((r) => r.real)),
    mean_error_pct: (100 * sum(errs)) / sel.length,
    mape_pct: (100 * sum(abs)) / sel.length,
    p90_abs_pct: 100 * q(abs, 0.9),
    sum_ratio: sum(sel.map((r) => r[field])) / sum(sel.map((r) => r.real)),
    share_low_pct: (100 * errs.filter((e) => e < 0).length) / sel.length,
  };
}

const groups = [...new Set(rows.map((r) => r.group))].sort();
const families = [...new Set(rows.map((r) => r.family))].sort();
const table = [];
for (const g of groups) {
  const sel = rows.filter((r) => r.group === g);
  table.push({ group: g, family: 'all', ...stats(sel) });
  for (const fam of families) {
    const s = sel.filter((r) => r.family === fam);
    if (s.length) table.push({ group: g, family: fam, ...stats(s) });
  }
  if (g === 'requests: with tools') {
    table.push({ group: g, family: 'out of sample', ...stats(sel.filter((r) => !r.fitted)) });
    table.push({ group: g, family: 'fitted on', ...stats(sel.filter((r) => r.fitted)) });
  }
}
// What the billed count holds beyond ahorro's estimate, per record, for the groups where a
// fixed amount is the question (a tool-use system prompt, an answer's end-of-turn tokens).
const excess = (sel) => sel.map((r) => r.real - r.estimate).sort((a, b) => a - b);
const median = (xs) => (xs.length ? xs[Math.floor(xs.length / 2)] : null);
const diag = {
  tools_excess_median: median(excess(rows.filter((r) => r.group === 'requests: with tools'))),
  tools_excess_by_family: Object.fromEntries(
    families.map((f) => [f, median(excess(rows.filter((r) => r.group === 'requests: with tools' && r.family === f)))]),
  ),
  text_excess_median: median(excess(rows.filter((r) => r.group === 'requests: text (system, turns)'))),
  answers_excess_median: median(excess(rows.filter((r) => r.group === 'answers (plain text)'))),
  answers_real_over_raw: (() => {
    const s = rows.filter((r) => r.group === 'answers (plain text)' && r.real >= 50);
    return s.reduce((a, r) => a + r.real, 0) / s.reduce((a, r) => a + r.raw, 0);
  })(),
};

// --check (CI): the figures docs/tokenizer.md quotes still hold, within a margin.
if (args.includes('--check')) {
  const row = (g, f) => table.find((t) => t.group === g && t.family === f);
  const fails = [];
  const tools = row('requests: with tools', 'out of sample');
  if (!(tools.mape_pct < 6 && tools.sum_ratio > 0.95 && tools.sum_ratio < 1.05))
    fails.push(`tools, out of sample: MAPE ${tools.mape_pct.toFixed(1)}%, sum ratio ${tools.sum_ratio.toFixed(2)}`);
  const text = row('requests: text (system, turns)', 'all');
  if (!(text.share_low_pct <= 10 && text.mape_pct < 30))
    fails.push(`text requests: ${text.share_low_pct.toFixed(0)}% counted low, MAPE ${text.mape_pct.toFixed(1)}%`);
  const answers = row('answers (plain text)', 'all');
  if (!(answers.sum_ratio > 0.95 && answers.sum_ratio < 1.1))
    fails.push(`answers: sum ratio ${answers.sum_ratio.toFixed(2)}`);
  if (fails.length) {
    console.error(`claude_real: the Claude estimate moved from its measured figures:\n  ${fails.join('\n  ')}`);
    process.exit(1);
  }
}

if (JSON_OUT) {
  console.log(JSON.stringify({ records: rows.length, table, diag, rows: rows.map(({ request, text, ...r }) => r) }, null, 1));
} else {
  const pct = (x) => (x >= 0 ? '+' : '') + x.toFixed(1);
  console.log(`${rows.length} records (${records.filter((r) => r.kind === 'request').length} requests, ${records.filter((r) => r.kind === 'output').length} answers)`);
  console.log('| group | family | n | real tokens | mean error % | MAPE % | p90 |err| % | Σ est / Σ real | counted low |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of table)
    console.log(
      `| ${t.group} | ${t.family} | ${t.n} | ${t.real_tokens} | ${pct(t.mean_error_pct)} | ${t.mape_pct.toFixed(1)} | ${t.p90_abs_pct.toFixed(1)} | ${t.sum_ratio.toFixed(2)} | ${t.share_low_pct.toFixed(0)}% |`,
    );
  console.log(JSON.stringify(diag));
}
