// Gateway instances sharing one PostgreSQL ledger and one set of virtual keys
// (docs/postgres.md):
// - keys created on one instance work on all; a key revoked on one stops on every
//   other within the key cache's 5 s;
// - every request of every instance is one row of the shared ledger, `ahorro report`
//   reads it, and feedback sent to any instance finds it;
// - an instance killed with SIGKILL under load loses no row of a request that got
//   its response: the spool it journaled them in is replayed at its next start;
// - PostgreSQL restarted mid-load loses none either: rows wait in the spool and are
//   replayed when it is back, while requests keep being answered; nor does a Redis
//   restarted mid-load (it holds budgets, limits and caches, not the ledger).
// Needs a PostgreSQL: AHORRO_TEST_POSTGRES=postgres://USER@127.0.0.1:PORT/DB, and for
// the restart test AHORRO_TEST_PGDATA (its data directory) and AHORRO_TEST_PG_BIN (where
// pg_ctl is); scripts/test.sh starts one. Skipped without it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startFake, startGateway, waitFor, freePort, MASTER_KEY, TEST_PRICE, fakeAlias, instanceConfig, AHORRO_BIN, startRedis } from './lib/harness.mjs';
import { psql, freshDb, pgCtl, PG, PGDATA, skipPg as skip } from './lib/pg.mjs';


let fake;
before(async () => { if (!skip) fake = await startFake(['--ttft-ms', '5', '--threads', '2']); });
after(async () => { await fake?.stop(); });

// The request ids in the ledger, and how many rows hold them.
const idsOf = (url) => {
  const ids = psql(url, 'SELECT request_id FROM ahorro_ledger').split('\n').filter(Boolean);
  return { set: new Set(ids), rows: ids.length };
};
const rowsOf = (url, where = 'true') =>
  JSON.parse(psql(url, `SELECT COALESCE(json_agg(t), '[]') FROM (SELECT * FROM ahorro_ledger WHERE ${where} ORDER BY id) t`));

function config(dir, url, extra = '') {
  return instanceConfig(dir, fakeAlias('m', fake, { extra: TEST_PRICE }), `  ledger: ${url}
  logging: { requests: false }   # thousands of requests: keep the gateway's own log readable
${extra}`);
}

const client = (gw, key = MASTER_KEY) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
// The request id of an answered request.
async function ask(c, content = 'hello ledger') {
  const { response } = await c.chat.completions
    .create({ model: 'm', messages: [{ role: 'user', content }], max_tokens: 5 })
    .withResponse();
  return response.headers.get('x-ahorro-request-id');
}

async function startOn(url, extra = '', dir) {
  return startGateway({ config: (d) => config(d, url, extra), dir });
}
async function stopAll(gws) { for (const g of gws) { await g.stop(); g.cleanup(); } }

test('keys created on one instance work on all; a revoked key stops everywhere within 5 s', { skip }, async () => {
  const url = freshDb();
  const gws = [];
  try {
    for (let i = 0; i < 3; i++) gws.push(await startOn(url));
    const admin = (g, path, init = {}) => fetch(`${g.url}${path}`, {
      ...init, headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
    });
    const made = await (await admin(gws[0], '/admin/keys', {
      method: 'POST', body: JSON.stringify({ owner: 'alice', tags: { team: 'search' } }),
    })).json();
    assert.match(made.key, /^sk-ah-/);
    // Every instance knows it at once (it was never cached anywhere).
    for (const g of gws) assert.ok(await ask(client(g, made.key)));
    // Listed on another instance, from the same table.
    const list = await (await admin(gws[2], '/admin/keys')).json();
    assert.ok(list.data.some((k) => k.id === made.id && k.owner === 'alice'));
    // Revoked on the second: refused on every instance within the key cache's TTL (5 s).
    const rev = await admin(gws[1], `/admin/keys/${made.id}`, { method: 'DELETE' });
    assert.equal(rev.status, 200);
    const t0 = Date.now();
    const refusedEverywhere = await waitFor(async () => {
      const st = await Promise.all(gws.map((g) => ask(client(g, made.key)).then(() => 200, (e) => e.status)));
      return st.every((s) => s === 401);
    }, 8000);
    assert.ok(refusedEverywhere, 'the revoked key still works somewhere after 8 s');
    assert.ok(Date.now() - t0 <= 7500, `took ${Date.now() - t0} ms`); // 5 s TTL, plus polling under load
    // `ahorro migrate` finds the schema current (the instances migrated it at start).
    const cfg = gws[0].cfgPath;
    const mig = execFileSync(AHORRO_BIN, ['migrate', '--config', cfg], { encoding: 'utf8' });
    assert.match(mig, /postgres postgres:\/\/.*: schema up to date \(version \d+\)/);
    // The CLI reads and writes the same keys.
    const out = execFileSync(AHORRO_BIN, ['keys', 'list', '--config', cfg], { encoding: 'utf8' });
    assert.match(out, new RegExp(made.id));
  } finally { await stopAll(gws); }
});

test('three instances write one ledger, and `ahorro report` reads it', { skip }, async () => {
  const url = freshDb();
  const gws = [];
  try {
    for (let i = 0; i < 3; i++) gws.push(await startOn(url));
    const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => ask(client(gws[i % 3]))));
    await waitFor(() => rowsOf(url).length >= 60, 10000);
    const rows = rowsOf(url);
    assert.equal(rows.length, 60);
    assert.deepEqual(new Set(rows.map((r) => r.request_id)), new Set(ids));
    const r = rows[0];
    assert.equal(r.status, 200);
    assert.equal(r.served_model, 'gpt-4o-mini');
    assert.ok(r.cost_usd > 0 && r.prompt_tokens > 0 && r.latency_ms > 0);
    assert.equal(r.owner, 'master');
    // The report, on the PostgreSQL config, sums every instance's rows.
    const rep = JSON.parse(execFileSync(AHORRO_BIN,
      ['report', '--by', 'model', '--format', 'json', '--config', gws[0].cfgPath], { encoding: 'utf8' }));
    const total = rows.reduce((s, x) => s + x.cost_usd, 0);
    assert.equal(rep.model[0].requests, 60);
    assert.ok(Math.abs(rep.model[0].cost_usd - total) < 1e-12, `${rep.model[0].cost_usd} vs ${total}`);
    // And /admin/spend on any instance does too.
    const spend = await (await fetch(`${gws[2].url}/admin/spend?group_by=model`, {
      headers: { authorization: `Bearer ${MASTER_KEY}` },
    })).json();
    assert.equal(spend.groups[0].requests, 60);
    // So do the dashboard's own panels (latency by model here).
    const lat = await (await fetch(`${gws[1].url}/admin/latency?since=1h`, {
      headers: { authorization: `Bearer ${MASTER_KEY}` },
    })).json();
    assert.equal(lat.models.find((m) => m.model === 'gpt-4o-mini')?.requests, 60, JSON.stringify(lat));
    // Feedback on another instance than the one that answered: it finds the row in the
    // shared ledger and is kept in the shared table.
    const fb = await fetch(`${gws[1].url}/v1/feedback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ request_id: ids[0], thumbs: 'up', comment: 'fine' }),
    });
    assert.equal(fb.status, 200, await fb.clone().text());
    assert.equal(psql(url, `SELECT score || ' ' || comment FROM ahorro_feedback WHERE request_id = '${ids[0]}'`), '1 fine');
    const unknown = await fetch(`${gws[2].url}/v1/feedback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ request_id: 'req_nope', thumbs: 'down' }),
    });
    assert.equal(unknown.status, 404);
    // A clean stop leaves nothing in the spools: every row is in.
    for (const g of gws) {
      await g.stop();
      assert.deepEqual(readdirSync(join(g.dir, 'ahorro.db-spool')), []);
      assert.doesNotMatch(g.logs(), /lost row|refused row/);
    }
  } finally { await stopAll(gws); }
});

// Fire requests without pause until stopped; the ids of the answered ones. Every prompt
// is new, so that none is a cache hit.
let asked = 0;
function load(gw, concurrency = 16) {
  const c = client(gw);
  const answered = [];
  let failed = 0, stop = false;
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stop) {
      try { answered.push(await ask(c, `hello ledger ${asked++}`)); } catch { failed++; if (stop) break; await sleep(5); }
    }
  });
  return { answered, failed: () => failed, async end() { stop = true; await Promise.all(loops); } };
}

test('SIGKILL under load loses no ledger row of an answered request', { skip }, async () => {
  const url = freshDb();
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-it-pgkill-'));
  let gw = await startOn(url, '', dir);
  let locker;
  try {
    const l = load(gw);
    await waitFor(() => l.answered.length >= 100, 20000);
    // Hold the ledger table locked: the writer's INSERT waits, so what is answered
    // from now on is only in the spool (and the queue) when the process dies.
    locker = spawn('psql', [url, '-XAtq', '-c',
      'BEGIN; LOCK TABLE ahorro_ledger IN SHARE MODE; SELECT pg_sleep(30); COMMIT;'],
    { stdio: 'ignore', env: { ...process.env, PGAPPNAME: 'ahorro-it-locker' } });
    await sleep(300);
    const atLock = l.answered.length;
    await waitFor(() => l.answered.length >= atLock + 200, 20000);
    gw.proc.kill('SIGKILL');
    await l.end();
    const answered = [...l.answered];
    assert.ok(answered.length >= 300);
    const before = idsOf(url).set;
    const notYet = answered.filter((id) => !before.has(id)).length;
    console.log(`# killed: ${answered.length} answered, ${notYet} not in PostgreSQL yet`);
    assert.ok(notYet >= 100, `only ${notYet} rows were still waiting: the test proves nothing`);
    // End the lock's session (a killed psql alone leaves pg_sleep running).
    psql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ahorro-it-locker'");
    // The spool holds what the killed process had not written yet; the next start
    // replays it.
    gw = await startOn(url, '', dir);
    const ok = await waitFor(() => { const have = idsOf(url).set; return answered.every((id) => have.has(id)); }, 15000);
    const have = idsOf(url);
    const missing = answered.filter((id) => !have.set.has(id));
    assert.ok(ok, `${missing.length} of ${answered.length} answered requests have no row`);
    assert.equal(have.rows, have.set.size, 'a row is in twice');
    assert.match(gw.logs(), /spool segments .* from an earlier run are replayed/);
  } finally {
    locker?.kill('SIGKILL');
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('PostgreSQL restarted mid-load: requests are answered, and no row is lost', { skip: skip || (PGDATA ? false : 'AHORRO_TEST_PGDATA is not set') }, async () => {
  const url = freshDb();
  const gw = await startOn(url);
  try {
    const l = load(gw, 8);
    await waitFor(() => l.answered.length >= 100, 20000);
    pgCtl('stop', '-D', PGDATA, '-m', 'fast', '-w');
    const during = l.answered.length;
    await sleep(1500);
    const served = l.answered.length - during;
    pgCtl('start', '-D', PGDATA, '-w', '-l', join(PGDATA, 'restart.log'));
    await sleep(500);
    await l.end();
    const answered = [...l.answered];
    assert.ok(served > 10, `only ${served} requests answered while PostgreSQL was down`);
    assert.equal(l.failed(), 0, 'requests failed while PostgreSQL was down');
    const ok = await waitFor(() => { const have = idsOf(url).set; return answered.every((id) => have.has(id)); }, 15000);
    const have = idsOf(url);
    assert.ok(ok, `${answered.filter((id) => !have.set.has(id)).length} of ${answered.length} rows missing`);
    assert.equal(have.rows, have.set.size, 'a row is in twice');
    assert.match(gw.logs(), /PostgreSQL cannot be reached/);
    await waitFor(() => /PostgreSQL is back after/.test(gw.logs()), 5000);
    assert.match(gw.logs(), /PostgreSQL is back after [\d.]+ s: [1-9]\d* rows replayed/);
  } finally { await gw.stop(); gw.cleanup(); }
});


test('Redis restarted mid-load (budgets, limits, caches there): no ledger row is lost', { skip }, async () => {
  const url = freshDb();
  const port = await freePort();
  let redis = await startRedis(port);
  const gws = [];
  try {
    // on_failure: open, so that requests keep being answered while Redis is away.
    const extra = `  state:\n    url: redis://127.0.0.1:${port}/0\n    on_failure: open\n    timeout_ms: 100\n` +
      '  cache: { exact: true }\n  budgets:\n    - { name: day, scope: global, period: day, limit_usd: 100 }\n' +
      '  rate_limits:\n    - { scope: global, rpm: 100000 }\n';
    for (let i = 0; i < 2; i++) gws.push(await startOn(url, extra));
    const loads = gws.map((g) => load(g, 4));
    await waitFor(() => loads.every((l) => l.answered.length >= 50), 20000);
    await redis.stop();
    await sleep(1000);
    redis = await startRedis(port);
    await sleep(1500);
    for (const l of loads) await l.end();
    const answered = loads.flatMap((l) => l.answered);
    assert.equal(loads.reduce((n, l) => n + l.failed(), 0), 0, 'requests failed while Redis was away');
    const ok = await waitFor(() => { const have = idsOf(url).set; return answered.every((id) => have.has(id)); }, 15000);
    const have = idsOf(url);
    assert.ok(ok, `${answered.filter((id) => !have.set.has(id)).length} of ${answered.length} rows missing`);
    assert.equal(have.rows, have.set.size, 'a row is in twice');
    for (const g of gws) assert.match(g.logs(), /Redis at 127\.0\.0\.1:\d+ cannot be reached/);
  } finally { await stopAll(gws); await redis.stop(); }
});

test('a bad ledger setting or an unreachable PostgreSQL stops the start with the reason', { skip }, async () => {
  await assert.rejects(startGateway({ config: (d) => config(d, 'mysql://nope') }),
    /ahorro\.yaml:\d+.*'ledger' must be sqlite .* or a PostgreSQL connection string/s);
  const u = new URL(PG);
  u.password = 'secret-password-123';
  u.port = '1'; // nothing listens there
  await assert.rejects(startGateway({ config: (d) => config(d, u.toString()) }), (e) => {
    assert.match(e.message, /cannot open the PostgreSQL ledger at .*:\*\*\*@127\.0\.0\.1:1/);
    assert.doesNotMatch(e.message, /secret-password-123/);
    return true;
  });
});
