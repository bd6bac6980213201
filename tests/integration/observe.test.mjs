// Request log and traces through the real gateway (docs/observability.md): one JSON line
// per request with who, route, model, tokens, cost, cache, latency and status, never the
// prompt or a key unless prompt logging is on; OTLP/HTTP JSON spans, one per request and
// one per pipeline stage, in the caller's trace when it sends a W3C traceparent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import {
  startFake, startGateway, testConfig, ledgerRow, waitFor, MASTER_KEY, PROVIDER_KEY,
} from './lib/harness.mjs';

let fake, gw, openai, collector;
const posts = []; // bodies the collector received

function startCollector() {
  return new Promise((resolve) => {
    const srv = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        posts.push({ url: req.url, type: req.headers['content-type'], auth: req.headers['x-team'], body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

const spans = () => posts.flatMap((p) => JSON.parse(p.body).resourceSpans
  .flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)));
const attr = (span, key) => {
  const a = span.attributes.find((x) => x.key === key);
  return a && (a.value.stringValue ?? a.value.intValue ?? a.value.doubleValue);
};
const logLines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n')
  .filter(Boolean).map((l) => JSON.parse(l)) : []);

before(async () => {
  collector = await startCollector();
  fake = await startFake();
  gw = await startGateway({
    fake,
    config: (dir) => testConfig(fake, dir, `  logging: { file: ${join(dir, 'requests.jsonl')} }
  tracing:
    endpoint: http://127.0.0.1:${collector.address().port}
    service_name: ahorro-test
    headers: { x-team: observability }
`),
  });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); collector?.close(); });

test('request log: one JSON line per request, the ledger\'s figures, no prompt, no key', async () => {
  const secret = 'the secret ingredient is cardamom';
  const { response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: secret }], user: 'u-42',
  }, { headers: { 'x-ahorro-tags': 'feature=search' } }).withResponse();
  const id = response.headers.get('x-ahorro-request-id');
  const stream = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream it' }], stream: true,
    stream_options: { include_usage: true },
  });
  for await (const _ of stream); // eslint-disable-line no-unused-vars
  await assert.rejects(openai.chat.completions.create({ model: 'wrong-key', messages: [{ role: 'user', content: 'x' }] }));

  const row = await ledgerRow(gw.db, id);
  const file = join(gw.dir, 'requests.jsonl');
  const lines = await waitFor(() => { const l = logLines(file); return l.length >= 3 ? l : null; });
  const line = lines.find((l) => l.request_id === id);
  assert.ok(line, `no line for ${id}`);
  assert.equal(line.msg, 'request');
  assert.equal(line.route, 'gpt-4o-mini');
  assert.equal(line.model, row.served_model);
  assert.equal(line.provider, 'openai');
  assert.equal(line.status, 200);
  assert.equal(line.key_id, 'master');
  assert.equal(line.user, 'u-42');
  assert.deepEqual(line.tags, { feature: 'search' });
  assert.equal(line.prompt_tokens, row.prompt_tokens);
  assert.equal(line.completion_tokens, row.completion_tokens);
  assert.ok(Math.abs(line.cost_usd - row.cost_usd) < 1e-12);
  assert.ok(line.latency_ms > 0);
  assert.match(line.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(lines.some((l) => l.stream === true && l.status === 200 && typeof l.ttft_ms === 'number'));
  const failed = lines.find((l) => l.route === 'wrong-key' && l.msg === 'request');
  assert.ok(failed && failed.status >= 400 && failed.level !== 'info', JSON.stringify(failed));
  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes(secret), 'the prompt must not be logged');
  assert.ok(!text.includes(PROVIDER_KEY) && !text.includes('sk-wrong-provider-key-123'), 'no provider key');
  assert.ok(!text.includes(MASTER_KEY), 'no gateway key');
});

test('traces: a SERVER span with GenAI attributes and a child span per stage, exported as OTLP/HTTP JSON', async () => {
  const { response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'trace me' }],
  }).withResponse();
  const id = response.headers.get('x-ahorro-request-id');
  const row = await ledgerRow(gw.db, id);
  const root = await waitFor(() => spans().find((s) => attr(s, 'ahorro.request_id') === id), 8000);
  assert.ok(root, 'no span for the request');
  const post = posts.find((p) => p.body.includes(id));
  assert.equal(post.url, '/v1/traces');
  assert.match(post.type, /application\/json/);
  assert.equal(post.auth, 'observability', 'configured headers are sent');
  assert.equal(JSON.parse(post.body).resourceSpans[0].resource.attributes[0].value.stringValue, 'ahorro-test');
  assert.equal(root.name, 'chat gpt-4o-mini');
  assert.equal(root.kind, 2);
  assert.match(root.traceId, /^[0-9a-f]{32}$/);
  assert.match(root.spanId, /^[0-9a-f]{16}$/);
  assert.equal(root.parentSpanId, undefined);
  assert.equal(attr(root, 'gen_ai.operation.name'), 'chat');
  assert.equal(attr(root, 'gen_ai.request.model'), 'gpt-4o-mini');
  assert.equal(attr(root, 'gen_ai.response.model'), row.served_model);
  assert.equal(Number(attr(root, 'gen_ai.usage.input_tokens')), row.prompt_tokens);
  assert.equal(Number(attr(root, 'gen_ai.usage.output_tokens')), row.completion_tokens);
  assert.equal(Number(attr(root, 'http.response.status_code')), 200);
  const kids = spans().filter((s) => s.traceId === root.traceId && s.parentSpanId === root.spanId);
  const names = kids.map((s) => s.name).sort();
  for (const n of ['ahorro.auth', 'ahorro.attribute', 'ahorro.guard', 'ahorro.shape', 'ahorro.cache', 'ahorro.route', 'upstream'])
    assert.ok(names.includes(n), `no ${n} span in ${names}`);
  const up = kids.find((s) => s.name === 'upstream');
  assert.equal(up.kind, 3);
  const t = (s, k) => BigInt(s[k]);
  for (const k of kids) {
    assert.ok(t(k, 'startTimeUnixNano') >= t(root, 'startTimeUnixNano'), `${k.name} starts before its request`);
    assert.ok(t(k, 'endTimeUnixNano') <= t(root, 'endTimeUnixNano') + 1000000n, `${k.name} ends after its request`);
  }
  const now = BigInt(Date.now()) * 1000000n;
  assert.ok(now - t(root, 'startTimeUnixNano') < 60n * 1000000000n, 'wall-clock times');
});

test('traces: a W3C traceparent puts the request in the caller\'s trace', async () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736', parent = '00f067aa0ba902b7';
  const { response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'child of yours' }],
  }, { headers: { traceparent: `00-${traceId}-${parent}-01` } }).withResponse();
  const id = response.headers.get('x-ahorro-request-id');
  const root = await waitFor(() => spans().find((s) => attr(s, 'ahorro.request_id') === id), 8000);
  assert.equal(root.traceId, traceId);
  assert.equal(root.parentSpanId, parent);
  // not sampled by the caller: not exported, but still served and logged
  const { response: r2 } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'not sampled' }],
  }, { headers: { traceparent: `00-${traceId.replace('4', '5')}-${parent}-00` } }).withResponse();
  const id2 = r2.headers.get('x-ahorro-request-id');
  await ledgerRow(gw.db, id2);
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(!spans().some((s) => attr(s, 'ahorro.request_id') === id2));
  // a malformed header is ignored: a trace of our own
  const { response: r3 } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'bad header' }],
  }, { headers: { traceparent: '00-zz-00-01' } }).withResponse();
  const id3 = r3.headers.get('x-ahorro-request-id');
  const root3 = await waitFor(() => spans().find((s) => attr(s, 'ahorro.request_id') === id3), 8000);
  assert.ok(root3 && root3.parentSpanId === undefined);
});

test('prompt logging, a collector that is down, and bad settings', async () => {
  // a collector that refuses connections: requests are served, nothing waits
  const down = await startGateway({
    fake,
    config: (dir) => testConfig(fake, dir, `  logging: { file: ${join(dir, 'r.jsonl')}, prompts: true }
  tracing: { endpoint: "http://127.0.0.1:9", sample_ratio: 1 }
`),
  });
  try {
    const c = new OpenAI({ baseURL: `${down.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const t0 = Date.now();
    for (let i = 0; i < 5; i++)
      await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `logged prompt ${i}` }] });
    assert.ok(Date.now() - t0 < 3000);
    const lines = await waitFor(() => { const l = logLines(join(down.dir, 'r.jsonl')); return l.length >= 5 ? l : null; });
    assert.match(lines[0].prompt, /logged prompt 0/);
  } finally { await down.stop(); down.cleanup(); }
  for (const [extra, re] of [
    ['  tracing: { endpoint: "ftp://x" }\n', /tracing.endpoint/],
    ['  tracing: { endpoint: "http://x", sample_ratio: 2 }\n', /sample_ratio/],
    ['  logging: { requets: true }\n', /requets/],
  ]) {
    await assert.rejects(startGateway({ fake, config: (dir) => testConfig(fake, dir, extra) }),
      (e) => { assert.match(String(e), re); assert.match(String(e), /ahorro\.yaml:\d+/); return true; });
  }
});
