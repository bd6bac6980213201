// claude_error.mjs - how far ahorro's Claude estimate (the model's base
// encoding count times AH_CHAT_ANTHROPIC_FACTOR, rounded up) lands from
// Anthropic's own published tokenizer, npm `@anthropic-ai/tokenizer` 0.0.4,
// on the corpus of corpus.mjs, by category; with the raw o200k_base and
// cl100k_base counts beside it.
//
// The reference is a PROXY: that package is the tokenizer of Anthropic's
// older models (Claude 1 and 2, 65k vocabulary); Anthropic says it is not
// accurate for Claude 3 and later, whose tokenizer is not public. What this
// measures is the estimate's distance from the legacy tokenizer, not from
// what Claude 3+ bills; that needs Anthropic's /v1/messages/count_tokens
// (docs/tokenizer.md, "Claude: the estimate and its measured error").
//
// A measurement, not a test: exits 0 whatever the figures; 2 when it cannot
// measure (no binary, ahorro fails, or the estimate cannot be reproduced).
//
//   cd tests/tokenize && npm ci && node claude_error.mjs [--bin ../../build/ahorro]
//       [--data-dir ../../build/data] [--model claude-sonnet-4-5] [--json] [--quick]
//       [--factors 1.0,1.1,1.2] [--corpus-out FILE.jsonl] [--reference FILE.jsonl]
//
// --corpus-out writes the texts, one {"category", "text"} a line, to be
// counted elsewhere (Anthropic's count_tokens); --reference reads such counts
// back, one a line in the same order (a number, or an object with
// "input_tokens" or "tokens", framing already subtracted), and uses them in
// place of the legacy tokenizer.
//
// ahorro is run three times over the whole corpus (`tokens --jsonl` with
// --model, and with each encoding); the factor is read from `tokens --model M
// --json` on the largest text and the reconstruction ceil(base x factor) is
// checked against that command on texts of every category.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Tiktoken } from 'tiktoken/lite';
import { countTokens } from '@anthropic-ai/tokenizer';
import { buildCorpus } from './corpus.mjs';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const BIN = path.resolve(opt('--bin', process.env.AHORRO_BIN || path.join(HERE, '../../build/ahorro')));
const DATA = path.resolve(opt('--data-dir', process.env.AHORRO_TOKENIZERS_DIR || path.join(HERE, '../../build/data')));
const MODEL = opt('--model', 'claude-sonnet-4-5');
const asJson = args.includes('--json');
const quick = args.includes('--quick');
// Other factors to show what o200k_base x f would give (the "what if" rows).
const FACTORS = opt('--factors', '1.0,1.1,1.15,1.2,1.25,1.3').split(',').map(Number);
const t0 = Date.now();

if (!fs.existsSync(BIN)) {
  console.error(`claude_error.mjs: no binary at ${BIN} (build first, or give --bin)`);
  process.exit(2);
}

// ---- corpus, by category ----------------------------------------------------
const CODE_EXT = new Set(['.c', '.h', '.sh', '.mjs', '.js', '.py', '.lua']);
function category(c) {
  if (c.source !== 'repo') return c.source;
  const ext = path.extname(c.file);
  if (CODE_EXT.has(ext) || c.file === 'Makefile') return 'repo-code';
  if (ext === '.md' || ext === '.txt') return 'repo-markdown';
  return 'repo-data'; // .json, .yaml
}
const corpus = buildCorpus(quick ? { synthetic: 300, localeBytes: 200_000 } : {})
  .filter((c) => c.text.length > 0)
  .map((c) => ({ ...c, cat: category(c) }));
const texts = corpus.map((c) => c.text);
const corpusOut = opt('--corpus-out');
if (corpusOut) fs.writeFileSync(corpusOut, corpus.map((c) => JSON.stringify({ category: c.cat, text: c.text })).join('\n') + '\n');
const refFile = opt('--reference');

// ---- the reference: Anthropic's legacy tokenizer ----------------------------
// countTokens() builds the tokenizer (a 700k-line rank table) on every call;
// build it once and do what countTokens does: NFKC, then encode with every
// special token allowed.
const claude = require('@anthropic-ai/tokenizer/claude.json');
const legacy = new Tiktoken(claude.bpe_ranks, claude.special_tokens, claude.pat_str);
const legacyCount = (t) => legacy.encode(t.normalize('NFKC'), 'all').length;
for (const t of ['hello world!', texts[0].slice(0, 3000), 'Ünïcödé ﬁ ① <EOT>']) {
  if (legacyCount(t) !== countTokens(t)) {
    console.error('claude_error.mjs: the reused tokenizer disagrees with countTokens()');
    process.exit(2);
  }
}
let ref = texts.map(legacyCount);
legacy.free();
let refName = '@anthropic-ai/tokenizer 0.0.4 (legacy Claude tokenizer; a proxy for Claude 3+, not its tokenizer)';
if (refFile) {
  const lines = fs.readFileSync(refFile, 'utf8').trimEnd().split('\n');
  if (lines.length !== texts.length) {
    console.error(`claude_error.mjs: ${refFile}: ${lines.length} counts for ${texts.length} texts (same --quick?)`);
    process.exit(2);
  }
  ref = lines.map((l) => { const v = JSON.parse(l); return typeof v === 'number' ? v : v.input_tokens ?? v.tokens; });
  if (ref.some((n) => !(n > 0))) {
    console.error(`claude_error.mjs: ${refFile}: a count is missing or not positive`);
    process.exit(2);
  }
  refName = `counts from ${refFile}`;
}

// ---- ahorro -----------------------------------------------------------------
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ahorro-claude-'));
const env = { ...process.env, AHORRO_LOG: 'error' };
function ahorro(argv) {
  const r = spawnSync(BIN, ['tokens', '--data-dir', DATA, ...argv], { maxBuffer: 1 << 28, encoding: 'utf8', env });
  if (r.status !== 0) {
    console.error(`claude_error.mjs: ahorro tokens ${argv.join(' ')} failed (${r.status}): ${r.stderr}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    process.exit(2);
  }
  return r.stdout;
}
const jsonl = path.join(tmp, 'in.jsonl');
fs.writeFileSync(jsonl, texts.map((t) => JSON.stringify(t)).join('\n') + '\n');
function counts(sel) {
  const lines = ahorro([...sel, '--jsonl', jsonl]).trimEnd().split('\n');
  if (lines.length !== texts.length) {
    console.error(`claude_error.mjs: ${lines.length} counts for ${texts.length} texts`);
    process.exit(2);
  }
  return lines.map((l) => JSON.parse(l).tokens);
}
const o200k = counts(['--encoding', 'o200k_base']);
const cl100k = counts(['--encoding', 'cl100k_base']);
const base = counts(['--model', MODEL]); // the model's base encoding

// One text through `ahorro tokens --model M --json`: {encoding, tokens, estimate}.
function single(i) {
  const f = path.join(tmp, `t${i}.txt`);
  fs.writeFileSync(f, texts[i]);
  const o = JSON.parse(ahorro(['--model', MODEL, '--json', f]));
  const p = o.prices[0];
  return { encoding: o.encoding, base: o.tokens, tokens: p.tokens, estimate: p.estimate };
}
// The factor: the shortest decimal f with ceil(n*f) = t on the largest text.
let big = 0;
for (let i = 1; i < texts.length; i++) if (base[i] > base[big]) big = i;
const cal = single(big);
let factor = NaN;
for (let d = 0; d <= 9 && Number.isNaN(factor); d++) {
  const s = 10 ** d;
  for (let k = Math.floor(((cal.tokens - 1) / cal.base) * s); k <= Math.ceil((cal.tokens / cal.base) * s); k++) {
    if (Math.ceil(cal.base * (k / s)) === cal.tokens) { factor = k / s; break; }
  }
}
const estimateOf = (n) => Math.ceil(n * factor);
// Check the reconstruction on a spread of texts: per category the smallest,
// the median and the largest.
const checks = [];
for (const cat of new Set(corpus.map((c) => c.cat))) {
  const idx = corpus.map((c, i) => i).filter((i) => corpus[i].cat === cat).sort((a, b) => base[a] - base[b]);
  for (const i of new Set([idx[0], idx[idx.length >> 1], idx[idx.length - 1]])) checks.push(i);
}
for (const i of checks) {
  const s = single(i);
  if (s.base !== base[i] || s.tokens !== estimateOf(base[i]) || !s.estimate) {
    console.error(`claude_error.mjs: text ${i} (${corpus[i].cat}): ahorro says ${JSON.stringify(s)}, ` +
      `reconstruction ceil(${base[i]} x ${factor}) = ${estimateOf(base[i])}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    process.exit(2);
  }
}
fs.rmSync(tmp, { recursive: true, force: true });
const estimate = base.map(estimateOf);

// ---- statistics ---------------------------------------------------------------
// Per text: (x - ref) / ref. Mean signed error (bias), mean absolute
// percentage error, the 90th percentile of the absolute error, and the
// token-weighted ratio sum(x) / sum(ref).
function stats(idx, xs) {
  const e = idx.map((i) => (xs[i] - ref[i]) / ref[i]);
  const a = e.map(Math.abs).sort((p, q) => p - q);
  let sx = 0, sr = 0;
  for (const i of idx) { sx += xs[i]; sr += ref[i]; }
  const p90 = a.length ? a[Math.min(a.length - 1, Math.ceil(0.9 * a.length) - 1)] : NaN;
  return {
    mean_signed_pct: (100 * e.reduce((s, v) => s + v, 0)) / e.length,
    mape_pct: (100 * a.reduce((s, v) => s + v, 0)) / a.length,
    p90_abs_pct: 100 * p90,
    ratio: sx / sr,
    under_pct: (100 * e.filter((v) => v < 0).length) / e.length,
  };
}
const ORDER = ['repo-code', 'repo-markdown', 'repo-data', 'prose', 'locale', 'synthetic'];
const groups = [];
for (const cat of ORDER) {
  const idx = corpus.map((c, i) => i).filter((i) => corpus[i].cat === cat);
  if (idx.length) groups.push([cat, idx]);
}
groups.push(['natural (all but synthetic)', corpus.map((c, i) => i).filter((i) => corpus[i].cat !== 'synthetic')]);
groups.push(['all', corpus.map((c, i) => i)]);

const whatIf = {};
for (const [enc, xs] of [['o200k', o200k], ['cl100k', cl100k]])
  for (const f of FACTORS) whatIf[`${enc}_x${f}`] = xs.map((n) => Math.ceil(n * f));
const result = {
  reference: refName,
  model: MODEL,
  estimate: { encoding: cal.encoding, factor },
  texts: texts.length,
  seconds: 0,
  categories: groups.map(([name, idx]) => {
    const sum = (xs) => idx.reduce((s, i) => s + xs[i], 0);
    return {
      category: name,
      texts: idx.length,
      bytes: idx.reduce((s, i) => s + Buffer.byteLength(texts[i]), 0),
      tokens: { reference: sum(ref), estimate: sum(estimate), o200k_base: sum(o200k), cl100k_base: sum(cl100k) },
      estimate: stats(idx, estimate),
      o200k_base: stats(idx, o200k),
      cl100k_base: stats(idx, cl100k),
      what_if: Object.fromEntries(Object.entries(whatIf).map(([k, xs]) => [k, stats(idx, xs)])),
    };
  }),
};
result.seconds = (Date.now() - t0) / 1000;

if (asJson) {
  console.log(JSON.stringify(result, null, 2));
  process.exit(0);
}
const f1 = (v) => (v >= 0 ? '+' : '') + v.toFixed(1);
const rows = [
  '| category | texts | reference tokens | counter | mean signed error | MAPE | p90 abs. error | Σcounter/Σref | texts under |',
  '|---|---:|---:|---|---:|---:|---:|---:|---:|',
];
for (const c of result.categories) {
  const lines = [
    [`estimate (${cal.encoding} × ${factor})`, c.estimate],
    ['o200k_base', c.o200k_base],
    ['cl100k_base', c.cl100k_base],
  ];
  lines.forEach(([label, s], k) => {
    rows.push(`| ${k ? '' : c.category} | ${k ? '' : c.texts} | ${k ? '' : c.tokens.reference.toLocaleString('en-US')} | ${label} | ` +
      `${f1(s.mean_signed_pct)} % | ${s.mape_pct.toFixed(1)} % | ${s.p90_abs_pct.toFixed(1)} % | ${s.ratio.toFixed(3)} | ${s.under_pct.toFixed(0)} % |`);
  });
}
console.log(`Claude estimate vs ${result.reference}`);
console.log(`model ${MODEL}: ${cal.encoding} × ${factor}, rounded up; ${texts.length} texts\n`);
console.log(rows.join('\n'));
console.log('\nWhat base × f would give: mean signed error / MAPE / p90 abs. error, %');
const cats = result.categories.map((c) => c.category.replace(' (all but synthetic)', ''));
console.log(`| base × f | ${cats.join(' | ')} |\n|---|${cats.map(() => '---').join('|')}|`);
for (const k of Object.keys(whatIf)) {
  const cell = (c) => { const s = c.what_if[k]; return `${f1(s.mean_signed_pct)} / ${s.mape_pct.toFixed(1)} / ${s.p90_abs_pct.toFixed(1)}`; };
  console.log(`| ${k.replace('_x', ' × ')} | ${result.categories.map(cell).join(' | ')} |`);
}
console.log(`\n(${result.seconds.toFixed(1)} s)`);
process.exit(0);
