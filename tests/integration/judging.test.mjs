// Sampled live judging through the real gateway (docs/experiments.md, "Sampled live
// judging"): answers on a judged route graded by a judge model on the fake provider
// (ahorro-fake --answers), after the client has them; the verdict scored on the
// judgments table, the judge's own ledger row tagged purpose=judge; sample 0 and cache
// hits not judged; a garbage judge and a slow judge recorded as failed judgments; the
// client never waits for the judge; at most 8 judge calls in flight per worker;
// `ahorro quality drift --json` and `ahorro experiments show --json` checked against
// the rows; a judge in flight at SIGTERM drained, not leaked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import {
  startFake, startGateway, testConfig, ledger, waitFor, MASTER_KEY, PROVIDER_KEY, AHORRO_BIN,
} from './lib/harness.mjs';

const VERDICT = '{"relevance": 8, "accuracy": 7, "reason": "fine"}';
const SCORE = (7 / 9 + 6 / 9) / 2; // (s - 1) / 9, averaged
const JUDGE_DELAY_MS = 3000;

let tmp, fake, gw, openai;

function config(dir) {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  const judge = (name, extra = '') =>
    `  - model_name: ${name}\n    litellm_params: { model: openai/${name}, api_base: "${o}", api_key: "${PROVIDER_KEY}"${extra} }\n`;
  return testConfig(fake, dir, `  cache: { exact: true }
  routing: { retries: 0 }
  judging:
    - { route: gpt-4o-mini, judge: judge-ok, sample: 1, criteria: [relevance, accuracy] }
    - { route: claude-on-gpt, judge: judge-ok, sample: 0 }
    - { route: gpt-on-claude, judge: judge-garbage, sample: 1 }
    - { route: priced-by-config, judge: judge-slow, sample: 1 }
  experiments:
    - name: judged
      route: gpt-4o-mini
      arms:
        - { name: control, weight: 1 }
        - { name: other, weight: 1, model: claude-on-gpt }
      policy: { kind: bandit, metric: judge, min_quality: 0.5, refresh_s: 1 }
`).replace('model_list:\n', 'model_list:\n' + judge('judge-ok') + judge('judge-garbage') +
    judge('judge-slow', ', timeout: 1'));
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'ahorro-judging-'));
  const answers = join(tmp, 'answers.jsonl');
  writeFileSync(answers, [
    { model: 'judge-ok', answer: VERDICT },
    { model: 'judge-garbage', answer: 'looks fine to me' },
    { model: 'judge-slow', answer: VERDICT, delay_ms: JUDGE_DELAY_MS },
  ].map((l) => JSON.stringify(l)).join('\n') + '\n');
  fake = await startFake(['--answers', answers]);
  gw = await startGateway({ fake, config });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
});

after(async () => {
  await gw?.stop(); // exit 0; under ASan also leak-free
  gw?.cleanup();
  await fake?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const q = (s) => s.replace(/'/g, "''");
const judgments = (where = '1=1') => {
  const out = execFileSync('sqlite3', ['-json', gw.db, `SELECT * FROM judgments WHERE ${where} ORDER BY id`],
    { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
};
const judgmentOf = (id, timeoutMs = 8000) =>
  waitFor(() => judgments(`request_id = '${q(id)}'`)[0], timeoutMs);

async function ask(model, content, { user, stream = false } = {}) {
  const t0 = Date.now();
  if (!stream) {
    const { data, response } = await openai.chat.completions
      .create({ model, user, messages: [{ role: 'user', content }] }).withResponse();
    return { id: response.headers.get('x-ahorro-request-id'), text: data.choices[0].message.content,
      cache: response.headers.get('x-ahorro-cache'), ms: Date.now() - t0 };
  }
  const { data, response } = await openai.chat.completions
    .create({ model, user, stream: true, messages: [{ role: 'user', content }] }).withResponse();
  let text = '';
  for await (const c of data) text += c.choices[0]?.delta?.content ?? '';
  return { id: response.headers.get('x-ahorro-request-id'), text, ms: Date.now() - t0 };
}

test('every sampled answer is judged, streamed or not; the verdict is scored; sample 0 judges none', async () => {
  const asked = [];
  for (let i = 0; i < 24; i += 4) // at most 4 at a time: never past the in-flight cap
    asked.push(...await Promise.all([0, 1, 2, 3].map((k) =>
      ask('gpt-4o-mini', `question ${i + k} about judging`, { user: `u-${i + k}`, stream: k === 3 }))));
  const unjudged = await Promise.all([0, 1, 2, 3].map((k) => ask('claude-on-gpt', `not judged ${k}`)));
  for (const a of asked) {
    const j = await judgmentOf(a.id);
    assert.ok(j, `judgment of ${a.id}`);
    assert.equal(j.route, 'gpt-4o-mini');
    assert.equal(j.judge, 'judge-ok');
    assert.ok(Math.abs(j.score - SCORE) < 1e-12, `${j.score}`);
    assert.deepEqual(JSON.parse(j.scores), { relevance: 8, accuracy: 7 });
    assert.equal(j.reason, 'fine');
    assert.equal(j.error, null);
    // the judge's own ledger row: purpose=judge, the judged request's tags, linked both ways
    const row = await waitFor(() => ledger(gw.db, `request_id = '${q(j.judge_request_id)}'`)[0]);
    assert.ok(row, j.judge_request_id);
    const tags = JSON.parse(row.tags);
    assert.equal(tags.purpose, 'judge');
    assert.equal(tags.judge_for, a.id);
    assert.equal(tags.experiment, 'judged');
    assert.match(tags.arm, /^(control|other)$/);
    assert.equal(row.requested_model, 'judge-ok');
    assert.equal(row.status, 200);
  }
  // sample 0: the other route's answers are never judged
  await new Promise((r) => setTimeout(r, 300));
  for (const u of unjudged) assert.equal(judgments(`request_id = '${q(u.id)}'`).length, 0);
  assert.equal(judgments("route = 'claude-on-gpt'").length, 0);
});

test('the judge sees the question and the streamed answer, at temperature 0', async () => {
  const a = await ask('gpt-4o-mini', 'what is a streamed answer worth?', { user: 'stream-1', stream: true });
  assert.match(a.text, /simulated/);
  const j = await judgmentOf(a.id);
  assert.ok(Math.abs(j.score - SCORE) < 1e-12);
  const last = await fake.last(); // the judge's call came after the client's answer
  assert.equal(last.body.model, 'judge-ok');
  assert.equal(last.body.temperature, 0);
  const prompt = last.body.messages.map((m) => m.content).join('\n');
  assert.ok(prompt.includes('what is a streamed answer worth?'), prompt);
  assert.ok(prompt.includes(a.text), `the answer in the prompt: ${a.text}`);
  assert.match(prompt, /relevance/);
  assert.match(prompt, /accuracy/);
  assert.doesNotMatch(prompt, /conciseness/); // the route's own rubric
});

test('a cache hit is not judged', async () => {
  const first = await ask('gpt-4o-mini', 'cache me if you can', { user: 'cache-1' });
  const again = await ask('gpt-4o-mini', 'cache me if you can', { user: 'cache-1' });
  assert.equal(again.cache, 'exact');
  assert.ok(await judgmentOf(first.id));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(judgments(`request_id = '${q(again.id)}'`).length, 0);
});

test('a judge that answers garbage gives a failed judgment, never a score', async () => {
  const a = await ask('gpt-on-claude', 'judge me badly');
  const j = await judgmentOf(a.id);
  assert.equal(j.score, null);
  assert.equal(j.scores, null);
  assert.match(j.error, /not a verdict: looks fine to me/);
  const row = await waitFor(() => ledger(gw.db, `request_id = '${q(j.judge_request_id)}'`)[0]);
  assert.equal(JSON.parse(row.tags).purpose, 'judge');
  assert.equal(row.status, 200); // the call worked; its answer did not
});

test('a slow judge never delays the client; its timeout is a failed judgment', async () => {
  const a = await ask('priced-by-config', 'judge me slowly');
  const b = await ask('priced-by-config', 'and me too');
  assert.ok(a.ms < JUDGE_DELAY_MS / 3 && b.ms < JUDGE_DELAY_MS / 3, `client waited ${a.ms}, ${b.ms} ms`);
  for (const x of [a, b]) {
    const j = await judgmentOf(x.id);
    assert.equal(j.score, null);
    assert.match(j.error, /^HTTP 504: .*did not answer in time/);
    const row = await waitFor(() => ledger(gw.db, `request_id = '${q(j.judge_request_id)}'`)[0]);
    assert.equal(row.status, 504);
    assert.equal(JSON.parse(row.tags).purpose, 'judge');
  }
});

test('at most 8 judge calls in flight per worker: the rest of the sample is skipped', async () => {
  const before = judgments("route = 'priced-by-config'").length;
  const burst = await Promise.all(Array.from({ length: 24 }, (_, i) => ask('priced-by-config', `burst ${i}`)));
  for (const x of burst) assert.ok(x.ms < JUDGE_DELAY_MS / 2, `client waited ${x.ms} ms`);
  // every started call ends (timeout 1 s) as a failed judgment; 2 workers x 8 at most
  await new Promise((r) => setTimeout(r, 3500));
  const ids = new Set(burst.map((x) => x.id));
  const made = judgments("route = 'priced-by-config'").filter((j) => ids.has(j.request_id));
  assert.ok(made.length <= 16 && made.length >= 1, `${made.length} judged`);
  if (process.env.SHOW_TABLE) console.log(`burst: ${made.length} of ${burst.length} judged`);
  assert.equal(judgments("route = 'priced-by-config'").length, before + made.length);
});

test('quality drift --json agrees with the judgments table', () => {
  const rows = judgments();
  const rep = JSON.parse(execFileSync(AHORRO_BIN, ['quality', 'drift', '--json', '--since', '1d', '--config', gw.cfgPath],
    { encoding: 'utf8' }));
  assert.equal(rep.by, 'day');
  const today = new Date().toISOString().slice(0, 10);
  const keys = [...new Set(rows.map((r) => `${r.route}\u0000${r.judge}`))].sort();
  assert.deepEqual(rep.routes.map((s) => `${s.route}\u0000${s.judge}`), keys);
  for (const s of rep.routes) {
    const mine = rows.filter((r) => r.route === s.route && r.judge === s.judge);
    const scored = mine.filter((r) => r.score !== null);
    assert.equal(s.judged, scored.length, s.route);
    assert.equal(s.failed, mine.length - scored.length, s.route);
    assert.equal(s.periods.length, 1);
    assert.equal(s.periods[0].period, today);
    assert.equal(s.periods[0].judged, scored.length);
    assert.equal(s.periods[0].vs_previous, null);
    if (scored.length)
      assert.ok(Math.abs(s.score_mean - scored.reduce((a, r) => a + r.score, 0) / scored.length) < 1e-12);
    else
      assert.equal(s.score_mean, null);
  }
  const ok = rep.routes.find((s) => s.route === 'gpt-4o-mini');
  assert.ok(Math.abs(ok.score_mean - SCORE) < 1e-12);
  assert.deepEqual(ok.score_ci95.map((x) => Math.round(x * 1e9)), [SCORE, SCORE].map((x) => Math.round(x * 1e9)));
  // --route and the table form
  const one = JSON.parse(execFileSync(AHORRO_BIN, ['quality', 'drift', '--json', '--route', 'gpt-on-claude', '--by', 'week',
    '--config', gw.cfgPath], { encoding: 'utf8' }));
  assert.deepEqual(one.routes.map((s) => s.route), ['gpt-on-claude']);
  assert.equal(one.routes[0].judged, 0);
  assert.ok(one.routes[0].failed >= 1);
  const table = execFileSync(AHORRO_BIN, ['quality', 'drift', '--config', gw.cfgPath], { encoding: 'utf8' });
  if (process.env.SHOW_TABLE) console.log(table);
  assert.match(table, /route gpt-4o-mini {2}judge judge-ok/);
  assert.match(table, new RegExp(today));
});

test('experiments show: judged and judge_mean per arm, from the judgments; the bandit weighs them', async () => {
  // enough judged answers in each arm for the bandit (10 each)
  const had = judgments("route = 'gpt-4o-mini'").length;
  for (let i = 0; i < 40; i += 4)
    await Promise.all([0, 1, 2, 3].map((k) => ask('gpt-4o-mini', `more ${i + k}`, { user: `more-${i + k}` })));
  assert.ok(await waitFor(() => judgments("route = 'gpt-4o-mini'").length === had + 40));
  const rows = JSON.parse(execFileSync('sqlite3', ['-json', gw.db,
    "SELECT json_extract(l.tags, '$.arm') AS arm, j.score AS score FROM ledger l LEFT JOIN judgments j " +
    "ON j.request_id = l.request_id WHERE l.attempt_of IS NULL AND json_extract(l.tags, '$.experiment') = 'judged' " +
    "AND COALESCE(json_extract(l.tags, '$.purpose'), '') <> 'judge'"], { encoding: 'utf8' }));
  const rep = JSON.parse(execFileSync(AHORRO_BIN, ['experiments', 'show', 'judged', '--json', '--config', gw.cfgPath],
    { encoding: 'utf8' }));
  const x = rep.data[0];
  assert.equal(x.policy.metric, 'judge');
  for (const arm of x.arms) {
    const mine = rows.filter((r) => r.arm === arm.name);
    const scored = mine.filter((r) => r.score !== null);
    assert.equal(arm.requests, mine.length, `${arm.name} requests (the judge's own rows left out)`);
    assert.equal(arm.judged, scored.length, arm.name);
    assert.ok(scored.length >= 10, `${arm.name}: ${scored.length}`);
    assert.ok(Math.abs(arm.judge_mean - SCORE) < 1e-12, `${arm.name} ${arm.judge_mean}`);
  }
  assert.match(x.arms[1].vs_control.judge.verdict, /significant/);
  assert.match(x.policy.note, /shifted to arm|no arm reaches|configured weights/);
  assert.ok(x.policy.winner, x.policy.note); // both arms at 0.72 >= min_quality 0.5
  const res = await fetch(`${gw.url}/admin/experiments?name=judged`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  assert.equal(res.status, 200);
  const admin = await res.json();
  assert.deepEqual(admin.data[0].arms.map((a) => [a.judged, a.judge_mean]), x.arms.map((a) => [a.judged, a.judge_mean]));
  const table = execFileSync(AHORRO_BIN, ['experiments', 'show', 'judged', '--config', gw.cfgPath], { encoding: 'utf8' });
  if (process.env.SHOW_TABLE) console.log(table);
  assert.match(table, /judged/);
  assert.match(table, /policy bandit on judge/);
});

test('a judge in flight at SIGTERM is drained into a failed judgment; the gateway exits 0', async () => {
  const a = await ask('priced-by-config', 'judged during shutdown');
  const t0 = Date.now();
  const exit = await gw.stop(); // throws unless the exit is clean (and, under ASan, leak-free)
  assert.equal(exit.code, 0);
  assert.ok(Date.now() - t0 < 10000, `shutdown took ${Date.now() - t0} ms`);
  const j = judgments(`request_id = '${q(a.id)}'`)[0];
  assert.ok(j, 'the judgment was written before exit');
  assert.equal(j.score, null);
  assert.ok(j.error);
});
