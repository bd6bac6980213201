// The shared backends' health on /metrics and /health (docs/metrics.md, "The shared
// backends"): a gateway on a PostgreSQL ledger and a Redis state reports each one
// going away and coming back, and /health says "degraded" (still 200) meanwhile.
// - PostgreSQL stopped under load: ahorro_ledger_backend_up goes 0 and the spool
//   grows; after the restart it is 1 again, the spool drained by the replayer;
// - Redis stopped: ahorro_redis_up{pool="state"} goes 0 once a request meets the
//   outage; 1 again once Redis is back and a request went through.
// Needs a PostgreSQL: AHORRO_TEST_POSTGRES, and AHORRO_TEST_PGDATA for the restart
// (as postgres.test.mjs); the Redis is the test's own. Skipped without them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startFake, startGateway, waitFor, freePort, MASTER_KEY, TEST_PRICE, fakeAlias, instanceConfig, startRedis } from './lib/harness.mjs';
import { psql, freshDb, pgCtl, PGDATA, skipPg as skip } from './lib/pg.mjs';

const skipRestart = skip || (PGDATA ? false : 'AHORRO_TEST_PGDATA is not set');

let fake;
before(async () => { if (!skip) fake = await startFake(['--ttft-ms', '5', '--threads', '2']); });
after(async () => { await fake?.stop(); });

function config(dir, url, extra = '') {
  return instanceConfig(dir, fakeAlias('m', fake, { extra: TEST_PRICE }), `  ledger: ${url}
  logging: { requests: false }
${extra}`);
}

let asked = 0;
async function ask(gw) {
  const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  const { response } = await c.chat.completions
    .create({ model: 'm', messages: [{ role: 'user', content: `hello health ${asked++}` }], max_tokens: 5 })
    .withResponse();
  return response.headers.get('x-ahorro-request-id');
}
// Requests without pause until ended; the ids of the answered ones.
function load(gw, concurrency = 4) {
  const answered = [];
  let failed = 0, stop = false;
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stop) {
      try { answered.push(await ask(gw)); } catch { failed++; await sleep(5); }
    }
  });
  return { answered, failed: () => failed, async end() { stop = true; await Promise.all(loops); } };
}

// One sample of /metrics (name with its labels, as written), or undefined.
async function metric(gw, name) {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = text.match(new RegExp(`^${esc} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
}
async function health(gw) {
  const r = await fetch(`${gw.url}/health`);
  assert.equal(r.status, 200);
  return r.json();
}

test('PostgreSQL away: ledger_backend_up 0 and the spool grows, /health degraded; back: up, spool drained', { skip: skipRestart }, async () => {
  const url = freshDb();
  const gw = await startGateway({ config: (d) => config(d, url) });
  let pgDown = false;
  try {
    let l = load(gw);
    await waitFor(() => l.answered.length >= 50, 20000);
    assert.equal(await metric(gw, 'ahorro_ledger_backend_up'), 1);
    assert.ok(await metric(gw, 'ahorro_ledger_rows_written_total') > 0);
    assert.equal(await metric(gw, 'ahorro_ledger_rows_failed_total'), 0);
    assert.ok((await metric(gw, 'ahorro_ledger_queue_rows')) >= 0);
    assert.equal(await metric(gw, 'ahorro_ledger_rows_dropped_total'), 0);
    let h = await health(gw);
    assert.equal(h.status, 'ok');
    assert.equal(h.ledger.backend, 'postgres');
    assert.equal(h.ledger.up, true);
    assert.equal(typeof h.ledger.spooled_bytes, 'number');
    assert.deepEqual(h.redis, []);

    pgCtl('stop', '-D', PGDATA, '-m', 'fast', '-w');
    pgDown = true;
    assert.ok(await waitFor(async () => await metric(gw, 'ahorro_ledger_backend_up') === 0, 10000),
      'ahorro_ledger_backend_up stayed 1 with PostgreSQL stopped');
    const at = l.answered.length;
    await waitFor(() => l.answered.length >= at + 50, 10000);
    await l.end();
    const spooled = await metric(gw, 'ahorro_ledger_spool_bytes');
    assert.ok(spooled > 0, `spool bytes ${spooled}`);
    assert.ok(await metric(gw, 'ahorro_ledger_spool_segments') >= 1);
    h = await health(gw);
    assert.equal(h.status, 'degraded');
    assert.equal(h.ledger.up, false);
    assert.equal(h.ledger.spooled_bytes, spooled);
    assert.equal(l.failed(), 0, 'requests failed while PostgreSQL was down');
    const replayedBefore = await metric(gw, 'ahorro_ledger_rows_replayed_total');

    pgCtl('start', '-D', PGDATA, '-w', '-l', join(PGDATA, 'restart.log'));
    pgDown = false;
    // No load now: the replayer reconnects, starts a fresh (empty) segment and
    // replays and deletes every older one.
    const drained = await waitFor(async () =>
      await metric(gw, 'ahorro_ledger_backend_up') === 1 &&
      await metric(gw, 'ahorro_ledger_spool_bytes') === 0 &&
      await metric(gw, 'ahorro_ledger_spool_segments') === 1, 15000);
    assert.ok(drained, await (await fetch(`${gw.url}/metrics`)).text().then((t) => t.split('\n').filter((x) => /^ahorro_ledger/.test(x)).join('\n')));
    const replayed = await metric(gw, 'ahorro_ledger_rows_replayed_total');
    assert.ok(replayed > replayedBefore);
    console.log(`# PostgreSQL away: ${l.answered.length - at} requests answered, ${spooled} bytes spooled; back: ${replayed - replayedBefore} rows replayed`);
    h = await health(gw);
    assert.equal(h.status, 'ok');
    assert.equal(h.ledger.up, true);
    assert.equal(h.ledger.spooled_bytes, 0);
    // And every answered request has its row.
    const ids = new Set(psql(url, 'SELECT request_id FROM ahorro_ledger').split('\n'));
    assert.ok(l.answered.every((id) => ids.has(id)));
    // Rows written again by the writer: still up.
    l = load(gw, 2);
    await waitFor(() => l.answered.length >= 20, 10000);
    await l.end();
    assert.equal(await metric(gw, 'ahorro_ledger_backend_up'), 1);
  } finally {
    if (pgDown) pgCtl('start', '-D', PGDATA, '-w', '-l', join(PGDATA, 'restart.log'));
    await gw.stop(); gw.cleanup();
  }
});

test('Redis away: ahorro_redis_up{pool="state"} 0 and /health degraded; back: 1 after a request', { skip }, async () => {
  const url = freshDb();
  const port = await freePort();
  let redis = await startRedis(port);
  // on_failure: open, so that requests are answered while Redis is away; a budget and a
  // rate limit, so that every request uses the state pool.
  const extra = `  state:\n    url: redis://127.0.0.1:${port}/0\n    on_failure: open\n    timeout_ms: 100\n` +
    '  cache: { exact: true }\n  budgets:\n    - { name: day, scope: global, period: day, limit_usd: 100 }\n' +
    '  rate_limits:\n    - { scope: global, rpm: 100000 }\n';
  const gw = await startGateway({ config: (d) => config(d, url, extra) });
  try {
    for (let i = 0; i < 5; i++) await ask(gw);
    assert.equal(await metric(gw, 'ahorro_redis_up{pool="state"}'), 1);
    assert.equal(await metric(gw, 'ahorro_redis_up{pool="cache"}'), 1);
    assert.equal(await metric(gw, 'ahorro_redis_outages_total{pool="state"}'), 0);
    assert.equal(await metric(gw, 'ahorro_redis_calls_without_total{pool="state"}'), 0);
    let h = await health(gw);
    assert.equal(h.status, 'ok');
    assert.deepEqual(h.redis.find((p) => p.pool === 'state'), { pool: 'state', up: true, outages: 0, calls_without: 0 });

    await redis.stop();
    const down = await waitFor(async () => {
      await ask(gw); // answered without Redis (on_failure: open)
      return await metric(gw, 'ahorro_redis_up{pool="state"}') === 0;
    }, 10000);
    assert.ok(down, 'ahorro_redis_up{pool="state"} stayed 1 with Redis stopped');
    for (let i = 0; i < 5; i++) await ask(gw);
    assert.equal(await metric(gw, 'ahorro_redis_outages_total{pool="state"}'), 1);
    assert.ok(await metric(gw, 'ahorro_redis_calls_without_total{pool="state"}') > 0);
    h = await health(gw);
    assert.equal(h.status, 'degraded');
    assert.equal(h.redis.find((p) => p.pool === 'state').up, false);
    assert.equal(h.ledger.up, true); // PostgreSQL is fine
    console.log(`# Redis away: ${await metric(gw, 'ahorro_redis_calls_without_total{pool="state"}')} state calls went without it`);

    redis = await startRedis(port);
    const back = await waitFor(async () => {
      await ask(gw);
      return await metric(gw, 'ahorro_redis_up{pool="state"}') === 1;
    }, 10000);
    assert.ok(back, 'ahorro_redis_up{pool="state"} stayed 0 with Redis back');
    // The cache's pool comes back on its own next call too; then all is well.
    assert.ok(await waitFor(async () => { await ask(gw); return (await health(gw)).status === 'ok'; }, 10000),
      JSON.stringify(await health(gw)));
    assert.equal(await metric(gw, 'ahorro_redis_outages_total{pool="state"}'), 1);
    assert.match(gw.logs(), /state: Redis at 127\.0\.0\.1:\d+ is back/);
  } finally { await gw.stop(); gw.cleanup(); await redis.stop(); }
});
