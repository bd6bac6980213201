// The answer caches through the real gateway, with the official SDKs: exact
// and semantic hits, streamed hits replayed as correct SSE, tenant isolation,
// per-request controls, TTL, feedback, purge, and persistence across restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { execFileSync, spawnSync } from 'node:child_process';
import { startFake, startGateway, testConfig, ledgerRow, MASTER_KEY, AHORRO_BIN } from './lib/harness.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = process.env.AHORRO_EMBEDDINGS || join(ROOT, 'build/data/sif-100d.bin');
const HAVE_VECTORS = existsSync(VECTORS);

function cacheConfig(fake, dir) {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  return testConfig(fake, dir, `  cache:
    exact: true
    ttl: 600
    max_temperature: 1.0
    ${HAVE_VECTORS ? `embedder_path: ${VECTORS}` : ''}
    routes:
      sem-model: { semantic: true, similarity_threshold: 0.9 }
      no-cache-model: { exact: false }
`).replace('model_list:\n', `model_list:
  - model_name: sem-model
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-provider-secret-key-do-not-leak" }
  - model_name: no-cache-model
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-provider-secret-key-do-not-leak" }
`);
}

let fake, gw, client, anthropic;
const upstreamCalls = async () => (await (await fetch(`${fake.url}/_fake/stats`)).json()).requests;

before(async () => {
  fake = await startFake();
  gw = await startGatewayIn(undefined);
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

async function startGatewayIn(dir) {
  return startGateway({ fake, config: (d) => cacheConfig(fake, d), dir });
}

const ask = (content, extra = {}) => client.chat.completions.create({
  model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra,
}).withResponse();

test('exact hit: same question, keys in another order and other whitespace; costs nothing, records the saving', async () => {
  const q = `What is the capital of France? ${Date.now()}`;
  const first = await ask(q, { temperature: 0 });
  assert.equal(first.response.headers.get('x-ahorro-cache'), 'miss');
  const calls = await upstreamCalls();
  // the same request as raw JSON with keys reordered, 0 written as 0.0 and spaces
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER_KEY}` },
    body: `{ "temperature" : 0.0 ,\n "messages":[ {"content": ${JSON.stringify(q)}, "role":"user"} ], "model":"gpt-4o-mini" }`,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-ahorro-cache'), 'exact');
  assert.ok(Number(res.headers.get('age')) >= 0);
  assert.equal(Number(res.headers.get('x-ahorro-cost')), 0);
  const body = await res.json();
  assert.equal(body.choices[0].message.content, first.data.choices[0].message.content);
  assert.equal(await upstreamCalls(), calls, 'a hit must not call the provider');
  const missRow = await ledgerRow(gw.db, first.response.headers.get('x-ahorro-request-id'));
  const hitRow = await ledgerRow(gw.db, res.headers.get('x-ahorro-request-id'));
  assert.equal(missRow.cache, 'stored');
  assert.ok(missRow.cost_usd > 0);
  assert.equal(hitRow.cache, 'exact');
  assert.equal(hitRow.cost_usd, 0);
  assert.equal(hitRow.prompt_tokens, 0);
  assert.equal(hitRow.usage_source, 'cache');
  assert.ok(Math.abs(hitRow.saved_usd - missRow.cost_usd) < 1e-12);
  assert.equal(hitRow.cache_key, missRow.cache_key);
});

test('a different question, model or sampling parameter is a miss', async () => {
  const q = `Name three rivers ${Date.now()}`;
  await ask(q);
  assert.equal((await ask(q + '?')).response.headers.get('x-ahorro-cache'), 'miss');
  assert.equal((await ask(q, { max_tokens: 50 })).response.headers.get('x-ahorro-cache'), 'miss');
  assert.equal((await ask(q, { temperature: 0.5 })).response.headers.get('x-ahorro-cache'), 'miss');
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'exact');
});

test('a streamed answer is cached once complete and replayed as a correct stream, and as a normal answer', async () => {
  const q = `Stream a cached answer ${Date.now()} [[tokens:15]]`;
  const collect = async (opts) => {
    const { data: stream, response } = await client.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: q }], ...opts,
    }).withResponse();
    let text = '', usage = null, finish = null, role = null;
    for await (const c of stream) {
      if (c.choices[0]?.delta?.role) role = c.choices[0].delta.role;
      if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) usage = c.usage;
    }
    return { text, usage, finish, role, cache: response.headers.get('x-ahorro-cache') };
  };
  const first = await collect({ stream_options: { include_usage: true } });
  assert.equal(first.cache, 'miss');
  const calls = await upstreamCalls();
  const again = await collect({ stream_options: { include_usage: true } });
  assert.equal(again.cache, 'exact');
  assert.equal(again.text, first.text);
  assert.equal(again.finish, 'stop');
  assert.equal(again.role, 'assistant');
  assert.deepEqual(again.usage, first.usage, 'the usage chunk is replayed when asked for');
  const noUsage = await collect({});
  assert.equal(noUsage.cache, 'exact');
  assert.equal(noUsage.usage, null, 'no usage chunk unless the client asked');
  const plain = await ask(q);
  assert.equal(plain.response.headers.get('x-ahorro-cache'), 'exact');
  assert.equal(plain.data.choices[0].message.content, first.text);
  assert.equal(await upstreamCalls(), calls);
  // the raw replay ends with [DONE]
  const raw = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER_KEY}` },
    body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: q }] }),
  });
  assert.equal(raw.headers.get('content-type'), 'text/event-stream');
  assert.match(await raw.text(), /data: \[DONE\]\n\n/);
});

test('tool calls are cached and replayed, streamed and not', async () => {
  const params = {
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Weather in Paris? [[tool]] ${Date.now()}` }],
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
  };
  const first = await client.chat.completions.create(params);
  const call = first.choices[0].message.tool_calls?.[0];
  assert.ok(call, 'the fake answers with a tool call');
  const hit = await client.chat.completions.create({ ...params, stream: true });
  let name = '', args = '', finish = null;
  for await (const c of hit) {
    const tc = c.choices[0]?.delta?.tool_calls?.[0];
    if (tc?.function?.name) name += tc.function.name;
    if (tc?.function?.arguments) args += tc.function.arguments;
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.equal(name, call.function.name);
  assert.equal(args, call.function.arguments);
  assert.equal(finish, 'tool_calls');
});

test('Anthropic SDK: exact hits on /v1/messages, streamed and not', async () => {
  const params = { model: 'claude-3-5-haiku-latest', max_tokens: 200, messages: [{ role: 'user', content: `Hello Claude ${Date.now()}` }] };
  const first = await anthropic.messages.create(params).withResponse();
  assert.equal(first.response.headers.get('x-ahorro-cache'), 'miss');
  const second = await anthropic.messages.create(params).withResponse();
  assert.equal(second.response.headers.get('x-ahorro-cache'), 'exact');
  assert.equal(second.data.content[0].text, first.data.content[0].text);
  assert.equal(second.data.role, 'assistant');
  const stream = anthropic.messages.stream(params);
  const msg = await stream.finalMessage();
  assert.equal(msg.content[0].text, first.data.content[0].text);
  assert.equal(msg.stop_reason, 'end_turn');
});

test('tenant isolation: another owner never gets the answer, even for the identical prompt', async () => {
  const mk = async (owner) => {
    const r = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` }, body: JSON.stringify({ owner }) });
    return (await r.json()).key;
  };
  const a = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: await mk('tenant-a'), maxRetries: 0 });
  const b = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: await mk('tenant-b'), maxRetries: 0 });
  const a2 = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: await mk('tenant-a'), maxRetries: 0 });
  const q = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Our secret plan ${Date.now()}` }] };
  assert.equal((await a.chat.completions.create(q).withResponse()).response.headers.get('x-ahorro-cache'), 'miss');
  assert.equal((await b.chat.completions.create(q).withResponse()).response.headers.get('x-ahorro-cache'), 'miss');
  // a second key of the same owner shares the tenant's cache
  assert.equal((await a2.chat.completions.create(q).withResponse()).response.headers.get('x-ahorro-cache'), 'exact');
});

test('Cache-Control and the body cache object: no-store, no-cache, max-age, namespace; never sent upstream', async () => {
  const q = `Controls ${Date.now()}`;
  const h = (v) => ({ headers: { 'Cache-Control': v } });
  const first = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: q }] }, h('no-store')).withResponse();
  assert.equal(first.response.headers.get('x-ahorro-cache'), 'miss');
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'miss', 'no-store kept nothing');
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'exact');
  const nc = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: q }] }, h('no-cache')).withResponse();
  assert.equal(nc.response.headers.get('x-ahorro-cache'), 'miss', 'no-cache does not read');
  await sleep(1100);
  const old = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: q }] }, h('max-age=0')).withResponse();
  assert.equal(old.response.headers.get('x-ahorro-cache'), 'miss', 'max-age=0 refuses an older answer');
  // LiteLLM's body controls
  const ns = await ask(q, { cache: { namespace: 'team-x' } });
  assert.equal(ns.response.headers.get('x-ahorro-cache'), 'miss', 'another namespace is another cache');
  const last = await fake.last();
  assert.equal(last.body.cache, undefined, 'the cache object is the gateway\'s, not the provider\'s');
  assert.equal((await ask(q, { cache: { namespace: 'team-x' } })).response.headers.get('x-ahorro-cache'), 'exact');
  assert.equal((await ask(q, { cache: { 'no-cache': true } })).response.headers.get('x-ahorro-cache'), 'miss');
  await assert.rejects(ask(q, { cache: { ttl: 'soon' } }), (e) => e.status === 400 && /cache.ttl/.test(e.message));
  await assert.rejects(ask(q, { cache: { bogus: 1 } }), (e) => e.status === 400 && /unknown cache control/.test(e.message));
});

test('TTL: an answer kept for one second is gone after it', async () => {
  const q = `Short-lived ${Date.now()}`;
  await ask(q, { cache: { ttl: 1 } });
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'exact');
  await sleep(1200);
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'miss');
});

test('hot requests (temperature above the route limit) and routes with the cache off bypass it', async () => {
  const q = `Be creative ${Date.now()}`;
  const hot = await ask(q, { temperature: 1.5 });
  assert.equal(hot.response.headers.get('x-ahorro-cache'), 'bypass');
  assert.equal((await ask(q, { temperature: 1.5 })).response.headers.get('x-ahorro-cache'), 'bypass');
  const off = () => client.chat.completions.create({ model: 'no-cache-model', messages: [{ role: 'user', content: q }] }).withResponse();
  await off();
  assert.equal((await off()).response.headers.get('x-ahorro-cache'), 'off');
});

test('feedback that marks a hit wrong removes the entry and is counted', async () => {
  const q = `Feedback ${Date.now()}`;
  await ask(q);
  const hit = await ask(q);
  assert.equal(hit.response.headers.get('x-ahorro-cache'), 'exact');
  const rid = hit.response.headers.get('x-ahorro-request-id');
  await ledgerRow(gw.db, rid);
  const before = await (await fetch(`${gw.url}/admin/cache`, { headers: { authorization: `Bearer ${MASTER_KEY}` } })).json();
  const fb = await fetch(`${gw.url}/v1/feedback`, {
    method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ request_id: rid, wrong: true, comment: 'not what I asked' }),
  });
  assert.equal(fb.status, 200);
  const out = await fb.json();
  assert.equal(out.cache_entry_removed, true);
  const afterStats = await (await fetch(`${gw.url}/admin/cache`, { headers: { authorization: `Bearer ${MASTER_KEY}` } })).json();
  assert.equal(afterStats.false_hits, before.false_hits + 1);
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'miss');
  const bad = await fetch(`${gw.url}/v1/feedback`, { method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` }, body: '{"wrong": true}' });
  assert.equal(bad.status, 400);
  const unknown = await fetch(`${gw.url}/v1/feedback`, { method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` }, body: '{"request_id": "req_nope"}' });
  assert.equal(unknown.status, 404);
  const noKey = await fetch(`${gw.url}/v1/feedback`, { method: 'POST', headers: { authorization: 'Bearer sk-ah-wrong' }, body: JSON.stringify({ request_id: rid }) });
  assert.equal(noKey.status, 401);
});

test('admin: stats per tenant and route, purge by tenant, namespace, model or age', async () => {
  const auth = { authorization: `Bearer ${MASTER_KEY}` };
  const q = `Purge me ${Date.now()}`;
  await ask(q);
  const stats = await (await fetch(`${gw.url}/admin/cache`, { headers: auth })).json();
  assert.equal(stats.enabled, true);
  assert.ok(stats.entries > 0 && stats.bytes > 0 && stats.hits_exact > 0 && stats.misses > 0);
  assert.ok(stats.by_route.some((r) => r.tenant === 'master' && r.model === 'gpt-4o-mini' && r.entries > 0 &&
    r.hits_exact > 0 && r.misses > 0 && r.false_hits >= 1), JSON.stringify(stats.by_route));
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  assert.match(metrics, /^ahorro_cache_lookups_total\{result="exact"\} [1-9]/m);
  assert.match(metrics, /^ahorro_cache_entries [1-9]/m);
  const none = await (await fetch(`${gw.url}/admin/cache?tenant=nobody`, { method: 'DELETE', headers: auth })).json();
  assert.equal(none.purged, 0);
  const some = await (await fetch(`${gw.url}/admin/cache?model=gpt-4o-mini&tenant=master`, { method: 'DELETE', headers: auth })).json();
  assert.ok(some.purged > 0);
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'miss');
  const noAuth = await fetch(`${gw.url}/admin/cache`, { headers: { authorization: 'Bearer nope' } });
  assert.equal(noAuth.status, 401);
  // the CLI asks the running gateway, with the configuration's master key
  await ask(q);
  const cli = (...args) => execFileSync(AHORRO_BIN, ['cache', ...args, '--url', gw.url, '--config', gw.cfgPath],
    { encoding: 'utf8', env: { ...process.env, AHORRO_MASTER_KEY: '' } });
  const js = JSON.parse(cli('stats', '--json'));
  assert.ok(js.entries > 0);
  assert.match(cli('stats'), /hits_exact/);
  assert.match(cli('purge', '--tenant', 'master', '--model', 'gpt-4o-mini'), /purged [1-9]\d* entries/);
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'miss');
});

test('semantic hit: a rephrased question gets the answer, within the tenant only', { skip: !HAVE_VECTORS && 'no word vectors built (scripts/build-embeddings.sh)' }, async () => {
  const sem = (content, c = client) => c.chat.completions.create({
    model: 'sem-model', messages: [{ role: 'system', content: 'You are a bank assistant.' }, { role: 'user', content }],
  }).withResponse();
  const first = await sem('How do I reset my online banking password?');
  assert.equal(first.response.headers.get('x-ahorro-cache'), 'miss');
  const close = await sem('how do i reset my online banking password');
  assert.equal(close.response.headers.get('x-ahorro-cache'), 'semantic');
  assert.ok(Number(close.response.headers.get('x-ahorro-cache-similarity')) >= 0.9);
  assert.equal(close.data.choices[0].message.content, first.data.choices[0].message.content);
  // a rephrasing reported wrong: that entry now asks for more similarity than this one had
  const near = await sem('how can i reset my online banking password quickly');
  assert.equal(near.response.headers.get('x-ahorro-cache'), 'semantic');
  const nearSim = Number(near.response.headers.get('x-ahorro-cache-similarity'));
  assert.ok(nearSim < 0.999, `similarity ${nearSim}`);
  await ledgerRow(gw.db, near.response.headers.get('x-ahorro-request-id'));
  const fb = await (await fetch(`${gw.url}/v1/feedback`, {
    method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` },
    body: JSON.stringify({ request_id: near.response.headers.get('x-ahorro-request-id'), wrong: true }),
  })).json();
  assert.equal(fb.cache, 'semantic');
  assert.equal(fb.cache_threshold_raised, true, JSON.stringify(fb));
  assert.equal(fb.cache_entry_removed, false);
  const again = await sem('how can i reset my online banking password quickly');
  assert.notEqual(again.response.headers.get('x-ahorro-cache'), 'semantic');
  assert.equal((await sem('how do i reset my online banking password')).response.headers.get('x-ahorro-cache'), 'semantic',
    'closer rephrasings still hit');
  const far = await sem('What are the opening hours of your branch in Madrid?');
  assert.equal(far.response.headers.get('x-ahorro-cache'), 'miss');
  // another tenant, the same near-identical prompt: never a hit
  const r = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` }, body: JSON.stringify({ owner: 'tenant-sem-b' }) });
  const other = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: (await r.json()).key, maxRetries: 0 });
  assert.equal((await sem('how do i reset my online banking password', other)).response.headers.get('x-ahorro-cache'), 'miss');
  // another system prompt is another scope
  const sys = await client.chat.completions.create({
    model: 'sem-model', messages: [{ role: 'system', content: 'You are a pirate.' }, { role: 'user', content: 'how do i reset my online banking password' }],
  }).withResponse();
  assert.equal(sys.response.headers.get('x-ahorro-cache'), 'miss');
});

// A support history: a few queries per intent, as a tenant exports them (text,label).
const HISTORY = `text,intent
My card still hasn't arrived,card_arrival
When will my new card arrive?,card_arrival
I am still waiting on my card,card_arrival
How long does a card take to be delivered?,card_arrival
The card I ordered has not come yet,card_arrival
"Where is my card, it was sent two weeks ago",card_arrival
Can I top up with cash?,top_up_by_cash
How do I add cash to my account?,top_up_by_cash
Is it possible to deposit cash to top up?,top_up_by_cash
Where can I top up using cash,top_up_by_cash
I want to put cash into my balance,top_up_by_cash
"Cash top-up, how does it work?",top_up_by_cash
I forgot my passcode,passcode_forgotten
How do I reset my passcode?,passcode_forgotten
I can't remember my passcode,passcode_forgotten
Lost my passcode what now?,passcode_forgotten
I need a new passcode because I forgot mine,passcode_forgotten
Passcode reset please,passcode_forgotten
`;

test('semantic hits decided by a labelled history: same intent hits, another intent or an unsure label misses', { skip: !HAVE_VECTORS && 'no word vectors built (scripts/build-embeddings.sh)' }, async () => {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  const g = await startGateway({
    fake, config: (d) => {
      writeFileSync(join(d, 'history.csv'), HISTORY);
      return testConfig(fake, d, `  cache:
    exact: true
    embedder_path: ${VECTORS}
    routes:
      bank-bot: { semantic: true, intents: ${join(d, 'history.csv')}, intent_confidence: 0.6 }
`).replace('model_list:\n', `model_list:
  - model_name: bank-bot
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-provider-secret-key-do-not-leak" }
`);
    },
  });
  try {
    assert.match(g.logs(), /intents from .*history\.csv: 18 rows, 3 labels/);
    const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const bank = (content, cl = c) => cl.chat.completions.create({
      model: 'bank-bot', messages: [{ role: 'system', content: 'You are a bank assistant.' }, { role: 'user', content }],
    }).withResponse();
    const first = await bank('my card has still not arrived');
    assert.equal(first.response.headers.get('x-ahorro-cache'), 'miss');
    // a paraphrase of the same intent, far below the cosine-only default of 0.96
    const para = await bank('when is the card I ordered going to be delivered?');
    assert.equal(para.response.headers.get('x-ahorro-cache'), 'semantic');
    assert.equal(para.response.headers.get('x-ahorro-cache-intent'), 'card_arrival');
    assert.ok(Number(para.response.headers.get('x-ahorro-cache-similarity')) < 0.96);
    assert.equal(para.data.choices[0].message.content, first.data.choices[0].message.content);
    const row = await ledgerRow(g.db, para.response.headers.get('x-ahorro-request-id'));
    assert.equal(row.cache, 'semantic');
    assert.equal(row.cost_usd, 0);
    // another intent sharing the word "card": a miss, then stored under its own label
    const cash = await bank('can I top up my card with cash?');
    assert.equal(cash.response.headers.get('x-ahorro-cache'), 'miss');
    assert.equal(cash.response.headers.get('x-ahorro-cache-intent'), null);
    assert.equal((await bank('how do i put cash on my account')).response.headers.get('x-ahorro-cache-intent'), 'top_up_by_cash');
    // nothing the history knows: no confident label, so never a semantic hit
    const weather = await bank('what will the weather be like in Lisbon tomorrow');
    assert.equal(weather.response.headers.get('x-ahorro-cache'), 'miss');
    assert.equal((await bank('what will the weather be like in Porto tomorrow')).response.headers.get('x-ahorro-cache'), 'miss');
    // the labels never cross tenants
    const r = await fetch(`${g.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` }, body: JSON.stringify({ owner: 'tenant-intents-b' }) });
    const other = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: (await r.json()).key, maxRetries: 0 });
    assert.equal((await bank('when is the card I ordered going to be delivered?', other)).response.headers.get('x-ahorro-cache'), 'miss');
  } finally { await g.stop(); g.cleanup(); }
  // a history that cannot be read or learnt stops the start, saying where
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-intents-'));
  try {
    // the history checked on itself before it is used
    writeFileSync(join(dir, 'history.csv'), HISTORY);
    const chk = spawnSync(AHORRO_BIN, ['cache', 'intents', join(dir, 'history.csv'), '--json'], { encoding: 'utf8', timeout: 30000 });
    assert.equal(chk.status, 0, chk.stderr);
    const report = JSON.parse(chk.stdout);
    assert.equal(report.rows, 18);
    assert.equal(report.labels, 3);
    assert.ok(report.accuracy >= 0 && report.accuracy <= 1);
    assert.deepEqual(report.levels.map((l) => l.intent_confidence), [0.5, 0.6, 0.7, 0.8, 0.9]);
    for (const l of report.levels) assert.ok(l.coverage >= l.hit_rate && l.precision >= 0 && l.precision <= 1, JSON.stringify(l));
    const bad = spawnSync(AHORRO_BIN, ['cache', 'intents', join(dir, 'missing.csv')], { encoding: 'utf8', timeout: 30000 });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /missing\.csv: cannot open/);
    const run = (route, files = {}) => {
      for (const [n, t] of Object.entries(files)) writeFileSync(join(dir, n), t);
      writeFileSync(join(dir, 'c.yaml'), testConfig(fake, dir, `  cache:\n    routes:\n      gpt-4o-mini: { semantic: true, ${route} }\n`));
      return spawnSync(AHORRO_BIN, ['serve', '--config', join(dir, 'c.yaml'), '--listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10000 });
    };
    let res = run(`intents: ${join(dir, 'missing.csv')}`);
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /c\.yaml:\d+.*cannot read the intents file/);
    res = run(`intents: ${join(dir, 'one.csv')}`, { 'one.csv': 'text,label\nhello,greet\nhi,greet\n' });
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /one\.csv: fewer than two labels/);
    res = run(`intents: ${join(dir, 'bad.csv')}`, { 'bad.csv': 'text,label\nhello,greet\n"bye,leave\n' });
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /bad\.csv:3: malformed CSV record/);
    res = run(`intents: ${join(dir, 'one.csv')}, intent_confidence: 1.5`);
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /intent_confidence/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('persistence: entries survive a restart', async () => {
  const q = `Remember me ${Date.now()}`;
  await ask(q);
  const dir = gw.dir;
  await gw.stop();
  gw = await startGatewayIn(dir);
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
  assert.equal((await ask(q)).response.headers.get('x-ahorro-cache'), 'exact');
});

test('Anthropic prompt caching: breakpoints placed on long stable prefixes, none on short prompts or over the client\'s own', async () => {
  const longSystem = 'You are the support assistant of Example Bank. '.repeat(400); // ~19 KB, over Haiku's 2048 tokens
  const tools = [{ name: 'lookup', description: 'Look up an account', input_schema: { type: 'object', properties: { id: { type: 'string' } } } }];
  // no marks from the client: the gateway places one after the system prompt
  const res = await anthropic.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50, system: longSystem, tools,
    messages: [{ role: 'user', content: `What is my balance? [[cached:2000]] ${Date.now()}` }],
  }).withResponse();
  let sent = (await fake.last()).body;
  assert.ok(Array.isArray(sent.system), 'the system prompt became blocks');
  assert.deepEqual(sent.system.at(-1).cache_control, { type: 'ephemeral' });
  assert.equal(sent.system.at(-1).text, longSystem);
  assert.equal(sent.tools[0].cache_control, undefined, 'the tools alone are under the minimum');
  const row = await ledgerRow(gw.db, res.response.headers.get('x-ahorro-request-id'));
  assert.equal(row.cached_tokens, 2000);
  // claude-3-5-haiku: $0.80 input, $0.08 cache read per million
  assert.ok(Math.abs(row.prompt_cache_saved_usd - 2000 * (0.8 - 0.08) / 1e6) < 1e-9, `saved ${row.prompt_cache_saved_usd}`);

  // a conversation: its history before the final user turn is marked too
  await anthropic.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50, system: longSystem,
    messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: `And now? ${Date.now()}` }],
  });
  sent = (await fake.last()).body;
  assert.deepEqual(sent.messages[1].content.at(-1).cache_control, { type: 'ephemeral' });
  assert.equal(typeof sent.messages[2].content, 'string', 'the final turn is left as sent');

  // short prompt: nothing placed
  await anthropic.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 50, system: 'Be brief.', messages: [{ role: 'user', content: `Hi ${Date.now()}` }] });
  sent = (await fake.last()).body;
  assert.equal(sent.system, 'Be brief.');

  // the client's own marks: the body goes as sent
  const own = [{ type: 'text', text: longSystem }, { type: 'text', text: 'Today is Monday.', cache_control: { type: 'ephemeral' } }];
  await anthropic.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 50, system: own, messages: [{ role: 'user', content: `Hi ${Date.now()}` }] });
  sent = (await fake.last()).body;
  assert.deepEqual(sent.system, own);

  // an OpenAI client on a Claude model gets the same treatment
  await client.chat.completions.create({ model: 'gpt-on-claude', messages: [{ role: 'system', content: longSystem }, { role: 'user', content: `Hi ${Date.now()}` }] });
  sent = (await fake.last()).body;
  assert.deepEqual(sent.system.at(-1).cache_control, { type: 'ephemeral' });
});

test('semantic cache over an embeddings endpoint: asynchronous, cached, batched; a dead endpoint means misses, not errors', async () => {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  const conf = (d, embedModel) => testConfig(fake, d, `  cache:
    exact: false
    embedder: endpoint
    embedder_model: ${embedModel}
    routes:
      sem-remote: { semantic: true, similarity_threshold: 0.99 }
`).replace('model_list:\n', `model_list:
  - model_name: sem-remote
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-provider-secret-key-do-not-leak" }
  - model_name: dead-embedder
    litellm_params: { model: openai/text-embedding-3-small, api_base: "http://127.0.0.1:9/v1", api_key: x }
`);
  const g = await startGateway({ fake, config: (d) => conf(d, 'text-embedding-3-small') });
  try {
    const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const ask2 = (content) => c.chat.completions.create({ model: 'sem-remote', messages: [{ role: 'user', content }] }).withResponse();
    const stats = async () => (await fetch(`${g.url}/admin/cache`, { headers: { authorization: `Bearer ${MASTER_KEY}` } })).json();
    const q = `Where is my card? ${Date.now()}`;
    assert.equal((await ask2(q)).response.headers.get('x-ahorro-cache'), 'miss');
    const hit = await ask2(q);
    assert.equal(hit.response.headers.get('x-ahorro-cache'), 'semantic');
    assert.ok(Number(hit.response.headers.get('x-ahorro-cache-similarity')) > 0.999);
    let s = await stats();
    assert.equal(s.embedder_texts, 1, 'the second time the vector came from the embedder\'s cache');
    // many at once: every text embedded once, in fewer calls than texts
    const many = Array.from({ length: 24 }, (_, i) => ask2(`Question number ${i} at ${Date.now()}`));
    for (const r of await Promise.all(many)) assert.equal(r.response.headers.get('x-ahorro-cache'), 'miss');
    s = await stats();
    assert.equal(s.embedder_texts, 25);
    assert.ok(s.embedder_calls < s.embedder_texts, `batched: ${s.embedder_calls} calls for ${s.embedder_texts} texts`);
  } finally { await g.stop(); g.cleanup(); }
  // an endpoint that does not answer: the request is served, as a miss
  const dead = await startGateway({ fake, config: (d) => conf(d, 'dead-embedder') });
  try {
    const c = new OpenAI({ baseURL: `${dead.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'sem-remote', messages: [{ role: 'user', content: 'hello?' }] }).withResponse();
    assert.equal(r.response.headers.get('x-ahorro-cache'), 'miss');
    assert.match(r.data.choices[0].message.content, /simulated/);
  } finally { await dead.stop(); dead.cleanup(); }
});

test('semantic cache with a Model2Vec model directory as the embedder', async () => {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  const model = join(ROOT, 'tests/data/model2vec/test-model-float32');
  const g = await startGateway({
    fake, config: (d) => testConfig(fake, d, `  cache:
    exact: false
    embedder: model2vec
    embedder_path: ${model}
    routes:
      m2v-route: { semantic: true, similarity_threshold: 0.999 }
`).replace('model_list:\n', `model_list:
  - model_name: m2v-route
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-provider-secret-key-do-not-leak" }
`),
  });
  try {
    const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const ask3 = (content) => c.chat.completions.create({ model: 'm2v-route', messages: [{ role: 'user', content }] }).withResponse();
    const q = `hello world ${Date.now()}`;
    assert.equal((await ask3(q)).response.headers.get('x-ahorro-cache'), 'miss');
    const hit = await ask3(q);
    assert.equal(hit.response.headers.get('x-ahorro-cache'), 'semantic');
    assert.ok(Number(hit.response.headers.get('x-ahorro-cache-similarity')) > 0.999);
    assert.match(g.logs(), /model2vec|semantic/i);
  } finally { await g.stop(); g.cleanup(); }
});
