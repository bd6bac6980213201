// The official openai SDK against the real gateway, served by the fake provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake, startGateway, ledgerRow, MASTER_KEY, PROVIDER_KEY } from './lib/harness.mjs';

let fake, gw, client;
before(async () => {
  fake = await startFake();
  gw = await startGateway({ fake });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

test('non-streaming chat completion, with ahorro headers and a ledger row', async () => {
  const { data, response } = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello to the gateway' }],
  }).withResponse();
  assert.match(data.choices[0].message.content, /simulated/);
  assert.equal(data.object, 'chat.completion');
  assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
  const id = response.headers.get('x-ahorro-request-id');
  assert.match(id, /^req_[0-9a-f]{28}$/);
  assert.equal(response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
  assert.ok(Number(response.headers.get('x-ahorro-cost')) > 0);
  assert.ok(Number(response.headers.get('x-ahorro-overhead-us')) >= 0);
  assert.equal(response.headers.get('x-ahorro-cache'), 'off'); // no cache configured
  // The provider got the gateway's provider key, never the client's key.
  const last = await fake.last();
  assert.equal(last.headers.authorization, `Bearer ${PROVIDER_KEY}`);
  assert.equal(last.body.model, 'gpt-4o-mini');
  const row = await ledgerRow(gw.db, id);
  assert.equal(row.status, 200);
  assert.equal(row.api, 'openai');
  assert.equal(row.endpoint, 'chat');
  assert.equal(row.requested_model, 'gpt-4o-mini');
  assert.equal(row.served_model, 'gpt-4o-mini');
  assert.equal(row.provider, 'openai');
  assert.equal(row.key_id, 'master');
  assert.equal(row.prompt_tokens, data.usage.prompt_tokens);
  assert.equal(row.completion_tokens, data.usage.completion_tokens);
  assert.equal(row.usage_source, 'provider');
  // gpt-4o-mini: $0.15 / M input, $0.60 / M output.
  const expect = (data.usage.prompt_tokens * 0.15 + data.usage.completion_tokens * 0.6) / 1e6;
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12, `cost ${row.cost_usd} != ${expect}`);
  assert.equal(row.error, null);
});

test('streaming with include_usage: chunks as they come, then usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Stream to me [[tokens:12]]' }],
  });
  let text = '', usage = null, chunks = 0, finish = null;
  for await (const c of stream) {
    chunks++;
    if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    if (c.usage) usage = c.usage;
  }
  assert.ok(chunks >= 12, `only ${chunks} chunks`);
  assert.match(text, /simulated/);
  assert.equal(finish, 'stop');
  assert.equal(usage.completion_tokens, 12);
  assert.equal((await fake.last()).body.stream_options.include_usage, true);
});

test('streaming without include_usage: the gateway still records usage, the client sees none', async () => {
  const { data: stream, response } = await client.chat.completions.create({
    model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi [[tokens:5]]' }],
  }).withResponse();
  let sawUsage = false;
  for await (const c of stream) if (c.usage) sawUsage = true;
  assert.equal(sawUsage, false);
  // The gateway asked the provider for usage anyway.
  assert.equal((await fake.last()).body.stream_options.include_usage, true);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.stream, 1);
  assert.equal(row.completion_tokens, 5);
  assert.ok(row.prompt_tokens > 0);
  assert.ok(row.ttft_ms >= 0);
  assert.ok(row.cost_usd > 0);
});

test('tools and tool calls pass through', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'weather',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } } }];
  const r = await client.chat.completions.create({
    model: 'gpt-4o-mini', tools, tool_choice: 'required',
    messages: [{ role: 'user', content: 'Weather in Paris?' }],
  });
  const call = r.choices[0].message.tool_calls[0];
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'fake', days: 1 });
  assert.deepEqual((await fake.last()).body.tools, tools);
  // Streamed tool calls arrive as deltas the SDK can assemble.
  const stream = client.chat.completions.stream({
    model: 'gpt-4o-mini', tools, tool_choice: 'required', messages: [{ role: 'user', content: 'Weather?' }],
  });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.tool_calls[0].function.name, 'get_weather');
});

test('JSON mode, n and stop sequences', async () => {
  const j = await client.chat.completions.create({
    model: 'gpt-4o-mini', response_format: { type: 'json_object' },
    messages: [{ role: 'user', content: 'Answer in JSON' }],
  });
  assert.equal(JSON.parse(j.choices[0].message.content).simulated, true);
  const n = await client.chat.completions.create({
    model: 'gpt-4o-mini', n: 3, messages: [{ role: 'user', content: 'three please' }],
  });
  assert.equal(n.choices.length, 3);
  const s = await client.chat.completions.create({
    model: 'gpt-4o-mini', stop: ['answer'], messages: [{ role: 'user', content: 'stop early' }],
  });
  assert.ok(!s.choices[0].message.content.includes('answer'));
  assert.deepEqual((await fake.last()).body.stop, ['answer']);
});

test('embeddings (the SDK asks for base64) and the ledger', async () => {
  const { data, response } = await client.embeddings.create({
    model: 'text-embedding-3-small', input: ['hello world', 'second'],
  }).withResponse();
  assert.equal(data.data.length, 2);
  assert.equal(data.data[0].embedding.length, 16);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.endpoint, 'embeddings');
  assert.equal(row.prompt_tokens, data.usage.prompt_tokens);
  assert.equal(row.status, 200);
});

test('models list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('gpt-4o-mini'));
  assert.ok(ids.includes('claude-3-5-haiku-latest'));
});

test('Azure OpenAI deployments use the deployment path, api-version and api-key', async () => {
  const r = await client.chat.completions.create({
    model: 'azure-gpt', messages: [{ role: 'user', content: 'hi azure' }],
  });
  assert.match(r.choices[0].message.content, /simulated/);
  const last = await fake.last();
  assert.equal(last.path, '/openai/deployments/my-deployment/chat/completions');
  assert.match(last.query, /api-version=2024-10-21/);
  assert.equal(last.headers['api-key'], PROVIDER_KEY);
});

test('per-deployment price overrides from the config', async () => {
  const { data, response } = await client.chat.completions.create({
    model: 'priced-by-config', messages: [{ role: 'user', content: 'self hosted' }],
  }).withResponse();
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  const expect = data.usage.prompt_tokens * 1e-6 + data.usage.completion_tokens * 2e-6;
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12);
  assert.equal(row.provider, 'hosted_vllm');
});

test('cached prompt tokens are priced at the cache-read rate', async () => {
  const { data, response } = await client.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long shared prefix [[cached:10]]' }],
  }).withResponse();
  assert.equal(data.usage.prompt_tokens_details.cached_tokens, 10);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.cached_tokens, 10);
  // gpt-4o-mini: input 0.15, cache read 0.075, output 0.6 per million.
  const u = data.usage;
  const expect = ((u.prompt_tokens - 10) * 0.15 + 10 * 0.075 + u.completion_tokens * 0.6) / 1e6;
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12, `${row.cost_usd} != ${expect}`);
});

test('a slow reader pauses the upstream instead of growing the gateway\'s memory', async () => {
  const { request } = await import('node:http');
  const { readFileSync } = await import('node:fs');
  const rss = () => Number(readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) * 1024;
  const before = rss();
  const body = JSON.stringify({ model: 'gpt-4o-mini', stream: true,
    messages: [{ role: 'user', content: 'a long answer [[tokens:200000]]' }] });
  const { id, bytes, peak } = await new Promise((resolve, reject) => {
    const req = request(`${gw.url}/v1/chat/completions`, { method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' } }, (res) => {
      let bytes = 0, peak = 0;
      res.pause(); // read nothing for a while: the provider keeps streaming
      setTimeout(() => {
        peak = rss();
        res.on('data', (d) => { bytes += d.length; });
        res.on('end', () => resolve({ id: res.headers['x-ahorro-request-id'], bytes, peak }));
        res.resume();
      }, 1500);
    });
    req.on('error', reject);
    req.end(body);
  });
  assert.ok(bytes > 10e6, `only ${bytes} bytes streamed`);
  // ASan's quarantine keeps freed memory resident, so RSS says nothing there.
  if (process.env.AHORRO_SAN !== '1')
    assert.ok(peak - before < 8e6, `gateway RSS grew by ${peak - before} bytes while the client was not reading`);
  const row = await ledgerRow(gw.db, id);
  assert.equal(row.status, 200);
  assert.equal(row.completion_tokens, 200000);
});

test('a stream ends with its cost as an SSE comment (headers left before it was known)', async () => {
  for (const model of ['gpt-4o-mini', 'gpt-on-claude']) {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi [[tokens:4]]' }] }) });
    const text = await r.text();
    const m = text.match(/\n: x-ahorro-cost (\d+\.\d+)\n\n$/);
    assert.ok(m, `no cost comment at the end of: ${text.slice(-200)}`);
    const row = await ledgerRow(gw.db, r.headers.get('x-ahorro-request-id'));
    assert.ok(Math.abs(Number(m[1]) - row.cost_usd) < 1e-8);
    assert.ok(text.indexOf('data: [DONE]') < text.lastIndexOf(': x-ahorro-cost'));
  }
});
