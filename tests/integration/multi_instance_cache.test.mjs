// Three gateway instances sharing their answer caches through one Redis
// (docs/state.md, "Answer caches in Redis"): an answer cached through one is an
// exact hit on the others, a paraphrase is a semantic hit on another instance,
// another tenant never hits, a purge on one empties the others, and with Redis
// gone requests still succeed (misses) and sharing recovers when it is back.
// The lookup of a local exact miss in Redis is asynchronous on the event
// loop: a hit fetched that way is replayed to a streaming request too, and a
// Redis that never answers makes a miss after timeout_ms, also for a client
// that left meanwhile.
// Needs a Redis: AHORRO_TEST_REDIS=redis://127.0.0.1:PORT/0 (scripts/test.sh
// starts one); skipped without it. The outage test starts its own
// redis-server, which it kills.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startFake, startGateway, testConfig, waitFor, freePort, MASTER_KEY, startRedis } from './lib/harness.mjs';

const REDIS = process.env.AHORRO_TEST_REDIS;
const skip = REDIS ? false : 'AHORRO_TEST_REDIS is not set (scripts/test.sh starts a Redis)';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = process.env.AHORRO_EMBEDDINGS || join(ROOT, 'build/data/sif-100d.bin');
const HAVE_VECTORS = existsSync(VECTORS);
const skipSemantic = skip || (!HAVE_VECTORS && 'no word vectors built (scripts/build-embeddings.sh)');

let fake;
before(async () => { if (!skip) fake = await startFake(); });
after(async () => { await fake?.stop(); });

// A prefix of the test's own, so that runs sharing a Redis do not meet.
const prefixOf = (name) => `ahorro-it-${process.pid}-${Date.now()}-${name}:`;

function config(dir, url, prefix, extra = '') {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  return testConfig(fake, dir, `  state:
    url: ${url}
    prefix: "${prefix}"${extra}
  cache:
    exact: true
    ttl: 600
    max_temperature: 1.0
    ${HAVE_VECTORS ? `embedder_path: ${VECTORS}` : ''}
    routes:
      sem-model: { semantic: true, similarity_threshold: 0.9 }
`).replace('model_list:\n', `model_list:
  - model_name: sem-model
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-provider-secret-key-do-not-leak" }
`);
}

async function startN(n, url, prefix) {
  const gws = [];
  try {
    for (let i = 0; i < n; i++) gws.push(await startGateway({ config: (d) => config(d, url, prefix) }));
  } catch (e) { await stopAll(gws); throw e; }
  return gws;
}
async function stopAll(gws) { for (const g of gws) { await g.stop(); g.cleanup(); } }

const clientOf = (gw, apiKey = MASTER_KEY) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey, maxRetries: 0 });
const ask = (c, content, model = 'gpt-4o-mini') => c.chat.completions.create({
  model, messages: [{ role: 'user', content }],
}).withResponse();
const sem = (c, content) => c.chat.completions.create({
  model: 'sem-model', messages: [{ role: 'system', content: 'You are a bank assistant.' }, { role: 'user', content }],
}).withResponse();
const cacheOf = (r) => r.response.headers.get('x-ahorro-cache');
const upstreamCalls = async () => (await (await fetch(`${fake.url}/_fake/stats`)).json()).requests;
const admin = (gw, path, init = {}) => fetch(`${gw.url}${path}`,
  { ...init, headers: { authorization: `Bearer ${MASTER_KEY}`, ...init.headers } }).then((r) => r.json());
const stats = (gw) => admin(gw, '/admin/cache');
const redisKeys = (url, pattern) => execFileSync('redis-cli', ['-u', url, '--scan', '--pattern', pattern],
  { encoding: 'utf8' }).split('\n').filter(Boolean);

// An instance's stores reach Redis through a background writer: wait for
// them before another instance looks them up (else its GET may come first).
const stored = (url, prefix, n) => waitFor(() => redisKeys(url, `${prefix}cache:e:*`).length >= n, 3000);

test('an answer cached through one instance is an exact hit on the two others, with its age', { skip }, async () => {
  const prefix = prefixOf('exact');
  const gws = await startN(3, REDIS, prefix);
  try {
    const [a, b, c] = gws.map((g) => clientOf(g));
    const q = `What is the capital of Portugal? ${Date.now()}`;
    const first = await ask(a, q);
    assert.equal(cacheOf(first), 'miss');
    assert.equal(redisKeys(REDIS, `${prefix}cache:e:*`).length, 1, 'the entry is in Redis');
    const calls = await upstreamCalls();
    await new Promise((r) => setTimeout(r, 1100));
    for (const client of [b, c]) {
      const hit = await ask(client, q);
      assert.equal(cacheOf(hit), 'exact');
      assert.equal(hit.data.choices[0].message.content, first.data.choices[0].message.content);
      assert.ok(Number(hit.response.headers.get('age')) >= 1, 'the age counts from when A stored it');
      assert.equal(Number(hit.response.headers.get('x-ahorro-cost')), 0);
    }
    assert.equal(await upstreamCalls(), calls, 'hits on B and C must not call the provider');
    // now local on B: a second hit there does not need Redis
    assert.equal(cacheOf(await ask(b, q)), 'exact');
    // another tenant (a virtual key of another owner) never hits, on any instance
    const k = await admin(gws[1], '/admin/keys', { method: 'POST', body: JSON.stringify({ owner: 'tenant-other' }) });
    const other = clientOf(gws[1], k.key);
    assert.equal(cacheOf(await ask(other, q)), 'miss');
    for (const g of gws) assert.match(g.logs(), /cache: shared with the other instances through Redis/);
  } finally { await stopAll(gws); }
});

test('a hit fetched from Redis is replayed to a streaming request', { skip }, async () => {
  const prefix = prefixOf('stream');
  const gws = await startN(2, REDIS, prefix);
  try {
    const [a, b] = gws.map((g) => clientOf(g));
    const q = `Stream me from Redis ${Date.now()}`;
    const first = await ask(a, q);
    assert.equal(cacheOf(first), 'miss');
    assert.ok(await stored(REDIS, prefix, 1));
    const calls = await upstreamCalls();
    const { data: stream, response } = await b.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: q }],
    }).withResponse();
    assert.equal(response.headers.get('x-ahorro-cache'), 'exact');
    let text = '', finish = null;
    for await (const c of stream) {
      text += c.choices[0]?.delta?.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, first.data.choices[0].message.content);
    assert.equal(finish, 'stop');
    assert.equal(await upstreamCalls(), calls, 'the hit must not call the provider');
  } finally { await stopAll(gws); }
});

test('a Redis that never answers: the lookup ends as a miss after timeout_ms, also for a client that left', { skip }, async () => {
  // accepts connections and never answers
  const sockets = [];
  const silent = createServer((s) => { sockets.push(s); s.on('error', () => {}); });
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const url = `redis://127.0.0.1:${silent.address().port}/0`;
  const gw = await startGateway({ config: (d) => config(d, url, prefixOf('silent'), '\n    timeout_ms: 300') });
  try {
    // the client leaves while its lookup waits for Redis
    const ac = new AbortController();
    const left = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal,
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Left ${Date.now()}` }] }),
    });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(left);
    assert.ok(await waitFor(() => /cache: Redis at .* cannot be reached \(GET: no answer in 300 ms\)/.test(gw.logs()), 3000),
      gw.logs().slice(-2000));
    // the instance goes on: a miss, answered
    const r = await ask(clientOf(gw), `After a silent Redis ${Date.now()}`);
    assert.equal(cacheOf(r), 'miss');
    assert.ok(r.data.choices[0].message.content.length > 0);
  } finally {
    await gw.stop(); gw.cleanup();
    for (const s of sockets) s.destroy();
    silent.close();
  }
});

test('a paraphrase asked on another instance is a semantic hit; never for another tenant; a new instance catches up', { skip: skipSemantic }, async () => {
  const prefix = prefixOf('semantic');
  const gws = await startN(3, REDIS, prefix);
  try {
    const [a, b, c] = gws.map((g) => clientOf(g));
    const before = await Promise.all(gws.map(stats));
    const first = await sem(a, 'How do I reset my online banking password?');
    assert.equal(cacheOf(first), 'miss');
    // B and C read A's record from the stream and index the entry
    for (const i of [1, 2])
      assert.ok(await waitFor(async () => (await stats(gws[i])).entries > before[i].entries, 5000),
        `instance ${i} did not receive the entry`);
    const close = await sem(b, 'how do i reset my online banking password');
    assert.equal(cacheOf(close), 'semantic');
    assert.ok(Number(close.response.headers.get('x-ahorro-cache-similarity')) >= 0.9);
    assert.equal(close.data.choices[0].message.content, first.data.choices[0].message.content);
    assert.equal(cacheOf(await sem(c, 'how do i reset my online banking password')), 'semantic');
    assert.equal(cacheOf(await sem(c, 'What are the opening hours of your branch in Madrid?')), 'miss');
    // another tenant on C: its own scope, which holds nothing of the master key's
    const k = await admin(gws[2], '/admin/keys', { method: 'POST', body: JSON.stringify({ owner: 'tenant-sem-other' }) });
    assert.equal(cacheOf(await sem(clientOf(gws[2], k.key), 'how do i reset my online banking password')), 'miss');
    // an instance started later reads the stream's recent records at start
    gws.push(...await startN(1, REDIS, prefix));
    assert.ok(await waitFor(() => /caught up with \d+ records of the Redis stream/.test(gws[3].logs()), 5000));
    const late = await sem(clientOf(gws[3]), 'how can i reset my online banking password');
    assert.equal(cacheOf(late), 'semantic');
    assert.equal(late.data.choices[0].message.content, first.data.choices[0].message.content);
  } finally { await stopAll(gws); }
});

test('a purge on one instance removes the entries on the others and in Redis', { skip }, async () => {
  const prefix = prefixOf('purge');
  const gws = await startN(3, REDIS, prefix);
  try {
    const [a, b, c] = gws.map((g) => clientOf(g));
    const q1 = `Purge me once ${Date.now()}`, q2 = `Purge me twice ${Date.now()}`;
    await ask(a, q1);
    await ask(a, q2);
    assert.ok(await stored(REDIS, prefix, 2));
    // B and C hold both now (exact hits fetched from Redis)
    for (const client of [b, c]) {
      assert.equal(cacheOf(await ask(client, q1)), 'exact');
      assert.equal(cacheOf(await ask(client, q2)), 'exact');
    }
    const purgedBefore = await Promise.all(gws.map(async (g) => (await stats(g)).purged));
    const out = await admin(gws[0], '/admin/cache/purge', { method: 'POST', body: JSON.stringify({ tenant: 'master', model: 'gpt-4o-mini' }) });
    assert.ok(out.purged >= 2, JSON.stringify(out));
    assert.equal(redisKeys(REDIS, `${prefix}cache:e:*`).length, 0, 'deleted in Redis');
    for (const i of [1, 2])
      assert.ok(await waitFor(async () => (await stats(gws[i])).purged >= purgedBefore[i] + 2, 5000),
        `instance ${i} did not apply the purge`);
    assert.equal(cacheOf(await ask(b, q1)), 'miss');
    assert.equal(cacheOf(await ask(c, q2)), 'miss');
  } finally { await stopAll(gws); }
});

test('an exact hit reported wrong is removed on every instance', { skip }, async () => {
  const prefix = prefixOf('feedback');
  const gws = await startN(2, REDIS, prefix);
  try {
    const [a, b] = gws.map((g) => clientOf(g));
    const q = `Report me ${Date.now()}`;
    await ask(a, q);
    assert.ok(await stored(REDIS, prefix, 1));
    const hitB = await ask(b, q);
    assert.equal(cacheOf(hitB), 'exact');
    const hitA = await ask(a, q);
    assert.equal(cacheOf(hitA), 'exact');
    const rid = hitA.response.headers.get('x-ahorro-request-id');
    const fb = await waitFor(async () => {
      const r = await admin(gws[0], '/v1/feedback', { method: 'POST', body: JSON.stringify({ request_id: rid, wrong: true }) });
      return r.cache_entry_removed !== undefined && r;
    }, 5000);
    assert.equal(fb.cache_entry_removed, true, JSON.stringify(fb));
    assert.ok(await waitFor(async () => (await stats(gws[1])).entries === 0, 5000), 'B kept the entry');
    assert.equal(cacheOf(await ask(b, q)), 'miss');
  } finally { await stopAll(gws); }
});


test('Redis gone: requests still succeed (misses, local hits); sharing recovers when it is back', { skip }, async () => {
  const port = await freePort();
  let redis = await startRedis(port);
  const url = `redis://127.0.0.1:${port}/0`;
  const prefix = prefixOf('outage');
  const gws = await startN(2, url, prefix);
  try {
    const [a, b] = gws.map((g) => clientOf(g));
    const q1 = `Before the outage ${Date.now()}`;
    await ask(a, q1);
    assert.ok(await stored(url, prefix, 1));
    assert.equal(cacheOf(await ask(b, q1)), 'exact');
    await redis.stop();
    const q2 = `During the outage ${Date.now()}`;
    for (let i = 0; i < 3; i++) {
      const r = await ask(a, `${q2} ${i}`);
      assert.ok(['miss', 'exact'].includes(cacheOf(r)));
      assert.ok(r.data.choices[0].message.content.length > 0);
      assert.equal(cacheOf(await ask(b, `${q2} ${i}`)), 'miss', 'nothing is shared without Redis');
    }
    // what each instance holds goes on serving
    assert.equal(cacheOf(await ask(b, q1)), 'exact');
    assert.equal(cacheOf(await ask(a, `${q2} 0`)), 'exact');
    for (const g of gws) {
      assert.ok(await waitFor(() => /cache: Redis at 127\.0\.0\.1:\d+ cannot be reached/.test(g.logs()), 3000));
      assert.equal(g.logs().match(/cache: Redis at .* cannot be reached/g).length, 1, 'the outage is logged once');
    }
    redis = await startRedis(port);
    for (const g of gws)
      assert.ok(await waitFor(() => /cache: Redis at 127\.0\.0\.1:\d+ is back/.test(g.logs()), 5000),
        'the instance did not see Redis back');
    const q3 = `After the outage ${Date.now()}`;
    const held = redisKeys(url, `${prefix}cache:e:*`).length;
    assert.equal(cacheOf(await ask(a, q3)), 'miss');
    assert.ok(await stored(url, prefix, held + 1), 'the store after the outage did not reach Redis');
    assert.equal(cacheOf(await ask(b, q3)), 'exact', 'sharing recovered');
    for (const g of gws) assert.equal(g.logs().match(/cache: Redis at .* cannot be reached/g).length, 1);
  } finally { await stopAll(gws); await redis.stop(); }
});
