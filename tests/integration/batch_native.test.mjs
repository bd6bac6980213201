// Batches forwarded to the provider's own Batch API (docs/batch.md "Provider batch APIs"),
// driven by the official `openai` SDK against the gateway, with ahorro-fake's in-memory
// Files and Batches API as the provider: a `batch: native` alias is uploaded, created and
// polled upstream (no chat completion is sent for it), results come back under our ids,
// the ledger prices each line at half the live price; mixed or `live` batches still run
// line by line; cancel reaches the provider; a gateway killed while the provider's batch
// runs resumes polling it without submitting a second one; an Azure OpenAI deployment's
// batch goes to Azure's Batch API (/openai/files, /openai/batches, api-version, api-key)
// (Anthropic's: batch_native_anthropic.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFake, startGateway, testConfig, ledger, waitFor, MASTER_KEY, PROVIDER_KEY } from './lib/harness.mjs';

let fake, gw, master;
const native = (fk) => `  - model_name: gpt-batch
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:${fk.port}/v1", api_key: "${PROVIDER_KEY}", batch: native }
  - model_name: gpt-batch-live
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:${fk.port}/v1", api_key: "${PROVIDER_KEY}", batch: live }
  - model_name: azure-batch
    litellm_params: { model: azure/my-batch-deployment, api_base: "http://127.0.0.1:${fk.port}", api_key: "${PROVIDER_KEY}", api_version: "2024-10-21", batch: native, input_cost_per_token: 0.00000015, output_cost_per_token: 0.0000006 }
`;
const config = (dir) => testConfig(fake, dir, '  batch: { poll_s: 0.2, concurrency: 8 }\n')
  .replace('model_list:\n', `model_list:\n${native(fake)}`);

const client = (apiKey) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey, maxRetries: 0 });

before(async () => {
  fake = await startFake(['--batch-delay-ms', '1500']);
  gw = await startGateway({ fake, config });
  master = client(MASTER_KEY);
});

after(async () => {
  await gw?.stop();
  await fake?.stop();
  gw?.cleanup();
});

const line = (id, text, model = 'gpt-batch') => JSON.stringify({
  custom_id: id, method: 'POST', url: '/v1/chat/completions',
  body: { model, messages: [{ role: 'user', content: text }], max_tokens: 5 },
});
const upload = async (lines) =>
  master.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
const parseLines = (text) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
const fakeStats = async () => (await fetch(`${fake.url}/_fake/stats`)).json();
const finished = (b) => ['completed', 'failed', 'expired', 'cancelled'].includes(b.status);
const create = (f, metadata) => master.batches.create({
  input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata,
});

async function until(id, pred, ms = 60000) {
  const t0 = Date.now();
  for (;;) {
    const b = await master.batches.retrieve(id);
    if (pred(b)) return b;
    if (Date.now() - t0 > ms) throw new Error(`batch ${id} stuck: ${JSON.stringify(b)}`);
    await sleep(100);
  }
}

// gpt-4o-mini in the catalogue: $0.15 / M input, $0.60 / M output. The fake counts a
// prompt as the words of each message + 4, plus 3; max_tokens 5 cuts the answer to 5.
const livePrice = (words) => ((words + 4 + 3) * 0.15 + 5 * 0.6) / 1e6;

test('a batch: native alias goes to the provider\'s Batch API, at half the price', async () => {
  const n = 6;
  const lines = Array.from({ length: n }, (_, i) => line(`n-${i}`, `hello native ${i}`));
  lines.splice(2, 0, 'not json at all');
  const s0 = await fakeStats();
  const f = await upload(lines);
  const b = await create(f, { team: 'nightly' });
  assert.equal(b.status, 'validating');
  const done = await until(b.id, finished);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, { total: n + 1, completed: n, failed: 1 });

  const out = parseLines(await (await master.files.content(done.output_file_id)).text());
  assert.deepEqual(out.map((x) => x.custom_id).sort(), Array.from({ length: n }, (_, i) => `n-${i}`).sort());
  for (const x of out) {
    assert.match(x.id, /^batch_req_/);
    assert.equal(x.response.status_code, 200);
    assert.equal(x.error, null);
    const text = x.response.body.choices[0].message.content;
    assert.match(text, /^\[simulated\] ahorro-fake answer from gpt-4o-mini:/);
    assert.equal(x.response.body.usage.prompt_tokens, 10);
    assert.equal(x.response.body.usage.completion_tokens, 5);
  }
  const errs = parseLines(await (await master.files.content(done.error_file_id)).text());
  assert.equal(errs.length, 1);
  assert.equal(errs[0].error.code, 'invalid_json_line');
  assert.equal(errs[0].error.line, 3);

  const s1 = await fakeStats();
  assert.equal(s1.batches - s0.batches, 1);
  assert.equal(s1.batch_lines - s0.batch_lines, n);
  assert.equal(s1.chat_completions - s0.chat_completions, 0, 'no live request for a native batch');

  // the provider saw the upstream model, not our alias
  const rows = ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`);
  assert.equal(rows.length, n);
  const half = livePrice(3) / 2;
  for (const r of rows) {
    assert.equal(r.route_reason, 'batch:native');
    assert.equal(r.status, 200);
    assert.equal(r.requested_model, 'gpt-batch');
    assert.equal(r.deployment, 'gpt-batch');
    assert.equal(r.provider, 'openai');
    assert.equal(r.prompt_tokens, 10);
    assert.equal(r.completion_tokens, 5);
    assert.ok(Math.abs(r.cost_usd - half) < 1e-15, `${r.cost_usd} vs ${half}`);
    const tags = JSON.parse(r.tags);
    assert.equal(tags.purpose, 'batch');
    assert.equal(tags.team, 'nightly');
  }
  const cost = Number((await import('node:child_process')).execFileSync('sqlite3',
    [gw.db, `SELECT cost_usd FROM batches WHERE id = '${b.id}'`], { encoding: 'utf8' }));
  assert.ok(Math.abs(cost - n * half) < 1e-12, `${cost}`);
});

test('a live alias, and a batch that mixes models, run line by line as before', async () => {
  for (const model of [['gpt-batch-live', 'gpt-batch-live'], ['gpt-batch', 'gpt-4o-mini']]) {
    const s0 = await fakeStats();
    const f = await upload([line('a', 'one', model[0]), line('b', 'two', model[1])]);
    const b = await create(f);
    const done = await until(b.id, finished);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: 2, completed: 2, failed: 0 });
    const s1 = await fakeStats();
    assert.equal(s1.batches - s0.batches, 0);
    assert.equal(s1.chat_completions - s0.chat_completions, 2);
    const rows = ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`);
    assert.equal(rows.length, 2);
    for (const r of rows) {
      assert.notEqual(r.route_reason, 'batch:native');
      assert.ok(Math.abs(r.cost_usd - livePrice(1)) < 1e-15, `${r.cost_usd}`);
    }
  }
});

test('cancel: the provider\'s batch is cancelled too', async () => {
  const s0 = await fakeStats();
  const f = await upload([line('c-1', 'cancel me'), line('c-2', 'me too')]);
  const b = await create(f);
  await until(b.id, (x) => x.status === 'in_progress');
  await waitProvider(s0.batches + 1);
  const c = await master.batches.cancel(b.id);
  assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
  const done = await until(b.id, finished);
  assert.equal(done.status, 'cancelled', JSON.stringify(done));
  const s1 = await fakeStats();
  assert.equal(s1.batch_lines - s0.batch_lines, 0, 'the provider answered nothing');
  assert.equal(ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`).length, 0);
});

async function waitProvider(count) {
  const t0 = Date.now();
  while ((await fakeStats()).batches < count) {
    if (Date.now() - t0 > 20000) throw new Error('the provider got no batch');
    await sleep(50);
  }
}

test('SIGKILL while the provider\'s batch runs: a restarted gateway polls it, no second batch', async () => {
  const s0 = await fakeStats();
  const f = await upload(Array.from({ length: 4 }, (_, i) => line(`k-${i}`, `restart ${i}`)));
  const b = await create(f);
  await waitProvider(s0.batches + 1);
  await gw.stop('SIGKILL');
  await sleep(1600); // the provider's batch completes while the gateway is down
  gw = await startGateway({ fake, config, dir: gw.dir });
  master = client(MASTER_KEY);
  const done = await until(b.id, finished);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, { total: 4, completed: 4, failed: 0 });
  const out = parseLines(await (await master.files.content(done.output_file_id)).text());
  assert.equal(new Set(out.map((x) => x.custom_id)).size, 4);
  assert.equal(out.length, 4);
  const s1 = await fakeStats();
  assert.equal(s1.batches - s0.batches, 1, 'one provider batch');
  assert.equal(s1.batch_lines - s0.batch_lines, 4);
  assert.equal(s1.chat_completions - s0.chat_completions, 0);
  // The rows are queued as the batch completes; the writer commits them a moment later.
  const rowsOf = () => ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`).length;
  await waitFor(() => rowsOf() >= 4, 5000);
  assert.equal(rowsOf(), 4);
  assert.match(gw.logs(), /resuming the provider's batch/);
});

test('batch: native on an Azure deployment goes to Azure\'s Batch API, at half the price', async () => {
  const n = 5;
  const s0 = await fakeStats();
  const f = await upload(Array.from({ length: n }, (_, i) => line(`az-${i}`, `hello azure ${i}`, 'azure-batch')));
  const b = await create(f, { team: 'azure' });
  const done = await until(b.id, finished);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, { total: n, completed: n, failed: 0 });
  assert.equal(done.error_file_id ?? null, null);

  const out = parseLines(await (await master.files.content(done.output_file_id)).text());
  assert.equal(out.length, n);
  assert.deepEqual(out.map((x) => x.custom_id).sort(), Array.from({ length: n }, (_, i) => `az-${i}`).sort());
  for (const x of out) {
    assert.match(x.id, /^batch_req_/);
    assert.equal(x.response.status_code, 200);
    // the provider's lines named the Azure deployment, not our alias
    assert.match(x.response.body.choices[0].message.content,
      /^\[simulated\] ahorro-fake answer from my-batch-deployment:/);
    assert.equal(x.response.body.usage.prompt_tokens, 10);
    assert.equal(x.response.body.usage.completion_tokens, 5);
  }

  const s1 = await fakeStats();
  assert.equal(s1.batches - s0.batches, 1, 'one provider batch');
  assert.equal(s1.azure_batches - s0.azure_batches, 1, 'on the Azure paths');
  assert.equal(s1.batch_lines - s0.batch_lines, n);
  assert.equal(s1.chat_completions - s0.chat_completions, 0, 'no live request for a native batch');
  // the last provider call (the output's download) went to Azure's path, api-version, api-key
  const last = await (await fetch(`${fake.url}/_fake/last`)).json();
  assert.match(last.path, /^\/openai\/(files|batches)\//);
  assert.match(last.query, /(^|&)api-version=2024-10-21(&|$)/);
  assert.equal(last.headers['api-key'], PROVIDER_KEY);
  assert.equal(last.headers.authorization, undefined);

  const rows = ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`);
  assert.equal(rows.length, n);
  const half = livePrice(3) / 2;
  for (const r of rows) {
    assert.equal(r.route_reason, 'batch:native');
    assert.equal(r.status, 200);
    assert.equal(r.requested_model, 'azure-batch');
    assert.equal(r.deployment, 'azure-batch');
    assert.equal(r.provider, 'azure');
    assert.equal(r.served_model, 'my-batch-deployment');
    assert.equal(r.prompt_tokens, 10);
    assert.equal(r.completion_tokens, 5);
    assert.ok(Math.abs(r.cost_usd - half) < 1e-15, `${r.cost_usd} vs ${half}`);
    assert.equal(JSON.parse(r.tags).team, 'azure');
  }
});
