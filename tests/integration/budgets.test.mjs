// Budgets and rate limits through the real gateway: a budget cannot be
// overrun by 200 concurrent requests (each reserves its worst case first),
// spent budgets reject / downgrade / throttle, alerts reach a local webhook
// once per threshold, spend survives a restart, rpm/tpm limits answer 429
// with OpenAI's x-ratelimit-* headers, and bad guard configs stop the start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import {
  startFake, startGateway, ledger, ledgerRow, waitFor, MASTER_KEY, PROVIDER_KEY, AHORRO_BIN,
} from './lib/harness.mjs';

let fake, hook, hookPort, received = [];

// $1 per million input tokens, $2 per million output tokens.
const PRICE = 'input_cost_per_token: 0.000001, output_cost_per_token: 0.000002';

function config(dir, extra) {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  return `model_list:
  - model_name: dear
    litellm_params: { model: openai/gpt-4o, api_base: "${o}", api_key: "${PROVIDER_KEY}", ${PRICE} }
  - model_name: cheap
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "${PROVIDER_KEY}", input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000002 }
general_settings:
  master_key: ${MASTER_KEY}
ahorro:
  db: ${join(dir, 'ahorro.db')}
  threads: 2
${extra}`;
}

before(async () => {
  fake = await startFake(['--ttft-ms', '40', '--threads', '2']);
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => { received.push(JSON.parse(body)); res.end('ok'); });
  });
  await new Promise((r) => hook.listen(0, '127.0.0.1', r));
  hookPort = hook.address().port;
});
after(async () => { await fake?.stop(); hook?.close(); });

const clientOf = (gw, headers = {}) =>
  new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0, defaultHeaders: headers });
const ask = (c, model = 'dear', extra = {}, opts = {}) => c.chat.completions.create({
  model, messages: [{ role: 'user', content: 'hello budget' }], max_tokens: 50, ...extra,
}, opts).withResponse();

test('200 concurrent requests at a nearly spent budget: spend never passes the limit by more than one worst case', async () => {
  // One request: prompt "hello budget" = 2 words + 4 + 3 = 9 tokens, 20 output words at most
  // (max_tokens 50): about $0.000049. Worst case reserved: prompt bound + 50 output tokens.
  const limit = 0.002;
  const gw = await startGateway({ config: (d) => config(d, `  budgets:
    - { name: team, scope: "tag:team=alpha", period: day, limit_usd: ${limit} }
`) });
  try {
    const c = clientOf(gw, { 'x-ahorro-tags': 'team=alpha' });
    // Spend most of it first.
    for (let i = 0; i < 30; i++) await ask(c);
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => ask(c)));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter((r) => r.status === 'rejected');
    assert.ok(refused.length > 0 && ok > 0, `ok ${ok}, refused ${refused.length}`);
    for (const r of refused) {
      assert.equal(r.reason.status, 429);
      assert.equal(r.reason.code, 'budget_exceeded');
      assert.match(r.reason.message, /Budget 'team' \(tag team=alpha, per day\)/);
    }
    await waitFor(() => ledger(gw.db).length >= 230);
    const spentOf = () => ledger(gw.db).reduce((s, r) => s + (r.cost_usd || 0), 0);
    const worst = (8 + 3 + 'hello budget'.length) * 1e-6 + 50 * 2e-6;
    assert.ok(spentOf() <= limit + worst, `spent ${spentOf()} over ${limit} + ${worst}`);
    // Every reservation was given back: one at a time, requests go on until the
    // budget truly cannot cover one more worst case.
    for (let i = 0; i < 100; i++) {
      try { await ask(c); } catch (e) { assert.equal(e.status, 429); break; }
    }
    await waitFor(() => false, 200);
    const spent = spentOf();
    assert.ok(spent <= limit, `spent ${spent} over ${limit}`);
    assert.ok(spent > limit - worst, `spent ${spent}: reservations were not all given back`);
  } finally { await gw.stop(); gw.cleanup(); }
});

test('the worst case a request reserves counts what a provider adds for tools and answer schemas', async () => {
  // A fresh budget of $0.0009. "hello budget" with max_tokens 50 reserves about $0.00012 and goes
  // through; the same request with one small tool, or a JSON schema for the answer, reserves 1,024
  // prompt tokens more (a provider's tool-use prompt: Anthropic's is up to ~600 tokens), $0.001
  // at $1 per million, which this budget cannot cover, so it is refused before it is sent.
  const gw = await startGateway({ config: (d) => config(d, `  budgets:
    - { name: small, scope: "tag:team=beta", period: day, limit_usd: 0.0009 }
`) });
  try {
    const c = clientOf(gw, { 'x-ahorro-tags': 'team=beta' });
    const tool = { type: 'function', function: { name: 'lookup', description: 'Find an order',
      parameters: { type: 'object', properties: { id: { type: 'string' } } } } };
    const schema = { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'object' } } };
    for (const extra of [{ tools: [tool] }, { response_format: schema }]) {
      await assert.rejects(ask(c, 'dear', extra), (e) => e.status === 429 && e.code === 'budget_exceeded');
    }
    const { response } = await ask(c, 'dear', { response_format: { type: 'json_object' } });
    assert.equal(response.status, 200, 'JSON mode carries no schema: nothing added');
    const plain = await ask(c);
    assert.equal(plain.response.status, 200);
  } finally { await gw.stop(); gw.cleanup(); }
});

test('a spent budget downgrades to a cheaper model, or throttles, as configured; another tag is untouched', async () => {
  const gw = await startGateway({ config: (d) => config(d, `  budgets:
    - { name: support, scope: "tag:feature=support", limit_usd: 0.0002, action: downgrade, downgrade_to: cheap }
    - { name: batch, scope: "user:*", period: week, timezone: Europe/Madrid, limit_usd: 0.0002, action: throttle, throttle_rpm: 2 }
`) });
  try {
    const support = clientOf(gw, { 'x-ahorro-tags': 'feature=support' });
    let last;
    for (let i = 0; i < 8; i++) last = await ask(support);
    assert.equal(last.response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
    assert.match(last.response.headers.get('x-ahorro-route-reason'), /budget support spent \(tag feature=support\): downgraded to cheap/);
    const other = await ask(clientOf(gw, { 'x-ahorro-tags': 'feature=search' }));
    assert.equal(other.response.headers.get('x-ahorro-model'), 'gpt-4o');

    const c = clientOf(gw);
    for (let i = 0; i < 6; i++) await ask(c, 'dear', { user: 'bob' });
    // Bob's budget is spent: 2 requests a minute, then 429.
    let throttled = 0;
    for (let i = 0; i < 4; i++) {
      try { await ask(c, 'dear', { user: 'bob' }); } catch (e) {
        assert.equal(e.status, 429);
        assert.match(e.message, /Budget 'batch' is spent: its requests are throttled to 2 a minute/);
        throttled++;
      }
    }
    assert.ok(throttled >= 2, `throttled ${throttled}`);
    const alice = await ask(c, 'dear', { user: 'alice' });
    assert.equal(alice.response.status, 200);
  } finally { await gw.stop(); gw.cleanup(); }
});

test('alerts reach the webhook once per threshold; spend survives a restart', async () => {
  received = [];
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-budget-'));
  const cfg = config(dir, `  budgets:
    - name: global-day
      scope: global
      period: day
      limit_usd: 0.0005
      alerts: [0.5, 1.0]
      webhook: http://127.0.0.1:${hookPort}/hook
`);
  let gw = await startGateway({ config: cfg, dir });
  const c = clientOf(gw);
  let refused = 0;
  for (let i = 0; i < 20; i++) {
    try { await ask(c); } catch (e) { assert.equal(e.status, 429); refused++; }
  }
  assert.ok(refused > 0);
  await waitFor(() => received.length >= 2);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(received.map((a) => a.threshold).sort(), [0.5, 1]);
  for (const a of received) {
    assert.equal(a.budget, 'global-day');
    assert.match(a.text, /budget 'global-day' \(global, per day\) has reached (50|100)%/);
  }
  await gw.stop();
  gw = await startGateway({ config: cfg, dir });
  try {
    await assert.rejects(ask(clientOf(gw)), (e) => e.status === 429 && e.code === 'budget_exceeded');
    assert.equal(received.length, 2);
  } finally { await gw.stop(); gw.cleanup(); }
});

test('a budget projected to pass its limit before the period ends alerts once, ahead of the spend', async () => {
  received = [];
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-proj-'));
  const extra = (limit) => `  limits: { budget_forecast_interval_s: 1 }
  budgets:
    - { name: growth, scope: "tag:team=beta", period: month, limit_usd: ${limit}, webhook: "http://127.0.0.1:${hookPort}/hook" }
`;
  // A first start creates the ledger; then 56 days of history at $0.01 a day.
  let gw = await startGateway({ config: config(dir, extra(1000)), dir });
  await gw.stop();
  const DAY = 86400000, now = Date.now(), today = Math.floor(now / DAY);
  const rows = [];
  for (let d = today - 56; d < today; d++)
    rows.push(`('hist-${d}', ${d * DAY + 3600000}, '{"team":"beta"}', 'openai', 'chat', 0, 'dear', 0.01, 10, 200)`);
  execFileSync('sqlite3', [join(dir, 'ahorro.db'), `INSERT INTO ledger(request_id, ts_ms, tags, api, endpoint, stream, requested_model, cost_usd, latency_ms, status) VALUES ${rows.join(',')}`]);
  // This month so far, and what is left of it (today's rest included).
  const d0 = new Date(now), monthStart = Date.UTC(d0.getUTCFullYear(), d0.getUTCMonth(), 1);
  const monthEnd = Date.UTC(d0.getUTCFullYear(), d0.getUTCMonth() + 1, 1);
  const spent = 0.01 * Math.round((today * DAY - monthStart) / DAY);
  const ahead = 0.01 * (monthEnd - now) / DAY;
  const limit = +(spent + ahead / 2).toFixed(6); // above the spend, below the projection
  gw = await startGateway({ config: config(dir, extra(limit)), dir });
  try {
    await waitFor(() => received.some((a) => a.kind === 'projection'), 8000);
    const p = received.filter((a) => a.kind === 'projection');
    assert.equal(p.length, 1, JSON.stringify(received));
    assert.equal(p[0].budget, 'growth');
    assert.ok(Math.abs(p[0].spent_usd - spent) < 1e-9, `${p[0].spent_usd} vs ${spent}`);
    assert.ok(p[0].projected_usd >= limit && p[0].projected_usd < spent + ahead * 1.5, JSON.stringify(p[0]));
    assert.match(p[0].text, /is projected to reach \$/);
    // Checked every second, sent once per period.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(received.filter((a) => a.kind === 'projection').length, 1);
  } finally { await gw.stop(); gw.cleanup(); }
});

test('rate limits: rpm per user and tpm per tag, with x-ratelimit-* headers and Retry-After', async () => {
  const gw = await startGateway({ config: (d) => config(d, `  rate_limits:
    - { scope: "user:*", rpm: 3 }
    - { scope: "tag:team", tpm: 400 }
`) });
  try {
    const c = clientOf(gw);
    const rita = { user: 'rita' };
    const first = await ask(c, 'dear', rita);
    const h = first.response.headers;
    assert.equal(h.get('x-ratelimit-limit-requests'), '3');
    assert.equal(h.get('x-ratelimit-remaining-requests'), '2');
    assert.match(h.get('x-ratelimit-reset-requests'), /^\d+s$/);
    await ask(c, 'dear', rita);
    await ask(c, 'dear', rita);
    try {
      await ask(c, 'dear', rita);
      // The minute turned between the requests: the window is fresh.
      assert.ok(new Date().getSeconds() < 5);
    } catch (e) {
      assert.equal(e.status, 429);
      assert.equal(e.code, 'rate_limit_exceeded');
      assert.match(e.message, /Rate limit reached for user rita: 3 requests per minute/);
      assert.ok(Number(e.headers.get('retry-after')) >= 1);
      assert.equal(e.headers.get('x-ratelimit-remaining-requests'), '0');
    }
    // tpm: each request takes its prompt bound / 4 + max_tokens (50) from 400 a minute.
    const t = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    let tokensRefused = null;
    for (let i = 0; i < 40 && !tokensRefused; i++) {
      try {
        await t.chat.completions.create({ model: 'cheap', max_tokens: 50, user: `u${i}`,
          messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-ahorro-tags': 'team=a', authorization: `Bearer ${MASTER_KEY}` } });
      } catch (e) { if (e.status === 429 && /tokens per minute/.test(e.message)) tokensRefused = e; else if (e.status !== 429) throw e; }
    }
    assert.ok(tokensRefused, 'the tpm limit never refused');
    assert.equal(tokensRefused.headers.get('x-ratelimit-limit-tokens'), '400');
  } finally { await gw.stop(); gw.cleanup(); }
});

test('bad guard configs stop the start with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-guard-'));
  const cases = [
    ['  budgets:\n    - { name: x, scope: "team:a", limit_usd: 1 }\n', /'scope' must be global, key:ID/],
    ['  budgets:\n    - { name: x, scope: global, limit_usd: -5 }\n', /'limit_usd' must be between 0/],
    ['  budgets:\n    - { name: x, scope: global }\n', /needs 'limit_usd'/],
    ['  budgets:\n    - { name: x, scope: global, limit_usd: 1, timezone: Mars/Olympus }\n', /unknown time zone 'Mars\/Olympus'/],
    ['  budgets:\n    - { name: x, scope: global, limit_usd: 1, period: year }\n', /'period' must be day, week or month/],
    ['  budgets:\n    - { name: x, scope: global, limit_usd: 1, action: downgrade }\n', /needs 'downgrade_to'/],
    ['  budgets:\n    - { name: x, scope: global, limit_usd: 1, action: downgrade, downgrade_to: ghost }\n', /downgrades to 'ghost'/],
    ['  budgets:\n    - { name: x, scope: global, limit_usd: 1, alerts: [0.8, 0.5] }\n', /alerts must ascend/],
    ['  rate_limits:\n    - { scope: "user:*" }\n', /needs 'rpm' or 'tpm'/],
    ['  rate_limits:\n    - { scope: "user:*", rpm: -1 }\n', /'rpm' must be between 1/],
  ];
  try {
    for (const [extra, re] of cases) {
      writeFileSync(join(dir, 'c.yaml'), config(dir, extra));
      const r = spawnSync(AHORRO_BIN, ['serve', '--config', join(dir, 'c.yaml'), '--listen', '127.0.0.1:0'],
        { encoding: 'utf8', timeout: 10000 });
      assert.notEqual(r.status, 0, extra);
      assert.match(r.stderr, re, extra);
      assert.match(r.stderr, /c\.yaml:\d+/, extra);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
