// Routing through the real gateway and several fake providers: weighted and
// latency-based balancing (distributions checked), retries with backoff that
// honour Retry-After, fallbacks on 500 / 429 / timeout / reset / context
// overflow, streams retried before their first byte and ended cleanly after,
// circuit breaking and recovery, per-deployment rpm limits, rules, the
// complexity router, the route reason header, every attempt in the ledger,
// and bad routing configs refused at start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
  startFake, startGateway, ledger, ledgerRow, waitFor, MASTER_KEY, PROVIDER_KEY, AHORRO_BIN,
} from './lib/harness.mjs';

let A, B, C, gw, client, anthropic;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = process.env.AHORRO_EMBEDDINGS || join(ROOT, 'build/data/sif-100d.bin');

const dep = (name, fake, model, extra = '') =>
  `  - model_name: ${name}
    litellm_params: { model: ${model}, api_base: "http://127.0.0.1:${fake.port}${model.startsWith('anthropic/') ? '' : '/v1'}", api_key: "${PROVIDER_KEY}"${extra} }
`;

function routingConfig(dir, { strategy = 'weighted' } = {}) {
  return `model_list:
${dep('pool', A, 'openai/gpt-4o-mini', ', weight: 3')}${dep('pool', B, 'openai/gpt-4o-mini', ', weight: 1')}${dep('primary', A, 'openai/gpt-4o', ', timeout: 1')}${dep('backup', B, 'openai/gpt-4o-mini')}${dep('claude-primary', A, 'anthropic/claude-3-5-haiku-latest')}${dep('claude-backup', B, 'anthropic/claude-sonnet-4-5')}${dep('small-window', C, 'openai/fake-tiny')}${dep('big-window', C, 'openai/gpt-4o')}${dep('strong', C, 'openai/gpt-4o')}${dep('cheap', C, 'openai/gpt-4o-mini')}${dep('limited', C, 'openai/gpt-4o-mini', ', rpm: 2')}general_settings:
  master_key: ${MASTER_KEY}
ahorro:
  db: ${join(dir, 'ahorro.db')}
  threads: 2
  routing:
    strategy: ${strategy}
    retries: 1
    backoff: 0.05
    max_backoff: 2
    allowed_fails: 2
    cooldown: 1
    fallbacks:
      primary: [backup]
      claude-primary: [claude-backup]
    context_window_fallbacks:
      small-window: [big-window]
    rules:
      - when: { tag: feature=complaints }
        model: strong
    routers:
      - name: auto
        critical_threshold: 0.5
        tiers:
          - { name: high, model: strong, min_score: 0.5 }
          - { name: low, model: cheap }
      - name: frugal
        kind: cascade
        cascade: [cheap, strong]
`;
}

const setFault = (fake, spec) => fetch(`${fake.url}/_fake/fault`, { method: 'POST', body: spec });
const calls = async (fake) => (await (await fetch(`${fake.url}/_fake/stats`)).json()).chat_completions;

before(async () => {
  [A, B, C] = await Promise.all([startFake(), startFake(), startFake()]);
  gw = await startGateway({ config: (d) => routingConfig(d) });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => {
  await gw?.stop();
  await Promise.all([A, B, C].map((f) => f?.stop()));
  gw?.cleanup();
});

const ask = (model, content = 'hello there', extra = {}, opts = {}) =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content }], ...extra }, opts)
    .withResponse();

// Clear A's fault, let its cooldown end and close its breaker with a success.
async function heal() {
  await setFault(A, '');
  await sleep(1100);
  await ask('primary');
}

// waitFor stops at the first truthy value, and an empty array is one.
const nonEmpty = (rows) => (rows.length ? rows : null);

// The attempt rows of a request, in order.
async function attempts(id, n) {
  await waitFor(() => ledger(gw.db, `attempt_of = '${id}'`).length >= n);
  return ledger(gw.db, `attempt_of = '${id}'`);
}

test('weighted balancing: weights 3:1 split 200 requests about 3:1', async () => {
  const a0 = await calls(A), b0 = await calls(B);
  for (let i = 0; i < 20; i++)
    await Promise.all(Array.from({ length: 10 }, () => ask('pool')));
  const a = (await calls(A)) - a0, b = (await calls(B)) - b0;
  assert.equal(a + b, 200);
  // Binomial(200, 0.75): mean 150, sd 6.1; 126..174 is about 4 sd.
  assert.ok(a >= 126 && a <= 174, `A took ${a} of 200`);
});

test('500 on the primary: retried once after a backoff, then the fallback answers; every attempt is a ledger row', async () => {
  await setFault(A, '500');
  try {
    const { data, response } = await ask('primary');
    assert.match(data.choices[0].message.content, /answer from gpt-4o-mini/);
    assert.equal(response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
    assert.match(response.headers.get('x-ahorro-route-reason'), /fallback to backup after 500/);
    const id = response.headers.get('x-ahorro-request-id');
    const row = await ledgerRow(gw.db, id);
    assert.equal(row.status, 200);
    assert.equal(row.attempts, 3);
    assert.equal(row.deployment, 'backup');
    assert.ok(row.cost_usd > 0);
    const tries = await attempts(id, 2);
    assert.deepEqual(tries.map((t) => [t.request_id, t.status, t.deployment, t.cost_usd]),
      [[`${id}-1`, 500, 'primary', 0], [`${id}-2`, 500, 'primary', 0]]);
    assert.ok(tries.every((t) => t.error && !t.error.includes(PROVIDER_KEY)));
  } finally { await heal(); }
});

test('429 with Retry-After: the retry waits what the provider asked, then falls back', async () => {
  await setFault(A, '429');
  try {
    const t0 = Date.now();
    const { response } = await ask('primary');
    const ms = Date.now() - t0;
    assert.equal(response.status, 200);
    assert.ok(ms >= 950, `answered after ${ms} ms: Retry-After: 1 not honoured`);
    const id = response.headers.get('x-ahorro-request-id');
    const tries = await attempts(id, 2);
    assert.deepEqual(tries.map((t) => t.status), [429, 429]);
  } finally { await heal(); }
});

test('a client that leaves while a retry waits: the wait is dropped, the request is one 499 row', async () => {
  await setFault(A, '429');
  try {
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(), 300); // the retry waits 1 s (Retry-After)
    const t0 = Date.now();
    await assert.rejects(ask('primary', 'leaving', {}, { signal: ac.signal }),
      (e) => { assert.match(String(e), /abort/i, `after ${Date.now() - t0} ms`); return true; });
    clearTimeout(t);
    const rows = await waitFor(() => nonEmpty(ledger(gw.db, "requested_model = 'primary' AND status = 499")));
    assert.equal(rows.length, 1, JSON.stringify(ledger(gw.db, "requested_model = 'primary'").slice(-4)));
    assert.equal(rows[0].attempts, 1, JSON.stringify(rows));
    await sleep(1200); // the abandoned wait would have fired by now
    assert.equal(gw.exited(), null);
  } finally { await heal(); }
});

test('timeout and reset before any byte: each attempt times out or fails, the fallback answers', async () => {
  for (const [fault, status] of [['timeout', 504], ['reset', 502]]) {
    await setFault(A, fault);
    try {
      const { data, response } = await ask('primary');
      assert.match(data.choices[0].message.content, /answer from gpt-4o-mini/);
      const id = response.headers.get('x-ahorro-request-id');
      const tries = await attempts(id, 2);
      assert.deepEqual(tries.map((t) => t.status), [status, status], fault);
    } finally { await heal(); }
  }
});

test('a stream that fails before its first byte is retried unseen; after it, the client gets an error', async () => {
  await setFault(A, '500');
  try {
    const stream = await client.chat.completions.create({
      model: 'primary', stream: true, messages: [{ role: 'user', content: 'stream me' }],
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    assert.match(text, /answer from gpt-4o-mini: stream me/);
  } finally { await heal(); }

  // A connection reset before the stream's first byte: retried unseen too.
  await setFault(A, 'reset-early');
  try {
    const stream = await client.chat.completions.create({
      model: 'primary', stream: true, messages: [{ role: 'user', content: 'reset early' }],
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    assert.match(text, /answer from gpt-4o-mini: reset early/);
  } finally { await heal(); }

  // Anthropic's SDK, streaming, overloaded (529) primary: the fallback streams.
  await setFault(A, '529');
  try {
    const s = anthropic.messages.stream({
      model: 'claude-primary', max_tokens: 100, messages: [{ role: 'user', content: 'hi claude' }],
    });
    const msg = await s.finalMessage();
    assert.match(msg.content[0].text, /answer from claude-sonnet-4-5: hi claude/);
  } finally { await heal(); }

  // A reset after the first events: no retry, a clean error for the client.
  await setFault(A, 'reset');
  try {
    const stream = await client.chat.completions.create({
      model: 'primary', stream: true, messages: [{ role: 'user', content: 'cut me' }],
    });
    let got = '';
    await assert.rejects(async () => {
      for await (const c of stream) got += c.choices[0]?.delta?.content ?? '';
    });
    assert.match(got, /ahorro-fake/);
  } finally { await setFault(A, ''); }
  const rows = await waitFor(() => nonEmpty(ledger(gw.db, "requested_model = 'primary' AND stream = 1 AND status != 200 AND attempt_of IS NULL")));
  assert.equal(rows.length, 1);
  assert.equal(rows[0].attempts, 1);
  await heal();
});

test('context-window overflow goes to the larger model', async () => {
  const long = 'word '.repeat(200);
  const { data, response } = await ask('small-window', long);
  assert.match(data.choices[0].message.content, /answer from gpt-4o:/);
  assert.match(response.headers.get('x-ahorro-route-reason'), /context-window fallback to big-window after 400/);
  const id = response.headers.get('x-ahorro-request-id');
  const tries = await attempts(id, 1);
  assert.equal(tries.length, 1);
  assert.equal(tries[0].status, 400);
  assert.match(tries[0].error, /maximum context length/);
});

test('circuit breaker: a failing deployment is left out during its cooldown, then probed back in', async () => {
  await setFault(A, '500');
  const first = await ask('primary'); // two failures on A: it cools down
  assert.equal(first.response.status, 200);
  const a0 = await calls(A);
  const second = await ask('primary');
  assert.equal(await calls(A), a0, 'the cooling deployment was called');
  assert.match(second.response.headers.get('x-ahorro-route-reason'), /fallback to backup \(primary cooling down\)/);
  await setFault(A, '');
  await sleep(1100); // the cooldown (1 s) ends
  const third = await ask('primary');
  assert.match(third.data.choices[0].message.content, /answer from gpt-4o:/);
  assert.equal(await calls(A), a0 + 1);
  const fourth = await ask('primary');
  assert.equal(fourth.response.headers.get('x-ahorro-model'), 'gpt-4o');

  // Health is visible to operators, keys never are.
  const res = await fetch(`${gw.url}/admin/deployments`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  const text = await res.text();
  assert.ok(!text.includes(PROVIDER_KEY));
  const deps = JSON.parse(text);
  assert.equal(deps.strategy, 'weighted');
  const primary = deps.data.find((d) => d.model_name === 'primary');
  assert.equal(primary.cooling, false);
  assert.ok(primary.failed >= 2 && primary.ok >= 2, JSON.stringify(primary));
  assert.equal((await fetch(`${gw.url}/admin/deployments`)).status, 401);
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  assert.match(metrics, /ahorro_deployment_cooling\{deployment="primary",model="gpt-4o",id="\d+"\} 0/);
  assert.match(metrics, /ahorro_deployment_attempts_total\{deployment="primary",model="gpt-4o",id="\d+",result="failed"\} [1-9]/);
});

test('rpm: a deployment at its limit for the minute answers 429 with Retry-After', async () => {
  let limitedAt = -1;
  for (let i = 0; i < 5 && limitedAt < 0; i++) {
    try { await ask('limited'); } catch (e) {
      assert.equal(e.status, 429);
      assert.ok(Number(e.headers.get('retry-after')) >= 1);
      assert.match(e.message, /rate limit/);
      limitedAt = i;
    }
  }
  // 2 a minute: the third is refused, or the fifth if the minute turned meanwhile.
  assert.ok(limitedAt === 2 || limitedAt === 4, `refused at request ${limitedAt}`);
});

test('rules and the complexity router choose the model and say why', async () => {
  const simple = await ask('auto', 'hi');
  assert.equal(simple.response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
  assert.match(simple.response.headers.get('x-ahorro-route-reason'), /^router auto: tier low \(complexity score 0\.\d\d/);

  const hard = `Step by step: first prove that the sum of the first n odd numbers is n^2 by induction,
then write a Python function that checks it for n up to 10^6 and analyse its time complexity.
\`\`\`python
def check(n):
    return sum(2*k+1 for k in range(n)) == n*n
\`\`\`
Finally, compare the approach with a closed-form derivation and explain the trade-offs in detail.`;
  const h = await ask('auto', hard);
  assert.equal(h.response.headers.get('x-ahorro-model'), 'gpt-4o');
  assert.match(h.response.headers.get('x-ahorro-route-reason'), /router auto: tier high \(complexity score/);

  const complaint = await ask('auto', 'hi', {}, { headers: { 'x-ahorro-tags': 'feature=complaints' } });
  assert.equal(complaint.response.headers.get('x-ahorro-model'), 'gpt-4o');
  assert.match(complaint.response.headers.get('x-ahorro-route-reason'), /^rule 1 \(feature=complaints\) -> strong/);
  const row = await ledgerRow(gw.db, complaint.response.headers.get('x-ahorro-request-id'));
  assert.match(row.route_reason, /rule 1/);
  assert.equal(row.requested_model, 'auto');
  assert.equal(row.deployment, 'strong');
});

test('savings by mechanism: a routed request records its baseline (the router\'s strongest model) and what routing saved', async () => {
  const { response } = await ask('auto', 'hi there');
  assert.equal(response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  // gpt-4o costs about 16x gpt-4o-mini in the catalogue: the same tokens there.
  assert.ok(row.baseline_usd > row.cost_usd * 10, JSON.stringify(row));
  assert.ok(Math.abs(row.saved_routing_usd - (row.baseline_usd - row.cost_usd)) < 1e-12);
  // An alias asked for directly is its own baseline: nothing saved, nothing lost.
  const direct = await ask('cheap', 'hi there');
  const d = await ledgerRow(gw.db, direct.response.headers.get('x-ahorro-request-id'));
  assert.ok(Math.abs(d.baseline_usd - d.cost_usd) < 1e-12);
  assert.equal(d.saved_routing_usd, 0);
  const rep = spawnSync(AHORRO_BIN, ['report', '--db', gw.db, '--by', 'requested_model', '--format', 'json'],
    { encoding: 'utf8' });
  assert.equal(rep.status, 0, rep.stderr);
  const auto = JSON.parse(rep.stdout).requested_model.find((g) => g.requested_model === 'auto');
  assert.ok(auto && auto.saved_routing_usd > 0, rep.stdout.slice(0, 600));
});

test('cascade: the cheap answer is kept when it passes its checks, escalated (both priced) when not', async () => {
  const ok = await ask('frugal', 'what is two plus two');
  assert.equal(ok.response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
  assert.equal(ok.response.headers.get('x-ahorro-route-reason'), 'cascade frugal: step 1, cheap');

  for (const [prompt, check] of [["I'm not sure what a monad is", 'uncertain'], ['[[tokens:0]] say nothing', 'empty']]) {
    const { data, response } = await ask('frugal', prompt);
    assert.equal(response.headers.get('x-ahorro-model'), 'gpt-4o', prompt);
    assert.match(data.choices[0].message.content ?? '', /answer from gpt-4o:|^$/);
    assert.match(response.headers.get('x-ahorro-route-reason'), new RegExp(`cascade to strong after '${check}'`));
    const id = response.headers.get('x-ahorro-request-id');
    const [cheapTry] = await attempts(id, 1);
    assert.equal(cheapTry.status, 200);
    assert.equal(cheapTry.deployment, 'cheap');
    assert.match(cheapTry.error, new RegExp(check));
    if (check === 'uncertain') assert.ok(cheapTry.cost_usd > 0, 'the rejected answer is priced');
    const row = await ledgerRow(gw.db, id);
    assert.equal(row.deployment, 'strong');
    assert.equal(row.attempts, 2);
  }

  const stream = await client.chat.completions.create({
    model: 'frugal', stream: true, messages: [{ role: 'user', content: 'stream it' }],
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.match(text, /answer from gpt-4o: stream it/);
});

test('ahorro router train / eval / score, and a learned router serving in the gateway', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-learn-'));
  try {
    // Labelled outcomes: the cheap model fails the proofs, both answer the easy ones.
    const rows = ['prompt,cheap,strong'];
    for (let i = 0; i < 40; i++) {
      rows.push(`"Prove by induction that the sum of the first ${i + 3} cubes is a square, then write Python code for it.",False,True`);
      rows.push(`"What colour is a ripe banana, question ${i}?",True,True`);
    }
    writeFileSync(join(dir, 'train.csv'), rows.join('\n') + '\n');
    const vec = existsSync(VECTORS) ? ['--vectors', VECTORS] : ['--no-embedding'];
    const run = (args, input) => spawnSync(AHORRO_BIN, args, { encoding: 'utf8', input, timeout: 60000 });
    const train = run(['router', 'train', '--data', join(dir, 'train.csv'), '--cheap', 'cheap',
      '--strong', 'strong', '-o', join(dir, 'model.bin'), ...vec]);
    assert.equal(train.status, 0, train.stderr);
    const ev = run(['router', 'eval', '--data', join(dir, 'train.csv'), '--cheap', 'cheap', '--strong', 'strong',
      '--model', join(dir, 'model.bin'), '--json', ...vec]);
    assert.equal(ev.status, 0, ev.stderr);
    const figures = JSON.parse(ev.stdout);
    assert.equal(figures.prompts, 80);
    assert.ok(figures.router_curve.apgr > 0.5, `apgr ${figures.router_curve.apgr}`);

    const cfg = routingConfig(dir).replace('      - name: frugal', `      - name: learned
        kind: learned
        model_path: ${join(dir, 'model.bin')}
        tiers:
          - { name: high, model: strong, min_score: 0.5 }
          - { name: low, model: cheap }
      - name: frugal`);
    writeFileSync(join(dir, 'ahorro.yaml'), cfg);
    const score = run(['router', 'score', '--config', join(dir, 'ahorro.yaml'), '--router', 'learned', ...vec],
      '{"prompt":"Prove by induction that the sum of the first 9 cubes is a square, then write Python code for it."}\n' +
      '{"messages":[{"role":"user","content":"What colour is a ripe banana?"}]}\nnot json\n');
    const lines = score.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.equal(lines[0].tier, 'high');
    assert.equal(lines[0].model, 'strong');
    assert.ok(lines[0].score > lines[1].score, score.stdout);
    assert.ok(lines[2].error);

    const g = await startGateway({ config: cfg, dir });
    try {
      const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
      const r = await c.chat.completions.create({ model: 'learned', messages: [{ role: 'user',
        content: 'Prove by induction that the sum of the first 12 cubes is a square, then write Python code for it.' }] }).withResponse();
      assert.equal(r.response.headers.get('x-ahorro-model'), 'gpt-4o');
      assert.match(r.response.headers.get('x-ahorro-route-reason'), /^router learned: tier high \(learned score [01]\.\d\d/);
    } finally { await g.stop(); }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('least-latency balancing sends most requests to the faster deployment', async () => {
  const g = await startGateway({ config: (d) => routingConfig(d, { strategy: 'least-latency' }) });
  const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  await setFault(A, 'delay:60');
  try {
    for (let i = 0; i < 6; i++) await c.chat.completions.create({ model: 'pool', messages: [{ role: 'user', content: 'x' }] });
    const a0 = await calls(A), b0 = await calls(B);
    for (let i = 0; i < 60; i++) await c.chat.completions.create({ model: 'pool', messages: [{ role: 'user', content: 'x' }] });
    const a = (await calls(A)) - a0, b = (await calls(B)) - b0;
    // 5% exploration: A expects 60 * 0.05 * 3/4 = 2.25 requests.
    assert.ok(b >= 50, `fast B took ${b} of ${a + b}`);
  } finally {
    await setFault(A, '');
    await g.stop();
    g.cleanup();
  }
});

test('bad routing configs fail at start with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-route-'));
  const base = (routing) => `model_list:
${dep('a', A, 'openai/gpt-4o')}${dep('b', A, 'openai/gpt-4o-mini')}ahorro:
  db: ${join(dir, 'x.db')}
  routing:
${routing}`;
  const cases = [
    ['    fallbacks: { a: [b], b: [a] }\n', /cycle/],
    ['    fallbacks: { a: [nosuch] }\n', /'nosuch', which no model_list entry serves/],
    ['    routers:\n      - name: auto\n        tiers:\n          - { name: high, min_score: 0.5 }\n', /tier has no model/],
    ['    routers:\n      - name: auto\n        tiers:\n          - { name: high, model: ghost }\n', /no model_list entry serves 'ghost'/],
    ['    rules:\n      - when: { tag: x=y }\n        model: ghost\n', /routing rule sends to 'ghost'/],
    ['    strategy: fastest\n', /'strategy' must be/],
  ];
  try {
    for (const [routing, re] of cases) {
      writeFileSync(join(dir, 'c.yaml'), base(routing));
      const r = spawnSync(AHORRO_BIN, ['serve', '--config', join(dir, 'c.yaml'), '--listen', '127.0.0.1:0'],
        { encoding: 'utf8', timeout: 10000 });
      assert.notEqual(r.status, 0, routing);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /c\.yaml/);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
