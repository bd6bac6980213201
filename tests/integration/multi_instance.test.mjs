// Three gateway instances sharing their counters in one Redis (docs/state.md):
// under 300 concurrent requests spread over the three, a budget holds (total
// spend at most the limit plus one request's worst case) and an RPM limit is
// never exceeded in total; when Redis goes away, `on_failure: closed` refuses
// clearly and `open` admits, and both come back when Redis does.
// Needs a Redis: AHORRO_TEST_REDIS=redis://127.0.0.1:PORT/0 (scripts/test.sh
// starts one); skipped without it. The failure test starts its own
// redis-server, which it kills.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startFake, startGateway, ledger, waitFor, freePort, MASTER_KEY, TEST_PRICE, fakeAlias, instanceConfig, startRedis } from './lib/harness.mjs';

const REDIS = process.env.AHORRO_TEST_REDIS;
const skip = REDIS ? false : 'AHORRO_TEST_REDIS is not set (scripts/test.sh starts a Redis)';
// $1 per million input tokens, $2 per million output tokens.
// The worst case one request reserves: prompt bound (8 per message + 3 + bytes) at the
// input price, plus max_tokens (50) at the output price.
const WORST = (8 + 3 + 'hello budget'.length) * 1e-6 + 50 * 2e-6;

let fake;
before(async () => { if (!skip) fake = await startFake(['--ttft-ms', '20', '--threads', '2']); });
after(async () => { await fake?.stop(); });

// A prefix of the test's own, so that runs sharing a Redis do not meet.
const prefixOf = (name) => `ahorro-it-${process.pid}-${Date.now()}-${name}:`;

function config(dir, state, extra) {
  return instanceConfig(dir, fakeAlias('dear', fake, { model: 'gpt-4o', extra: TEST_PRICE }), `  state:
${state}
${extra}`);
}

async function startThree(state, extra) {
  const gws = [];
  try {
    for (let i = 0; i < 3; i++) gws.push(await startGateway({ config: (d) => config(d, state, extra) }));
  } catch (e) { await stopAll(gws); throw e; }
  return gws;
}
async function stopAll(gws) { for (const g of gws) { await g.stop(); g.cleanup(); } }

const clientOf = (gw) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
const ask = (c) => c.chat.completions.create({
  model: 'dear', messages: [{ role: 'user', content: 'hello budget' }], max_tokens: 50,
});
// n concurrent requests, round-robin over the instances.
const fire = (gws, n) => {
  const clients = gws.map(clientOf);
  return Promise.allSettled(Array.from({ length: n }, (_, i) => ask(clients[i % clients.length])));
};

test('a budget holds across three instances under 300 concurrent requests', { skip }, async () => {
  const limit = 100 * WORST; // about 100 worst cases; each request costs ~40% of one
  const gws = await startThree(`    url: ${REDIS}\n    prefix: "${prefixOf('budget')}"\n    on_failure: closed`,
    `  budgets:\n    - { name: shared-day, scope: global, period: day, limit_usd: ${limit} }\n`);
  try {
    const results = await fire(gws, 300);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter((r) => r.status === 'rejected');
    assert.ok(ok > 0 && refused.length > 0, `ok ${ok}, refused ${refused.length}`);
    for (const r of refused) {
      assert.equal(r.reason.status, 429, String(r.reason));
      assert.equal(r.reason.code, 'budget_exceeded');
      assert.match(r.reason.message, /Budget 'shared-day' \(global, per day\)/);
    }
    // Every instance served some of them: the budget is shared, not split.
    const rows = () => gws.map((g) => ledger(g.db, 'cost_usd > 0'));
    await waitFor(() => rows().flat().length >= ok, 10000);
    const per = rows();
    assert.ok(per.every((r) => r.length > 0), `per instance: ${per.map((r) => r.length)}`);
    const spent = per.flat().reduce((s, r) => s + r.cost_usd, 0);
    assert.equal(per.flat().length, ok);
    assert.ok(spent <= limit + WORST, `spent ${spent} over ${limit} + ${WORST}`);
    // Nothing was reloaded from a ledger at start: the Redis data is the truth.
    for (const g of gws) assert.match(g.logs(), /count in Redis .*not reloaded/);
  } finally { await stopAll(gws); }
});

test('an RPM limit of 50 is never exceeded in total across three instances', { skip }, async () => {
  // The 300 requests must fall in one minute's window: not in its last seconds.
  const inMinute = () => (Date.now() / 1000) % 60;
  if (inMinute() > 50) await sleep((61 - inMinute()) * 1000);
  const gws = await startThree(`    url: ${REDIS}\n    prefix: "${prefixOf('rpm')}"`,
    '  rate_limits:\n    - { scope: global, rpm: 50 }\n');
  try {
    const results = await fire(gws, 300);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results.filter((x) => x.status === 'rejected')) {
      assert.equal(r.reason.status, 429, String(r.reason));
      assert.match(r.reason.message, /Rate limit reached for global: 50 requests per minute/);
    }
    assert.equal(ok, 50, `${ok} requests passed a limit of 50 a minute`);
  } finally { await stopAll(gws); }
});


test('Redis gone: on_failure closed refuses clearly, open admits; both recover', { skip }, async () => {
  const port = await freePort();
  let redis = await startRedis(port);
  const url = `redis://127.0.0.1:${port}/0`;
  const limits = '  rate_limits:\n    - { scope: global, rpm: 1000 }\n' +
    '  budgets:\n    - { name: day, scope: global, period: day, limit_usd: 10 }\n';
  const gws = [];
  try {
    for (const mode of ['closed', 'open'])
      gws.push(await startGateway({
        config: (d) => config(d, `    url: ${url}\n    on_failure: ${mode}\n    timeout_ms: 100`, limits),
      }));
    const [closed, open] = gws.map(clientOf);
    await ask(closed);
    await ask(open);
    await redis.stop();
    for (let i = 0; i < 3; i++) {
      const e = await ask(closed).then(() => null, (err) => err);
      assert.ok(e, 'a request passed with on_failure: closed and no Redis');
      // not a limit reached: the state that holds the limits is gone
      assert.equal(e.status, 503);
      assert.equal(e.code, 'state_unavailable');
      assert.match(e.message, /cannot check its budgets and rate limits/);
      const r = await ask(open);
      assert.ok(r.choices[0].message.content.length > 0);
    }
    for (const [g, word] of [[gws[0], 'refusing'], [gws[1], 'admitting']]) {
      assert.match(g.logs(), new RegExp(`Redis at 127\\.0\\.0\\.1:${port} cannot be reached .*: ${word} requests`));
      assert.equal(g.logs().match(/cannot be reached/g).length, 1, 'the outage is logged once');
    }
    // Redis is back: after the backoff (1 s), the closed instance serves again.
    redis = await startRedis(port);
    const back = await waitFor(() => ask(closed).then(() => true, () => false), 5000);
    assert.ok(back, 'the closed instance did not recover');
    await ask(open);
    await waitFor(() => /is back/.test(gws[1].logs()), 3000);
    for (const g of gws) assert.match(g.logs(), /Redis at 127\.0\.0\.1:\d+ is back/);
  } finally { await stopAll(gws); await redis.stop(); }
});

test('a Redis that never answers: the counters wait on the loop without holding it, then degrade', { skip }, async () => {
  // accepts connections and never answers
  const sockets = [];
  const silent = createServer((s) => { sockets.push(s); s.on('error', () => {}); });
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const url = `redis://127.0.0.1:${silent.address().port}/0`;
  const gw = await startGateway({
    config: (d) => config(d, `    url: ${url}\n    on_failure: open\n    timeout_ms: 1500`,
      '  rate_limits:\n    - { scope: global, rpm: 1000 }\n' +
      '  budgets:\n    - { name: day, scope: global, period: day, limit_usd: 10 }\n'),
  });
  try {
    const c = clientOf(gw);
    const t0 = Date.now();
    // a client that leaves while its counters wait
    const ac = new AbortController();
    const left = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal,
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'dear', messages: [{ role: 'user', content: 'hello budget' }], max_tokens: 50 }),
    }).then(() => 'answered', (e) => e.name);
    setTimeout(() => ac.abort(), 100);
    const waiting = Promise.allSettled(Array.from({ length: 4 }, () => ask(c)));
    await sleep(200);
    // Both loops have requests waiting for Redis, and still answer at once.
    for (let i = 0; i < 4; i++) {
      const t = Date.now();
      const h = await fetch(`${gw.url}/health`);
      assert.equal(h.status, 200);
      assert.ok(Date.now() - t < 700, `/health took ${Date.now() - t} ms while counters waited for Redis`);
    }
    assert.equal(await left, 'AbortError');
    const results = await waiting;
    // on_failure: open admits once the counters time out
    for (const r of results) assert.equal(r.status, 'fulfilled', String(r.reason));
    assert.ok(Date.now() - t0 >= 1400, 'the requests did not wait for timeout_ms');
    assert.match(gw.logs(), /state: Redis at .* cannot be reached \(INCRBY: no answer in 1500 ms\): admitting/);
  } finally {
    await gw.stop(); gw.cleanup();
    for (const s of sockets) s.destroy();
    silent.close();
  }
});
