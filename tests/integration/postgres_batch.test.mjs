// The Files and Batch APIs of several instances sharing one PostgreSQL
// (docs/batch.md "Several instances"), driven by the official `openai` SDK:
// - a file uploaded through one instance is listed, read and used by another; a batch
//   created through one is retrieved, listed and run once across them, and its output
//   is read through any;
// - a cancel asked through one instance stops the batch another runs;
// - an instance killed with SIGKILL mid-batch: another takes the batch over once the
//   killed one's lease ends, and finishes it, each line once in the output.
// Needs a PostgreSQL (AHORRO_TEST_POSTGRES; scripts/test.sh starts one); skipped without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI, { toFile } from 'openai';
import { startFake, startGateway, waitFor, MASTER_KEY, fakeAlias, instanceConfig } from './lib/harness.mjs';
import { psql, freshDb, skipPg as skip } from './lib/pg.mjs';

let fast, slow;
before(async () => {
  if (skip) return;
  fast = await startFake(['--threads', '2']);
  slow = await startFake(['--ttft-ms', '250', '--threads', '2']);
});
after(async () => { await fast?.stop(); await slow?.stop(); });

function config(dir, url, fake) {
  return instanceConfig(dir, fakeAlias('m', fake), `  ledger: ${url}
  logging: { requests: false }
  batch: { concurrency: 2, lease_s: 2 }
`);
}
const startOn = (url, fake = fast) => startGateway({ config: (d) => config(d, url, fake) });
async function stopAll(gws) { for (const g of gws) { await g.stop(); g.cleanup(); } }
const client = (gw) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });

const lines = (n, tag) => Array.from({ length: n }, (_, i) => JSON.stringify({
  custom_id: `${tag}-${i}`, method: 'POST', url: '/v1/chat/completions',
  body: { model: 'm', messages: [{ role: 'user', content: `${tag} line ${i}` }], max_tokens: 5 },
})).join('\n') + '\n';
const parse = (text) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l));

async function until(c, id, pred, ms = 60000) {
  const t0 = Date.now();
  for (;;) {
    const b = await c.batches.retrieve(id);
    if (pred(b)) return b;
    if (Date.now() - t0 > ms) throw new Error(`batch ${id} stuck: ${JSON.stringify(b)}`);
    await sleep(100);
  }
}

test('a file and a batch made through one instance are served by every instance, and run once', { skip }, async () => {
  const url = freshDb();
  const gws = [];
  try {
    gws.push(await startOn(url), await startOn(url));
    const [a, b] = gws.map(client);
    const text = lines(20, 'shared');
    const file = await a.files.create({ file: await toFile(Buffer.from(text), 'in.jsonl'), purpose: 'batch' });
    // The other instance lists it, and serves its bytes (fetched from PostgreSQL).
    assert.equal((await b.files.retrieve(file.id)).bytes, text.length);
    assert.ok((await b.files.list()).data.some((f) => f.id === file.id));
    assert.equal(await (await b.files.content(file.id)).text(), text);
    const batch = await b.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { job: 'nightly' } });
    const done = await until(a, batch.id, (x) => x.status === 'completed');
    assert.deepEqual(done.request_counts, { total: 20, completed: 20, failed: 0 });
    assert.equal(done.metadata.job, 'nightly');
    assert.ok((await a.batches.list()).data.some((x) => x.id === batch.id));
    // The output, through either instance: each line once.
    for (const c of [a, b]) {
      const out = parse(await (await c.files.content(done.output_file_id)).text());
      assert.equal(out.length, 20);
      assert.deepEqual(new Set(out.map((o) => o.custom_id)).size, 20);
      assert.ok(out.every((o) => o.response.status_code === 200));
    }
    // One run: 20 answered requests in the shared ledger, tagged with the batch.
    await waitFor(() => Number(psql(url, `SELECT count(*) FROM ahorro_ledger WHERE tags LIKE '%${batch.id}%'`)) >= 20, 10000);
    assert.equal(psql(url, `SELECT count(*) FROM ahorro_ledger WHERE tags LIKE '%${batch.id}%'`), '20');
    // A file deleted through one instance is gone for the other.
    await b.files.delete(file.id);
    await assert.rejects(a.files.retrieve(file.id), (e) => e.status === 404);
    assert.equal(psql(url, `SELECT count(*) FROM ahorro_file_parts WHERE file_id = '${file.id}'`), '0');
  } finally { await stopAll(gws); }
});

test('a cancel asked through one instance stops the batch another runs', { skip }, async () => {
  const url = freshDb();
  const gws = [];
  try {
    gws.push(await startOn(url, slow));
    const a = client(gws[0]);
    const file = await a.files.create({ file: await toFile(Buffer.from(lines(40, 'cancel')), 'c.jsonl'), purpose: 'batch' });
    const batch = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await until(a, batch.id, (x) => x.status === 'in_progress' && x.request_counts.completed > 0);
    gws.push(await startOn(url, slow)); // B runs nothing: A holds the batch
    const b = client(gws[1]);
    const asked = await b.batches.cancel(batch.id);
    assert.equal(asked.status, 'cancelling');
    const end = await until(b, batch.id, (x) => x.status === 'cancelled', 20000);
    assert.ok(end.request_counts.completed < 40, JSON.stringify(end.request_counts));
    assert.match(gws[0].logs(), new RegExp(`batch ${batch.id}: cancelled`));
    assert.doesNotMatch(gws[1].logs(), new RegExp(`batch ${batch.id}: running`));
  } finally { await stopAll(gws); }
});

test('an instance killed mid-batch: another takes the batch over when its lease ends, and resumes it', { skip }, async () => {
  const url = freshDb();
  const gws = [];
  try {
    gws.push(await startOn(url, slow));
    const a = client(gws[0]);
    const file = await a.files.create({ file: await toFile(Buffer.from(lines(30, 'kill')), 'k.jsonl'), purpose: 'batch' });
    const batch = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    // What a row says was sent with its journal lines (one transaction).
    const before = await until(a, batch.id, (x) => x.status === 'in_progress' && x.request_counts.completed >= 12);
    gws.push(await startOn(url, fast)); // B answers through the other fake provider
    const b = client(gws[1]);
    const sentB0 = (await (await fetch(`${fast.url}/_fake/stats`)).json()).chat_completions;
    const killedAt = Date.now();
    gws[0].proc.kill('SIGKILL');
    const done = await until(b, batch.id, (x) => x.status === 'completed', 60000);
    assert.ok(Date.now() - killedAt >= 1000, 'taken over before the lease ended');
    assert.deepEqual(done.request_counts, { total: 30, completed: 30, failed: 0 });
    const out = parse(await (await b.files.content(done.output_file_id)).text());
    assert.equal(out.length, 30);
    assert.equal(new Set(out.map((o) => o.custom_id)).size, 30);
    assert.match(gws[1].logs(), new RegExp(`batch ${batch.id}: running`));
    // Resumed from the journal A had sent: B answered the rest, not every line.
    const sentB = (await (await fetch(`${fast.url}/_fake/stats`)).json()).chat_completions - sentB0;
    assert.ok(sentB <= 30 - before.request_counts.completed,
      `B sent ${sentB} lines; A had sent ${before.request_counts.completed} answers`);
    // A finished batch leaves no journal behind.
    assert.equal(psql(url, `SELECT count(*) FROM ahorro_batch_journal WHERE batch_id = '${batch.id}'`), '0');
  } finally {
    await gws[0].stop('SIGKILL').catch(() => {});
    gws[0].cleanup();
    await gws[1]?.stop(); gws[1]?.cleanup();
  }
});
