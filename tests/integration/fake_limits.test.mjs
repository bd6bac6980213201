// ahorro-fake --rate-limit MODEL=RPM[:TPM] and --log FILE (docs/fake-provider.md, "Rate
// limits" and "Request log"): the fake refuses what a real provider would refuse, with the
// real 429s and headers, and records every request at its arrival. The tests talk to the
// fake directly with the official SDKs; no gateway is involved.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFake, FAKE_BIN, PROVIDER_KEY } from './lib/harness.mjs';

let dir, fakeA, fakeB, logA, logB, oa, ob, claude;
const sent = []; // [model, expected status] of every API request to fake A, in order

const clientsFor = (fake) => ({
  openai: new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: PROVIDER_KEY, maxRetries: 0 }),
  // This SDK sends the key as a bearer token; the fake's --require-key wants x-api-key.
  claude: new Anthropic({ baseURL: fake.url, apiKey: PROVIDER_KEY, maxRetries: 0,
    defaultHeaders: { 'x-api-key': PROVIDER_KEY } }),
});

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ahorro-fake-limits-'));
  logA = join(dir, 'a.jsonl');
  logB = join(dir, 'b.jsonl');
  // A: two models limited, no default: everything else is unlimited.
  fakeA = await startFake(['--threads', '2', '--log', logA,
    '--rate-limit', 'gpt-4o=5', '--rate-limit', 'claude-3-5-haiku-latest=5']);
  // B: a default for every model, and a token limit on one.
  fakeB = await startFake(['--threads', '2', '--log', logB,
    '--rate-limit', '*=3', '--rate-limit', 'gpt-4o-mini=100:70']);
  ({ openai: oa, claude } = clientsFor(fakeA));
  ({ openai: ob } = clientsFor(fakeB));
});

after(async () => {
  await fakeA?.stop();
  await fakeB?.stop();
  // A clean stop exits 0; under ASan a leak at exit would make it fail.
  assert.equal(fakeA?.proc.exitCode, 0);
  assert.equal(fakeB?.proc.exitCode, 0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const chat = (client, model, extra = {}) => client.chat.completions
  .create({ model, messages: [{ role: 'user', content: 'hi there' }], ...extra }).withResponse();

async function rejected(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('expected a 429');
}

const readLog = (file) => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

test('RPM 5: five answers carrying x-ratelimit-*, then 429 with Retry-After; refusals do not count', async () => {
  for (let i = 1; i <= 5; i++) {
    const { data, response } = await chat(oa, 'gpt-4o');
    sent.push(['gpt-4o', 200]);
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '5');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), String(5 - i));
    // The window empties 60 s (to 60.1 s) after the last request: "1m0.05s" and the like.
    assert.match(response.headers.get('x-ratelimit-reset-requests'), /^(59(\.\d+)?s|1m0(\.\d+)?s)$/);
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), null); // no TPM given
  }
  for (let i = 0; i < 2; i++) {
    const e = await rejected(chat(oa, 'gpt-4o'));
    sent.push(['gpt-4o', 429]);
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.status, 429);
    assert.equal(e.error.type, 'rate_limit_error');
    assert.equal(e.error.code, 'rate_limit_exceeded');
    // "Used" stays 5: the refused request before this one did not count.
    assert.match(e.error.message, /^Rate limit reached for gpt-4o in organization \S+ on requests per min \(RPM\): Limit 5, Used 5, Requested 1\. Please try again in (\d+m)?\d+(\.\d+)?s\. Visit /);
    const ra = e.headers.get('retry-after');
    assert.match(ra, /^\d+$/);
    assert.ok(Number(ra) >= 59 && Number(ra) <= 61, ra);
    assert.equal(e.headers.get('x-ratelimit-limit-requests'), '5');
    assert.equal(e.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(e.headers.get('x-ratelimit-reset-requests'), /^(59(\.\d+)?s|1m0(\.\d+)?s)$/);
    assert.ok(e.headers.get('x-request-id'));
  }
});

test('other models are not limited without a `*` rule, and carry no rate-limit headers', async () => {
  for (let i = 0; i < 8; i++) {
    const { response } = await chat(oa, 'gpt-4o-mini');
    sent.push(['gpt-4o-mini', 200]);
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), null);
  }
  const emb = await oa.embeddings.create({ model: 'text-embedding-3-small', input: 'a b c' });
  sent.push(['text-embedding-3-small', 200]);
  assert.equal(emb.data.length, 1);
  // gpt-4o is still refused: its window did not move.
  await rejected(chat(oa, 'gpt-4o'));
  sent.push(['gpt-4o', 429]);
});

test('Anthropic path: anthropic-ratelimit-* headers, then its 429 shape with retry-after', async () => {
  const model = 'claude-3-5-haiku-latest';
  const ask = () => claude.messages.create({ model, max_tokens: 10,
    messages: [{ role: 'user', content: 'hi there' }] }).withResponse();
  for (let i = 1; i <= 5; i++) {
    const { data, response } = await ask();
    sent.push([model, 200]);
    assert.equal(data.type, 'message');
    assert.equal(response.headers.get('anthropic-ratelimit-requests-limit'), '5');
    assert.equal(response.headers.get('anthropic-ratelimit-requests-remaining'), String(5 - i));
    const reset = Date.parse(response.headers.get('anthropic-ratelimit-requests-reset'));
    assert.ok(reset > Date.now() + 55000 && reset < Date.now() + 65000, response.headers.get('anthropic-ratelimit-requests-reset'));
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), null);
  }
  const e = await rejected(ask());
  sent.push([model, 429]);
  assert.ok(e instanceof Anthropic.RateLimitError, String(e));
  assert.equal(e.status, 429);
  assert.equal(e.error.type, 'error');
  assert.equal(e.error.error.type, 'rate_limit_error');
  assert.match(e.error.error.message, /rate limit .* of 5 requests per minute/);
  assert.match(e.headers.get('retry-after'), /^\d+$/);
  assert.ok(Number(e.headers.get('retry-after')) >= 1);
  assert.equal(e.headers.get('anthropic-ratelimit-requests-remaining'), '0');
  assert.ok(e.headers.get('request-id'));
});

test('limits are summed over all loop threads: 20 parallel requests, exactly 3 answered', async () => {
  // Parallel fetches open several connections, which SO_REUSEPORT spreads over the 2 loops.
  const results = await Promise.all(Array.from({ length: 20 }, () =>
    fetch(`${fakeB.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${PROVIDER_KEY}` },
      body: JSON.stringify({ model: 'parallel-model', messages: [{ role: 'user', content: 'x' }] }),
    }).then(async (r) => { await r.arrayBuffer(); return r.status; })));
  assert.equal(results.filter((s) => s === 200).length, 3);
  assert.equal(results.filter((s) => s === 429).length, 17);
});

test('`*` gives every other model a window of its own with the default limit', async () => {
  for (const model of ['model-a', 'model-b']) {
    for (let i = 1; i <= 3; i++) {
      const { response } = await chat(ob, model);
      assert.equal(response.headers.get('x-ratelimit-limit-requests'), '3');
      assert.equal(response.headers.get('x-ratelimit-remaining-requests'), String(3 - i));
    }
    const e = await rejected(chat(ob, model));
    assert.equal(e.status, 429);
    assert.match(e.error.message, new RegExp(`for ${model} in organization .* Limit 3, Used 3`));
  }
});

test('TPM: prompt tokens plus max_tokens count; a refused request does not; too large is refused', async () => {
  // "hi there": (2 + 4) + 3 = 9 prompt tokens; with max_tokens 20 a request counts 29.
  const r1 = await chat(ob, 'gpt-4o-mini', { max_tokens: 20 });
  assert.equal(r1.response.headers.get('x-ratelimit-limit-tokens'), '70');
  assert.equal(r1.response.headers.get('x-ratelimit-remaining-tokens'), '41');
  assert.equal(r1.response.headers.get('x-ratelimit-limit-requests'), '100');
  assert.equal(r1.response.headers.get('x-ratelimit-remaining-requests'), '99');
  assert.match(r1.response.headers.get('x-ratelimit-reset-tokens'), /^(59(\.\d+)?s|1m0(\.\d+)?s)$/);
  const r2 = await chat(ob, 'gpt-4o-mini', { max_tokens: 20 });
  assert.equal(r2.response.headers.get('x-ratelimit-remaining-tokens'), '12');
  const e = await rejected(chat(ob, 'gpt-4o-mini', { max_tokens: 20 }));
  assert.equal(e.status, 429);
  assert.equal(e.error.code, 'rate_limit_exceeded');
  assert.match(e.error.message, /on tokens per min \(TPM\): Limit 70, Used 58, Requested 29\. Please try again in/);
  assert.equal(e.headers.get('x-ratelimit-remaining-tokens'), '0');
  assert.ok(Number(e.headers.get('retry-after')) >= 1);
  // 9 + 3 = 12 still fits: the refused 29 were not counted.
  const r3 = await chat(ob, 'gpt-4o-mini', { max_tokens: 3 });
  assert.equal(r3.response.headers.get('x-ratelimit-remaining-tokens'), '0');
  // More than the whole limit in one request: "Request too large", however empty the window.
  const big = await rejected(chat(ob, 'gpt-4o-mini', { max_completion_tokens: 500 }));
  assert.equal(big.status, 429);
  assert.match(big.error.message, /^Request too large for gpt-4o-mini .* Limit 70, Requested 509\./);
});

test('/_fake/stats counts the refusals and /_fake/reset empties the windows', async () => {
  const stats = await (await fetch(`${fakeB.url}/_fake/stats`)).json();
  assert.equal(stats.rate_limited, 17 + 2 + 2);
  await fetch(`${fakeB.url}/_fake/reset`, { method: 'POST' });
  const { response } = await chat(ob, 'model-a');
  assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '2');
  assert.equal((await (await fetch(`${fakeB.url}/_fake/stats`)).json()).rate_limited, 0);
});

test('the log: one line per request, at arrival, with its status; flushed within a second', async () => {
  // Control paths are not logged; API paths are, refused ones included.
  await fetch(`${fakeA.url}/_fake/stats`);
  const nope = await fetch(`${fakeA.url}/v1/nothing`, { headers: { authorization: `Bearer ${PROVIDER_KEY}` } });
  assert.equal(nope.status, 404);
  sent.push([null, 404]);
  const t0 = Date.now();
  await chat(oa, 'gpt-4o-mini', { max_tokens: 7 });
  sent.push(['gpt-4o-mini', 200]);
  await sleep(1000); // the writer flushes every 500 ms, without a stop
  const lines = readLog(logA);
  assert.equal(lines.length, sent.length);
  lines.forEach((l, i) => {
    assert.deepEqual([l.model, l.status], sent[i], `line ${i}: ${JSON.stringify(l)}`);
    assert.equal(typeof l.t_ms, 'number');
    assert.equal(typeof l.prompt_tokens, 'number');
    if (i) assert.ok(l.t_ms >= lines[i - 1].t_ms); // these requests went one after another
  });
  const last = lines.at(-1);
  assert.deepEqual(last.path, '/v1/chat/completions');
  assert.equal(last.prompt_tokens, 9);
  assert.equal(last.max_tokens, 7);
  assert.ok(last.t_ms >= t0 - 5 && last.t_ms <= t0 + 1000, `${last.t_ms} vs ${t0}`);
  assert.equal(lines.find((l) => l.status === 404).path, '/v1/nothing');
  // A checker's view: no 60 s span holds more than 5 answered gpt-4o requests.
  assert.equal(lines.filter((l) => l.model === 'gpt-4o' && l.status === 200).length, 5);
  assert.equal(lines.filter((l) => l.model === 'claude-3-5-haiku-latest' && l.status === 429).length, 1);
});

test('SIGTERM writes what is buffered: every request is in the log at once', async () => {
  const file = join(dir, 'c.jsonl');
  const fake = await startFake(['--log', file, '--rate-limit', 'gpt-4o=3']);
  const { openai } = clientsFor(fake);
  const statuses = [];
  for (let i = 0; i < 5; i++) {
    try { await chat(openai, 'gpt-4o'); statuses.push(200); } catch (e) { statuses.push(e.status); }
  }
  // A held request (never answered) is logged at its arrival too.
  const held = fetch(`${fake.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${PROVIDER_KEY}` },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'wait [[fault:timeout]]' }] }),
  }).catch(() => null);
  await sleep(100);
  await fake.stop(); // well within the 500 ms flush period
  await held;
  assert.equal(fake.proc.exitCode, 0);
  const lines = readLog(file);
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  assert.deepEqual(lines.map((l) => l.status), [200, 200, 200, 429, 429, 200]);
  assert.equal(lines[5].fault, 'timeout');
  assert.equal(lines[5].model, 'gpt-4o-mini');
});

test('bad --rate-limit and --log values stop the start with status 2', () => {
  for (const args of [['--rate-limit', 'gpt-4o'], ['--rate-limit', 'gpt-4o=abc'], ['--rate-limit', '=5'],
    ['--rate-limit', 'gpt-4o=0'], ['--rate-limit', 'gpt-4o=5', '--rate-limit', 'gpt-4o=6'],
    ['--log', join(dir, 'no/such/dir/log.jsonl')]]) {
    const r = spawnSync(FAKE_BIN, ['--listen', '127.0.0.1:0', ...args], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /--rate-limit|--log/);
  }
  assert.equal(existsSync(join(dir, 'no')), false);
});
