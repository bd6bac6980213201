// Sampled live judging with the ledger in PostgreSQL (docs/experiments.md, "Sampled live
// judging"; docs/postgres.md): two instances on one database, every answer of a route
// judged on the fake provider.
// - each judged request is one row of ahorro_judgments, whichever instance served it,
//   and none is left in the instances' own SQLite files;
// - `ahorro quality drift --json`, `ahorro experiments show --json` and the dashboard's
//   /admin/experiments, asked of one instance, count the judgments of both;
// - ahorro_judgments unusable mid-traffic: requests are still answered at once, the
//   judgments of meanwhile are dropped (logged once), and they are written again once
//   the table is back; a connection cut under the writer loses none.
// Needs a PostgreSQL: AHORRO_TEST_POSTGRES=postgres://USER@127.0.0.1:PORT/DB (scripts/test.sh
// starts one). Skipped without it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startFake, startGateway, waitFor, MASTER_KEY, TEST_PRICE, fakeAlias, instanceConfig, AHORRO_BIN } from './lib/harness.mjs';
import { psql, freshDb, skipPg as skip } from './lib/pg.mjs';

const VERDICT = '{"relevance": 8, "accuracy": 7, "reason": "fine"}';
const SCORE = (7 / 9 + 6 / 9) / 2; // (s - 1) / 9, averaged

let tmp, fake;
before(async () => {
  if (skip) return;
  tmp = mkdtempSync(join(tmpdir(), 'ahorro-pgq-'));
  const answers = join(tmp, 'answers.jsonl');
  writeFileSync(answers, JSON.stringify({ model: 'judge-ok', answer: VERDICT }) + '\n');
  fake = await startFake(['--answers', answers, '--threads', '2']);
});
after(async () => {
  await fake?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const judgmentsOf = (url, where = 'true') =>
  JSON.parse(psql(url, `SELECT COALESCE(json_agg(t), '[]') FROM (SELECT * FROM ahorro_judgments WHERE ${where} ORDER BY id) t`));
const sqliteCount = (db, table) =>
  Number(execFileSync('sqlite3', [db, `SELECT COUNT(*) FROM ${table}`], { encoding: 'utf8' }).trim());

function config(dir, url) {
  const alias = (name, model) => fakeAlias(name, fake, { model, extra: TEST_PRICE });
  return instanceConfig(dir, alias('m', 'gpt-4o-mini') + alias('m2', 'gpt-4o-mini') + alias('judge-ok', 'judge-ok'), `  ledger: ${url}
  routing: { retries: 0 }
  judging:
    - { route: m, judge: judge-ok, sample: 1, criteria: [relevance, accuracy] }
  experiments:
    - name: judged
      route: m
      arms:
        - { name: control, weight: 1 }
        - { name: other, weight: 1, model: m2 }
`);
}

const client = (gw) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
async function ask(c, content, user) {
  const t0 = Date.now();
  const { response } = await c.chat.completions
    .create({ model: 'm', user, messages: [{ role: 'user', content }], max_tokens: 8 })
    .withResponse();
  return { id: response.headers.get('x-ahorro-request-id'), ms: Date.now() - t0 };
}
// n requests through gw, at most 4 at a time: never past a worker's 8 judge calls in flight.
async function askMany(gw, n, tag) {
  const c = client(gw), out = [];
  for (let i = 0; i < n; i += 4)
    out.push(...await Promise.all(Array.from({ length: Math.min(4, n - i) }, (_, k) =>
      ask(c, `${tag} question ${i + k}`, `${tag}-u${i + k}`))));
  return out;
}
const cli = (args) => execFileSync(AHORRO_BIN, args, { encoding: 'utf8' });

test('two instances judge into one ahorro_judgments; drift and experiments count both', { skip }, async () => {
  const url = freshDb();
  const gws = [];
  try {
    gws.push(await startGateway({ config: (d) => config(d, url) }));
    gws.push(await startGateway({ config: (d) => config(d, url) }));
    const [a, b] = gws;
    const fromA = await askMany(a, 12, 'a');
    const fromB = await askMany(b, 12, 'b');
    const ids = [...fromA, ...fromB].map((x) => x.id);
    assert.ok(await waitFor(() => judgmentsOf(url).length >= ids.length, 10000),
      `judgments in PostgreSQL: ${judgmentsOf(url).length} of ${ids.length}`);
    const rows = judgmentsOf(url);
    // One row per judged request, from both instances, scored.
    assert.equal(rows.length, ids.length);
    assert.deepEqual(new Set(rows.map((r) => r.request_id)), new Set(ids));
    for (const r of rows) {
      assert.equal(r.route, 'm');
      assert.equal(r.judge, 'judge-ok');
      assert.ok(Math.abs(r.score - SCORE) < 1e-12, `${r.score}`);
      assert.deepEqual(JSON.parse(r.scores), { relevance: 8, accuracy: 7 });
      assert.equal(r.reason, 'fine');
      assert.equal(r.error, null);
      assert.ok(r.judge_request_id);
    }
    // The judge's own calls are ledger rows in PostgreSQL too, tagged purpose=judge.
    const judgeRows = Number(psql(url,
      `SELECT COUNT(*) FROM ahorro_ledger WHERE request_id IN (${rows.map((r) => `'${r.judge_request_id}'`).join(',')})`));
    assert.equal(judgeRows, rows.length);
    // Nothing in the instances' own files.
    for (const g of gws) assert.equal(sqliteCount(g.db, 'judgments'), 0);

    // quality drift, asked of instance A's configuration, counts B's judgments as well.
    const drift = JSON.parse(cli(['quality', 'drift', '--json', '--since', '1d', '--config', a.cfgPath]));
    assert.equal(drift.routes.length, 1);
    const s = drift.routes[0];
    assert.equal(s.route, 'm');
    assert.equal(s.judge, 'judge-ok');
    assert.equal(s.judged, ids.length);
    assert.equal(s.failed, 0);
    assert.ok(Math.abs(s.score_mean - SCORE) < 1e-12, `${s.score_mean}`);
    assert.equal(s.periods.length, 1);
    assert.equal(s.periods[0].period, new Date().toISOString().slice(0, 10));
    const none = JSON.parse(cli(['quality', 'drift', '--json', '--route', 'ghost', '--config', a.cfgPath]));
    assert.deepEqual(none.routes, []);

    // The experiment's report: every instance's requests, and their judgments.
    const rep = JSON.parse(cli(['experiments', 'show', 'judged', '--json', '--config', a.cfgPath]));
    const arms = rep.data[0].arms;
    assert.equal(arms.reduce((n, x) => n + x.requests, 0), ids.length);
    assert.equal(arms.reduce((n, x) => n + x.judged, 0), ids.length);
    for (const x of arms) if (x.judged) assert.ok(Math.abs(x.judge_mean - SCORE) < 1e-12, `${x.name} ${x.judge_mean}`);
    // The dashboard's experiments panel, on instance B, agrees.
    const res = await fetch(`${b.url}/admin/experiments?name=judged`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
    assert.equal(res.status, 200);
    const panel = await res.json();
    assert.deepEqual(panel.data[0].arms.map((x) => [x.name, x.requests, x.judged]),
      arms.map((x) => [x.name, x.requests, x.judged]));
  } finally {
    for (const g of gws) { await g.stop(); g.cleanup(); }
  }
});

test('ahorro_judgments away: requests still answered, judgments dropped meanwhile, then written again', { skip }, async () => {
  const url = freshDb();
  const gw = await startGateway({ config: (d) => config(d, url) });
  try {
    const first = await askMany(gw, 4, 'before');
    assert.ok(await waitFor(() => judgmentsOf(url).length === 4, 10000));
    // The table gone (as a database in trouble would answer): not the rows' fault.
    psql(url, 'ALTER TABLE ahorro_judgments RENAME TO ahorro_judgments_away');
    const during = await askMany(gw, 8, 'during');
    for (const x of during) assert.ok(x.ms < 2000, `a request took ${x.ms} ms`);
    assert.ok(await waitFor(() => /judgments: PostgreSQL cannot take them/.test(gw.logs()), 8000), gw.logs().slice(-2000));
    // The ledger does not mind: every request is there.
    assert.ok(await waitFor(() => Number(psql(url,
      `SELECT COUNT(*) FROM ahorro_ledger WHERE request_id IN (${during.map((x) => `'${x.id}'`).join(',')})`)) === 8, 10000));
    psql(url, 'ALTER TABLE ahorro_judgments_away RENAME TO ahorro_judgments');
    // Reconnects are at most once a second: judgments flow again within a few.
    const after = [];
    const back = await waitFor(async () => {
      after.push(...await askMany(gw, 2, `after${after.length}`));
      await sleep(200); // the judges answer after the client
      const got = new Set(judgmentsOf(url).map((r) => r.request_id));
      return after.some((x) => got.has(x.id));
    }, 10000);
    assert.ok(back, gw.logs().slice(-2000));
    const backLine = /judgments: PostgreSQL takes them again; (\d+) judgment\(s\) dropped meanwhile/;
    assert.ok(await waitFor(() => backLine.test(gw.logs()), 5000));
    assert.ok(Number(backLine.exec(gw.logs())[1]) >= 1);
    if (process.env.SHOW_TABLE) console.log(gw.logs().split('\n').filter((l) => /judgments/.test(l)).join('\n'));
    const got = new Set(judgmentsOf(url).map((r) => r.request_id));
    for (const x of first) assert.ok(got.has(x.id));
    // The batch that met the missing table was dropped whole: judgments of the outage
    // are missing (a sample, not an account); none is there twice.
    assert.ok(during.some((x) => !got.has(x.id)));
    assert.equal(got.size, judgmentsOf(url).length);
    // Connections cut under the writer (a restarted server, an idle connection dropped on
    // the way): it reconnects at once for the batch in hand, and loses none.
    psql(url, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity ' +
      'WHERE datname = current_database() AND pid <> pg_backend_pid()');
    const cut = await askMany(gw, 4, 'cut');
    assert.ok(await waitFor(() => {
      const now = new Set(judgmentsOf(url).map((r) => r.request_id));
      return cut.every((x) => now.has(x.id));
    }, 10000), gw.logs().slice(-2000));
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});
