// Live experiments through the real gateway (docs/experiments.md): a route's
// traffic split between two arms on fake-backed aliases, sticky per user, the
// arm in the header and on the ledger row, feedback joined to the arms, and
// `ahorro experiments show --json` and /admin/experiments checked against a
// hand computation from the ledger rows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import OpenAI from 'openai';
import { startFake, startGateway, testConfig, ledger, waitFor, MASTER_KEY, AHORRO_BIN } from './lib/harness.mjs';

const EXPERIMENTS = `  experiments:
    - name: mini-vs-llama
      route: gpt-4o-mini
      arms:
        - { name: control, weight: 50 }
        - { name: llama, weight: 50, model: priced-by-config, max_tokens: 30 }
    - name: bandit
      route: claude-on-gpt
      arms:
        - { name: costly, weight: 1 }
        - { name: cheap, weight: 1, model: priced-by-config }
      policy: { kind: bandit, min_quality: 0.5, floor: 0.05, refresh_s: 1 }
    - name: search-only
      route: tiny
      when: { tags: { feature: search } }
      sticky: key
      arms:
        - { name: a, weight: 1 }
        - { name: b, weight: 1, model: gpt-4o-mini }
`;

let fake, gw, openai;

before(async () => {
  fake = await startFake();
  gw = await startGateway({ fake, config: (dir) => testConfig(fake, dir, EXPERIMENTS) });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
});

after(async () => {
  await gw?.stop();
  gw?.cleanup();
  await fake?.stop();
});

async function ask(user, model = 'gpt-4o-mini', headers = {}) {
  const { data, response } = await openai.chat.completions
    .create({ model, user, messages: [{ role: 'user', content: `hello from ${user}` }] }, { headers })
    .withResponse();
  return { data, id: response.headers.get('x-ahorro-request-id'), exp: response.headers.get('x-ahorro-experiment') };
}

// 200 distinct users, 10 at a time
async function askMany(n) {
  const out = [];
  for (let i = 0; i < n; i += 10)
    out.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, (_, j) => ask(`user-${i + j}`))));
  return out;
}

const post = (path, body) => fetch(`${gw.url}${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('arms split by weight, sticky per user, on the header and the ledger; feedback joins; show agrees', async () => {
  const first = await askMany(200);
  const arms = { control: 0, llama: 0 };
  for (const r of first) {
    assert.match(r.exp, /^mini-vs-llama\/(control|llama)$/);
    arms[r.exp.split('/')[1]]++;
  }
  // 50/50 of 200: sd 7.1; 5 sd of tolerance
  assert.ok(Math.abs(arms.control - 100) <= 35, JSON.stringify(arms));

  // the same user, the same arm
  const again = await Promise.all(first.slice(0, 30).map((_, i) => ask(`user-${i}`)));
  again.forEach((r, i) => assert.equal(r.exp, first[i].exp, `user-${i}`));

  // the ledger's tags match the header; the llama arm went to its alias with its max_tokens
  await waitFor(() => ledger(gw.db, "json_extract(tags, '$.experiment') = 'mini-vs-llama'").length >= 230);
  const rows = ledger(gw.db, "json_extract(tags, '$.experiment') = 'mini-vs-llama'");
  assert.equal(rows.length, 230);
  const byId = new Map(rows.map((r) => [r.request_id, r]));
  for (const r of [...first, ...again]) {
    const row = byId.get(r.id);
    assert.ok(row, r.id);
    const tags = JSON.parse(row.tags);
    assert.equal(`${tags.experiment}/${tags.arm}`, r.exp);
    assert.equal(row.requested_model, tags.arm === 'llama' ? 'priced-by-config' : 'gpt-4o-mini');
  }

  // feedback for 60 requests: thumbs on control, scores on llama, some wrong
  const given = new Map();
  for (const [i, r] of first.slice(0, 60).entries()) {
    const arm = r.exp.split('/')[1];
    const body = arm === 'control' ? { request_id: r.id, thumbs: i % 3 ? 'up' : 'down' }
      : { request_id: r.id, score: (i % 5) / 4, wrong: i % 4 === 0, comment: 'test' };
    const res = await post('/v1/feedback', body);
    assert.equal(res.status, 200, await res.text());
    given.set(r.id, { arm, score: body.score ?? (body.thumbs === 'up' ? 1 : 0), wrong: !!body.wrong });
  }
  const badThumb = await post('/v1/feedback', { request_id: first[0].id, thumbs: 'sideways' });
  assert.equal(badThumb.status, 400);

  // a hand computation from the ledger rows and the feedback given
  const hand = {};
  for (const name of ['control', 'llama']) {
    const mine = rows.filter((r) => JSON.parse(r.tags).arm === name);
    const fb = [...given.values()].filter((g) => g.arm === name);
    hand[name] = {
      requests: mine.length,
      cost_total_usd: mine.reduce((a, r) => a + (r.cost_usd ?? 0), 0),
      latency_mean_ms: mean(mine.filter((r) => r.status < 400).map((r) => r.latency_ms)),
      feedback: fb.length,
      score_mean: mean(fb.map((g) => g.score)),
      wrong_share: fb.filter((g) => g.wrong).length / fb.length,
    };
  }
  const check = (rep, how) => {
    const x = rep.data.find((e) => e.name === 'mini-vs-llama');
    assert.ok(x, how);
    assert.equal(x.route, 'gpt-4o-mini');
    assert.deepEqual(x.arms.map((a) => a.name), ['control', 'llama']);
    for (const a of x.arms) {
      const h = hand[a.name];
      assert.equal(a.requests, h.requests, `${how} ${a.name} requests`);
      assert.ok(Math.abs(a.cost_total_usd - h.cost_total_usd) < 1e-9, `${how} ${a.name} cost`);
      assert.ok(Math.abs(a.latency_mean_ms - h.latency_mean_ms) < 1e-6, `${how} ${a.name} latency`);
      assert.equal(a.feedback, h.feedback, `${how} ${a.name} feedback`);
      assert.ok(Math.abs(a.score_mean - h.score_mean) < 1e-9, `${how} ${a.name} score`);
      assert.ok(Math.abs(a.wrong_share - h.wrong_share) < 1e-9, `${how} ${a.name} wrong`);
      assert.equal(a.error_rate, 0);
    }
    const vs = x.arms[1].vs_control;
    for (const k of ['cost', 'latency', 'score', 'wrong', 'errors'])
      assert.match(vs[k].verdict, /^(significant|not yet significant)/, `${how} ${k}`);
    // the llama arm costs by the config's price, the control by the catalogue's: a difference
    assert.ok(Math.abs(vs.cost.diff - (h2(x, 'llama') - h2(x, 'control'))) < 1e-12);
    assert.equal(x.policy.kind, 'fixed');
    assert.deepEqual(x.policy.weights_now, [0.5, 0.5]);
    // satisfaction by feature, route and arm: both arms' feedback
    const sat = rep.satisfaction.filter((s) => s.experiment === 'mini-vs-llama');
    assert.equal(sat.reduce((a, s) => a + s.feedback, 0), 60, how);
  };
  const h2 = (x, name) => x.arms.find((a) => a.name === name).cost_per_request_usd;
  const cli = JSON.parse(execFileSync(AHORRO_BIN, ['experiments', 'show', '--json', '--config', gw.cfgPath],
    { encoding: 'utf8' }));
  check(cli, 'cli');
  const res = await fetch(`${gw.url}/admin/experiments`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  assert.equal(res.status, 200);
  check(await res.json(), 'admin');
  // the table form names both arms and a verdict
  const table = execFileSync(AHORRO_BIN, ['experiments', 'show', 'mini-vs-llama', '--config', gw.cfgPath],
    { encoding: 'utf8' });
  if (process.env.SHOW_TABLE) console.log(table);
  assert.match(table, /experiment mini-vs-llama/);
  assert.match(table, /llama vs control:/);
  assert.match(table, /significant/);
  const unknown = await fetch(`${gw.url}/admin/experiments?name=nope`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  assert.equal(unknown.status, 404);
});

test('a tag condition limits the experiment; a client cannot pick its arm', async () => {
  const plain = await ask('u1', 'tiny');
  assert.equal(plain.exp, null);
  const search = await ask('u1', 'tiny', { 'x-ahorro-tags': 'feature=search,arm=b,experiment=x' });
  assert.match(search.exp, /^search-only\/(a|b)$/);
  // sticky by key: every user of the master key gets the same arm
  const others = await Promise.all(['u2', 'u3', 'u4', 'u5'].map((u) => ask(u, 'tiny', { 'x-ahorro-tags': 'feature=search' })));
  for (const o of others) assert.equal(o.exp, search.exp);
  const forged = await ask('u1', 'tiny', { 'x-ahorro-tags': 'arm=b,experiment=search-only' });
  assert.equal(forged.exp, null);
  const row = await waitFor(() => ledger(gw.db, `request_id = '${forged.id}'`)[0]);
  const tags = JSON.parse(row.tags ?? '{}') ?? {};
  assert.equal(tags.arm, undefined);
  assert.equal(tags.experiment, undefined);
});

test('a bandit shifts new users to the arm with the best quality per dollar, and says why', async () => {
  // the costly arm (the catalogue's gpt-4o-mini price) is rated under min_quality, the cheap one well
  const first = await Promise.all(Array.from({ length: 40 }, (_, i) => ask(`b-${i}`, 'claude-on-gpt')));
  await waitFor(() => ledger(gw.db, "json_extract(tags, '$.experiment') = 'bandit'").length >= 40);
  for (const r of first) {
    const arm = r.exp.split('/')[1];
    const res = await post('/v1/feedback', { request_id: r.id, score: arm === 'cheap' ? 0.9 : 0.3 });
    assert.equal(res.status, 200);
  }
  await new Promise((r) => setTimeout(r, 1100)); // past refresh_s
  await ask('b-trigger', 'claude-on-gpt'); // the first request after refresh_s recomputes
  const later = await Promise.all(Array.from({ length: 100 }, (_, i) => ask(`b2-${i}`, 'claude-on-gpt')));
  const cheap = later.filter((r) => r.exp === 'bandit/cheap').length;
  assert.ok(cheap >= 85, `cheap got ${cheap} of 100 new users (weights 0.95/0.05)`);
  assert.match(gw.logs(), /experiment bandit: shifted to arm cheap: quality\/\$ [0-9.e+]+ \(score 0\.900/);
  const rep = JSON.parse(execFileSync(AHORRO_BIN, ['experiments', 'show', 'bandit', '--json', '--config', gw.cfgPath],
    { encoding: 'utf8' }));
  const x = rep.data[0];
  assert.equal(x.policy.kind, 'bandit');
  assert.equal(x.policy.winner, 'cheap');
  assert.deepEqual(x.policy.weights_now.map((w) => Math.round(w * 100)), [5, 95]);
  assert.match(x.policy.note, /costly: score 0\.300 \(under min_quality\)/);
});

const CHROMIUM = process.env.AHORRO_CHROMIUM || '/usr/bin/chromium';
test('the dashboard panel shows each arm', { skip: !existsSync(CHROMIUM) && 'no chromium' }, async () => {
  const profile = mkdtempSync(join(tmpdir(), 'ahorro-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${gw.url}/dashboard?key=${encodeURIComponent(MASTER_KEY)}`);
    await page.waitForSelector('[data-testid="experiment-row"]', { timeout: 10000 });
    const rows = await page.$$eval('[data-testid="experiment-row"] td.name', (tds) => tds.map((t) => t.textContent));
    for (const r of ['mini-vs-llama/control', 'mini-vs-llama/llama', 'bandit/costly', 'bandit/cheap'])
      assert.ok(rows.includes(r), `${r} in ${rows}`);
    assert.match(await page.textContent('#experiments'), /significant/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

test('a bad experiment fails at start with file:line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-exp-'));
  const cases = [
    ['  experiments:\n    - name: x\n      route: gpt-4o-mini\n      arms:\n        - { name: a, weight: 1 }\n        - { name: b, weight: 0 }\n', /c\.yaml:\d+: arm 'b' needs a 'weight' above 0/],
    ['  experiments:\n    - name: x\n      route: gpt-4o-mini\n      arms:\n        - { name: a, weight: 1 }\n        - { name: b, weight: 1, model: ghost }\n', /c\.yaml:\d+: experiment 'x', arm 'b': model 'ghost' is not in model_list/],
  ];
  try {
    for (const [extra, re] of cases) {
      writeFileSync(join(dir, 'c.yaml'), testConfig(fake, dir, extra));
      const r = spawnSync(AHORRO_BIN, ['serve', '--config', join(dir, 'c.yaml'), '--listen', '127.0.0.1:0'],
        { encoding: 'utf8', timeout: 10000 });
      assert.notEqual(r.status, 0, extra);
      assert.match(r.stderr, re, extra);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
