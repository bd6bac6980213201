// Offline evaluation (docs/evaluation.md): `ahorro eval run` serves the gateway
// in-process and sends a data set to two variants through it; the fake provider
// answers from a recording (--answers), so every figure of the report can be
// computed by hand here: accuracy, cost from the fake's token rule and the
// prices, the judge's mean, the paired differences. Also: the ledger rows and
// their tags, resuming without resending, the judge cache, a garbage judge and
// a slow judge recorded as failed judgments, bad data sets, the HTML page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startFake, testConfig, ledger, AHORRO_BIN, PROVIDER_KEY } from './lib/harness.mjs';

const LETTERS = ['A', 'B', 'C', 'D'];
const N = 12;
// row i: the reference is LETTERS[i % 4]; gpt-4o-mini is right on every row
// but rows 3 and 7, the cheap llama on even rows only
const rows = Array.from({ length: N }, (_, i) => ({
  id: `q${i}`,
  input: `Question ${i}: which letter? A. one B. two C. three D. four Answer:`,
  reference: LETTERS[i % 4],
  choices: 4,
  tags: { subject: i < 6 ? 'first' : 'second' },
}));
const right = {
  'gpt-4o-mini': (i) => i !== 3 && i !== 7,
  'my-llama': (i) => i % 2 === 0,
};
const VERDICT = '{"relevance": 8, "accuracy": 7, "completeness": 6, "conciseness": 9, "winner": "B", "reason": "fine"}';

let fake, dir, cfgPath, db;

function answerFor(model, i) {
  const ref = i % 4;
  return `The answer is ${LETTERS[right[model](i) ? ref : (ref + 1) % 4]}.`;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ahorro-eval-'));
  const answers = [];
  for (const model of Object.keys(right))
    rows.forEach((r, i) => answers.push({ model, prompt: r.input, answer: answerFor(model, i) }));
  answers.push({ model: 'judge-ok', answer: VERDICT });
  answers.push({ model: 'judge-garbage', answer: 'looks fine to me' });
  answers.push({ model: 'judge-slow', answer: VERDICT, delay_ms: 4000 });
  writeFileSync(join(dir, 'answers.jsonl'), answers.map((a) => JSON.stringify(a)).join('\n') + '\n');
  fake = await startFake(['--answers', join(dir, 'answers.jsonl')]);
  const o = `http://127.0.0.1:${fake.port}/v1`;
  const judges = ['judge-ok', 'judge-garbage', 'judge-slow'].map((m) => `  - model_name: ${m}
    litellm_params: { model: openai/${m}, api_base: "${o}", api_key: "${PROVIDER_KEY}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001 }`).join('\n');
  // the judges go into model_list, before the ahorro: section
  const base = testConfig(fake, dir).replace('general_settings:', `${judges}\ngeneral_settings:`);
  cfgPath = join(dir, 'ahorro.yaml');
  writeFileSync(cfgPath, base);
  db = join(dir, 'ahorro.db');
  writeFileSync(join(dir, 'data.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  writeFileSync(join(dir, 'cheap.yaml'), 'name: cheap\nmodel: priced-by-config\ntemperature: 0\ntags: { team: eval-test }\n');
});

after(async () => {
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function ahorro(args, opts = {}) {
  const r = spawnSync(AHORRO_BIN, ['--config', cfgPath, ...args], {
    encoding: 'utf8', timeout: 60000, env: { ...process.env, AHORRO_LOG: 'warn' }, ...opts,
  });
  return r;
}

// the fake's counting rule (docs/fake-provider.md): words of each message + 4, + 3
const words = (s) => s.split(/[ \t\r\n\f\v]+/).filter(Boolean).length;
const promptTokens = (text) => words(text) + 4 + 3;
const PRICE = { 'gpt-4o-mini': [0.15e-6, 0.6e-6], 'my-llama': [1e-6, 2e-6] };
const cost = (model, i) => promptTokens(rows[i].input) * PRICE[model][0] + words(answerFor(model, i)) * PRICE[model][1];
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;

let report;

test('a run: the report matches a hand computation, every call is on the ledger', () => {
  const r = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'gpt-4o-mini',
    '--variant', join(dir, 'cheap.yaml'), '--judge', 'judge-ok', '--pairwise', '--run-id', 'run1',
    '--format', 'json', '--concurrency', '4']);
  assert.equal(r.status, 0, r.stderr);
  report = JSON.parse(r.stdout);
  assert.equal(report.run, 'run1');
  assert.equal(report.rows, N);
  assert.equal(report.metric, 'judge'); // a judge makes it the default metric
  const [mini, cheap] = report.variants;
  assert.equal(mini.name, 'gpt-4o-mini');
  assert.equal(cheap.name, 'cheap');
  for (const [v, model] of [[mini, 'gpt-4o-mini'], [cheap, 'my-llama']]) {
    const idx = rows.map((_, i) => i);
    assert.equal(v.requests, N);
    assert.equal(v.errors, 0);
    assert.equal(v.scores.choice.n, N);
    assert.ok(Math.abs(v.scores.choice.mean - mean(idx.map((i) => (right[model](i) ? 1 : 0)))) < 1e-12);
    assert.ok(Math.abs(v.cost_total_usd - idx.reduce((s, i) => s + cost(model, i), 0)) < 1e-12,
      `${model}: ${v.cost_total_usd}`);
    assert.ok(Math.abs(v.cost_per_query_usd - mean(idx.map((i) => cost(model, i)))) < 1e-12);
    // judge: (8-1)/9, (7-1)/9, (6-1)/9, (9-1)/9 averaged
    assert.ok(Math.abs(v.quality.mean - (7 + 6 + 5 + 8) / 36) < 1e-12);
    assert.equal(v.judged, N);
    assert.equal(v.judge_failed, 0);
    assert.equal(v.criteria.accuracy.mean, 7);
    assert.ok(v.latency_p50_ms > 0 && v.latency_p95_ms >= v.latency_p50_ms);
  }
  // paired on the same rows: choice differences are not the metric; cost is
  const vs = cheap.vs_control;
  assert.equal(vs.control, 'gpt-4o-mini');
  assert.equal(vs.quality.n, N);
  assert.equal(vs.quality.diff, 0);
  const dc = mean(rows.map((_, i) => cost('my-llama', i) - cost('gpt-4o-mini', i)));
  assert.ok(Math.abs(vs.cost.diff - dc) < 1e-12);
  // the judge says B in both orders: never the same side twice, so a tie
  assert.deepEqual([vs.pairwise.wins, vs.pairwise.ties, vs.pairwise.losses, vs.pairwise.failed], [0, N, 0, 0]);
  // what the judge calls cost is on the ledger, and attributed to the variants
  assert.ok(mini.judge_cost_usd > 0 && cheap.judge_cost_usd > 0);

  const rowsL = ledger(db, "json_extract(tags, '$.eval_run') = 'run1'");
  const answers = rowsL.filter((x) => JSON.parse(x.tags).purpose === 'eval');
  const judged = rowsL.filter((x) => JSON.parse(x.tags).purpose === 'eval-judge');
  assert.equal(answers.length, 2 * N);
  // a rubric or pairwise prompt seen before is answered from the judge cache:
  // where both variants gave the same answer, the second call may be saved
  // (depending on which finishes first), never more
  const differ = rows.filter((_, i) => right['gpt-4o-mini'](i) !== right['my-llama'](i)).length;
  assert.ok(judged.length >= 2 * (N + differ) && judged.length <= 4 * N, `${judged.length} judge calls`);
  assert.ok(Math.abs(mini.judge_cost_usd + cheap.judge_cost_usd - judged.reduce((s, x) => s + x.cost_usd, 0)) < 1e-12);
  const cheapRows = answers.filter((x) => JSON.parse(x.tags).variant === 'cheap');
  assert.equal(cheapRows.length, N);
  assert.ok(cheapRows.every((x) => JSON.parse(x.tags).team === 'eval-test' && x.served_model === 'my-llama'));
  assert.ok(answers.some((x) => JSON.parse(x.tags).subject === 'second'));
  // the ledger's cost is the report's
  const ledgerCost = answers.filter((x) => JSON.parse(x.tags).variant === 'gpt-4o-mini').reduce((s, x) => s + x.cost_usd, 0);
  assert.ok(Math.abs(ledgerCost - mini.cost_total_usd) < 1e-12);
});

test('the report again, from the database: same figures, table and a self-contained HTML page', () => {
  const r = ahorro(['eval', 'report', 'run1', '--format', 'json']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).variants, report.variants);
  const choice = JSON.parse(ahorro(['eval', 'report', 'run1', '--format', 'json', '--metric', 'choice']).stdout);
  assert.equal(choice.metric, 'choice');
  assert.ok(Math.abs(choice.variants[1].vs_control.quality.diff - (6 / 12 - 10 / 12)) < 1e-12);
  const t = ahorro(['eval', 'report', 'run1']);
  assert.match(t.stdout, /gpt-4o-mini/);
  assert.match(t.stdout, /against gpt-4o-mini/);
  const html = join(dir, 'report.html');
  assert.equal(ahorro(['eval', 'report', 'run1', '--format', 'html', '-o', html]).status, 0);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /<svg/);
  assert.match(page, /<\/html>/);
  assert.doesNotMatch(page, /<script|https?:\/\//);
  const list = JSON.parse(ahorro(['eval', 'list', '--json']).stdout);
  assert.ok(list.some((x) => x.run === 'run1' && x.results === 2 * N));
});

test('resuming sends nothing again; a new run re-uses the cached judge answers', () => {
  const before = ledger(db).length;
  const args = ['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'gpt-4o-mini',
    '--variant', join(dir, 'cheap.yaml'), '--judge', 'judge-ok', '--pairwise', '--format', 'json'];
  const again = ahorro([...args, '--run-id', 'run1']);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(ledger(db).length, before);
  assert.deepEqual(JSON.parse(again.stdout).variants, report.variants);
  // another options set under the same id is refused
  const other = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'gpt-4o-mini', '--run-id', 'run1']);
  assert.equal(other.status, 1);
  assert.match(other.stderr, /exists with another/);
  // a new run: answers again (2N), judges from the cache (0 calls, 0 cost)
  const fresh = ahorro([...args, '--run-id', 'run2']);
  assert.equal(fresh.status, 0, fresh.stderr);
  const rows2 = ledger(db, "json_extract(tags, '$.eval_run') = 'run2'");
  assert.equal(rows2.length, 2 * N);
  assert.ok(rows2.every((x) => JSON.parse(x.tags).purpose === 'eval'));
  const rep2 = JSON.parse(fresh.stdout);
  assert.equal(rep2.variants[0].judge_cost_usd, 0);
  assert.equal(rep2.variants[1].judge_cost_usd, 0);
  assert.equal(rep2.variants[0].quality.mean, report.variants[0].quality.mean);
});

test('a judge that answers garbage, or too late, gives failed judgments, not scores', () => {
  for (const [judge, extra] of [['judge-garbage', []], ['judge-slow', ['--timeout', '1']]]) {
    const r = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'gpt-4o-mini',
      '--judge', judge, '--limit', '3', '--format', 'json', ...extra]);
    assert.equal(r.status, 0, r.stderr);
    const v = JSON.parse(r.stdout).variants[0];
    assert.equal(v.judged, 0, judge);
    assert.equal(v.judge_failed, 3, judge);
    assert.equal(v.scores.judge, undefined);
    assert.equal(v.quality.n, 3); // the metric falls back to a scorer that has scores: choice
    assert.equal(JSON.parse(r.stdout).metric, 'choice');
  }
});

test('bad input: a clear message and exit status, nothing sent', () => {
  const before = ledger(db).length;
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"input":"fine"}\n{"input": "q", "choices": 4, "reference": "Z"}\n');
  let r = ahorro(['eval', 'run', '--dataset', bad, '--variant', 'gpt-4o-mini']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /line 2: a multiple-choice row's "reference" must be one letter/);
  writeFileSync(bad, '{"input":"fine"}\nnot json\n');
  r = ahorro(['eval', 'run', '--dataset', bad, '--variant', 'gpt-4o-mini']);
  assert.match(r.stderr, /bad.jsonl:2: not JSON/);
  writeFileSync(join(dir, 'v.yaml'), 'model: gpt-4o-mini\ncolour: blue\n');
  r = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', join(dir, 'v.yaml')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown variant key 'colour'/);
  r = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'gpt-4o-mini', '--variant', 'gpt-4o-mini']);
  assert.match(r.stderr, /two variants are named 'gpt-4o-mini'/);
  r = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'gpt-4o-mini', '--pairwise']);
  assert.match(r.stderr, /--pairwise needs --judge/);
  assert.equal(ahorro(['eval', 'report', 'nope']).status, 1);
  assert.equal(ledger(db).length, before);
  // an unknown model: every row an error, reported as such
  r = ahorro(['eval', 'run', '--dataset', join(dir, 'data.jsonl'), '--variant', 'ghost-model', '--limit', '2', '--format', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const v = JSON.parse(r.stdout).variants[0];
  assert.equal(v.errors, 2);
  assert.equal(v.quality.n, 0);
});
