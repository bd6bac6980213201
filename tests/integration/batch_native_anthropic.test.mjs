// Batches forwarded to Anthropic's Message Batches API (docs/batch.md "Provider batch APIs"),
// driven by the official `openai` SDK against the gateway's Batch API, with ahorro-fake's
// in-memory /v1/messages/batches as Anthropic: a `batch: native` alias on an Anthropic
// deployment is sent as one message batch (each line translated to a Messages body, no live
// /v1/messages), its results come back as OpenAI chat.completion bodies under our ids, the
// ledger prices each line at exactly half the live price; cancel reaches the provider; a
// gateway killed while the provider's batch runs resumes polling it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI, { toFile } from 'openai';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFake, startGateway, testConfig, ledger, waitFor, MASTER_KEY, PROVIDER_KEY } from './lib/harness.mjs';

// Prices by config to keep the arithmetic plain: $1/M input, $2/M output, $0.1/M cache reads.
const PRICE = 'input_cost_per_token: 0.000001, output_cost_per_token: 0.000002, cache_read_input_token_cost: 0.0000001';
let fake, gw, master;
const config = (dir) => testConfig(fake, dir, '  batch: { poll_s: 0.2, concurrency: 8 }\n')
  .replace('model_list:\n', `model_list:
  - model_name: claude-batch
    litellm_params: { model: anthropic/claude-3-5-haiku-latest, api_base: "http://127.0.0.1:${fake.port}", api_key: "${PROVIDER_KEY}", batch: native, ${PRICE} }
  - model_name: claude-live
    litellm_params: { model: anthropic/claude-3-5-haiku-latest, api_base: "http://127.0.0.1:${fake.port}", api_key: "${PROVIDER_KEY}", ${PRICE} }
`);

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

const line = (id, text, model = 'claude-batch') => JSON.stringify({
  custom_id: id, method: 'POST', url: '/v1/chat/completions',
  body: { model, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: text }], max_tokens: 5 },
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

async function waitProvider(count) {
  const t0 = Date.now();
  while ((await fakeStats()).message_batches < count) {
    if (Date.now() - t0 > 20000) throw new Error('the provider got no message batch');
    await sleep(50);
  }
}

// USD of a call at the config's prices (usage in OpenAI's shape: prompt_tokens counts the
// cache reads, as ah_usage_t does).
const priceOf = (u) => {
  const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
  return ((u.prompt_tokens - cached) * 1 + cached * 0.1 + u.completion_tokens * 2) / 1e6;
};

test('a batch: native alias on Anthropic goes to the Message Batches API, at half the price', async () => {
  // The live price of the same prompt, through the gateway, for the comparison.
  const live = await master.chat.completions.create({
    model: 'claude-live', max_tokens: 5,
    messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello native 0' }],
  });
  // The fake's rule: (words + 4) per message + 3 = (2 + 4) + (3 + 4) + 3 = 16; 5 words out.
  assert.equal(live.usage.prompt_tokens, 16);
  assert.equal(live.usage.completion_tokens, 5);
  const liveCost = (16 * 1 + 5 * 2) / 1e6;
  await waitFor(() => ledger(gw.db, `requested_model = 'claude-live'`).length > 0, 5000);
  const liveRow = ledger(gw.db, `requested_model = 'claude-live'`);
  assert.equal(liveRow.length, 1);
  assert.ok(Math.abs(liveRow[0].cost_usd - liveCost) < 1e-15, `${liveRow[0].cost_usd}`);

  const n = 5;
  const lines = Array.from({ length: n }, (_, i) => line(`n-${i}`, `hello native ${i}`));
  lines.push(line('cached', 'hello cached [[cached:4]]'));
  lines.splice(2, 0, 'not json at all');
  const s0 = await fakeStats();
  const f = await upload(lines);
  const b = await create(f, { team: 'nightly' });
  const done = await until(b.id, finished);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, { total: n + 2, completed: n + 1, failed: 1 });

  const out = parseLines(await (await master.files.content(done.output_file_id)).text());
  const ids = out.map((x) => x.custom_id).sort();
  assert.deepEqual(ids, [...Array.from({ length: n }, (_, i) => `n-${i}`), 'cached'].sort());
  const usageOf = {};
  for (const x of out) {
    assert.match(x.id, /^batch_req_/);
    assert.equal(x.response.status_code, 200);
    assert.equal(x.error, null);
    const body = x.response.body;
    assert.equal(body.object, 'chat.completion');
    assert.equal(body.choices[0].message.role, 'assistant');
    assert.equal(body.choices[0].finish_reason, 'length');
    assert.match(body.choices[0].message.content, /^\[simulated\] ahorro-fake answer from claude-3-5-haiku-latest:/);
    assert.equal(body.usage.completion_tokens, 5);
    usageOf[x.id] = body.usage;
  }
  const plain = out.find((x) => x.custom_id === 'n-0').response.body.usage;
  assert.equal(plain.prompt_tokens, 16);
  const cachedUsage = out.find((x) => x.custom_id === 'cached').response.body.usage;
  assert.equal(cachedUsage.prompt_tokens_details.cached_tokens, 4);

  const errs = parseLines(await (await master.files.content(done.error_file_id)).text());
  assert.equal(errs.length, 1);
  assert.equal(errs[0].error.code, 'invalid_json_line');
  assert.equal(errs[0].error.line, 3);

  const s1 = await fakeStats();
  assert.equal(s1.message_batches - s0.message_batches, 1, 'one message batch');
  assert.equal(s1.message_batch_lines - s0.message_batch_lines, n + 1);
  assert.equal(s1.messages - s0.messages, 0, 'no live /v1/messages for a native batch');
  assert.equal(s1.batches - s0.batches, 0, 'nothing to the OpenAI-shaped batch API');
  // the results were read from the batch's results_url, with Anthropic's key header
  const last = await fake.last();
  assert.match(last.path, /^\/v1\/messages\/batches\/msgbatch_\w+\/results$/);

  const rows = ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`);
  assert.equal(rows.length, n + 1);
  let sum = 0;
  for (const r of rows) {
    const u = usageOf[r.request_id];
    assert.ok(u, `row ${r.request_id} is one of the output's ids`);
    assert.equal(r.route_reason, 'batch:native');
    assert.equal(r.status, 200);
    assert.equal(r.requested_model, 'claude-batch');
    assert.equal(r.deployment, 'claude-batch');
    assert.equal(r.provider, 'anthropic');
    assert.equal(r.prompt_tokens, u.prompt_tokens);
    assert.equal(r.completion_tokens, 5);
    const half = priceOf(u) / 2;
    assert.ok(Math.abs(r.cost_usd - half) < 1e-15, `${r.cost_usd} vs ${half}`);
    sum += r.cost_usd;
    const tags = JSON.parse(r.tags);
    assert.equal(tags.purpose, 'batch');
    assert.equal(tags.team, 'nightly');
  }
  const row0 = rows.find((r) => r.prompt_tokens === 16 && r.cached_tokens === 0);
  assert.ok(Math.abs(row0.cost_usd - liveCost / 2) < 1e-15, `${row0.cost_usd} vs ${liveCost / 2}`);
  const cost = Number(execFileSync('sqlite3',
    [gw.db, `SELECT cost_usd FROM batches WHERE id = '${b.id}'`], { encoding: 'utf8' }));
  assert.ok(Math.abs(cost - sum) < 1e-12, `${cost}`);
});

test('cancel: the provider\'s message batch is cancelled too', async () => {
  const s0 = await fakeStats();
  const f = await upload([line('c-1', 'cancel me'), line('c-2', 'me too')]);
  const b = await create(f);
  await waitProvider(s0.message_batches + 1);
  const c = await master.batches.cancel(b.id);
  assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
  const done = await until(b.id, finished);
  assert.equal(done.status, 'cancelled', JSON.stringify(done));
  const s1 = await fakeStats();
  assert.equal(s1.message_batch_lines - s0.message_batch_lines, 0, 'the provider answered nothing');
  assert.equal(s1.messages - s0.messages, 0);
  assert.equal(ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`).length, 0);
  const errs = parseLines(await (await master.files.content(done.error_file_id)).text());
  assert.deepEqual(errs.map((x) => x.custom_id).sort(), ['c-1', 'c-2']);
  for (const e of errs) assert.equal(e.error.code, 'batch_cancelled');
});

test('SIGKILL while the provider\'s message batch runs: a restarted gateway polls it', async () => {
  const s0 = await fakeStats();
  const f = await upload(Array.from({ length: 4 }, (_, i) => line(`k-${i}`, `restart ${i}`)));
  const b = await create(f);
  await waitProvider(s0.message_batches + 1);
  // killed once the gateway recorded the provider's id (before that, a restart sends again)
  for (const t0 = Date.now(); !execFileSync('sqlite3', [gw.db,
    `SELECT provider_batch_id FROM batches WHERE id = '${b.id}'`], { encoding: 'utf8' }).trim();) {
    if (Date.now() - t0 > 20000) throw new Error('the provider batch id was never recorded');
    await sleep(20);
  }
  await gw.stop('SIGKILL');
  await sleep(1600); // the provider's batch ends while the gateway is down
  gw = await startGateway({ fake, config, dir: gw.dir });
  master = client(MASTER_KEY);
  const done = await until(b.id, finished);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, { total: 4, completed: 4, failed: 0 });
  const out = parseLines(await (await master.files.content(done.output_file_id)).text());
  assert.equal(out.length, 4);
  assert.equal(new Set(out.map((x) => x.custom_id)).size, 4);
  const s1 = await fakeStats();
  assert.equal(s1.message_batches - s0.message_batches, 1, 'one provider batch');
  assert.equal(s1.message_batch_lines - s0.message_batch_lines, 4);
  assert.equal(s1.messages - s0.messages, 0);
  assert.equal(ledger(gw.db, `json_extract(tags, '$.batch_id') = '${b.id}'`).length, 4);
  assert.match(gw.logs(), /resuming the provider's batch/);
});

test('a line the translation refuses goes to the error file; the rest is sent', async () => {
  const s0 = await fakeStats();
  const bad = JSON.stringify({ custom_id: 'n2', method: 'POST', url: '/v1/chat/completions',
    body: { model: 'claude-batch', n: 2, messages: [{ role: 'user', content: 'two please' }] } });
  const f = await upload([line('ok', 'fine'), bad]);
  const b = await create(f);
  const done = await until(b.id, finished);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, { total: 2, completed: 1, failed: 1 });
  const errs = parseLines(await (await master.files.content(done.error_file_id)).text());
  assert.equal(errs.length, 1);
  assert.equal(errs[0].custom_id, 'n2');
  assert.match(errs[0].error.message, /'n'/);
  const s1 = await fakeStats();
  assert.equal(s1.message_batch_lines - s0.message_batch_lines, 1);
});
