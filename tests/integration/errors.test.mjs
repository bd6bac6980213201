// Bad input and failing providers: a clear error in the caller's format with the right
// status, never a crash or a hang, and exactly one ledger row each.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFake, startGateway, ledger, ledgerRow, MASTER_KEY, PROVIDER_KEY } from './lib/harness.mjs';

let fake, gw, openai, claude;
before(async () => {
  fake = await startFake();
  gw = await startGateway({ fake });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  claude = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => {
  await gw?.stop();
  await fake?.stop();
  gw?.cleanup();
});

async function raw(path, body, headers = {}) {
  const r = await fetch(`${gw.url}${path}`, {
    method: 'POST', body, headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json', ...headers },
  });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

function openaiError(r, status) {
  assert.equal(r.status, status);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.type);
  assert.ok('param' in r.json.error && 'code' in r.json.error);
}

function anthropicError(r, status, type) {
  assert.equal(r.status, status);
  assert.equal(r.json.type, 'error');
  assert.equal(r.json.error.type, type);
  assert.equal(typeof r.json.error.message, 'string');
}

test('bad JSON: 400 in each format, with a ledger row', async () => {
  const o = await raw('/v1/chat/completions', '{"model": "gpt-4o-mini", "messages": [');
  openaiError(o, 400);
  assert.match(o.json.error.message, /not valid JSON/);
  const row = await ledgerRow(gw.db, o.headers.get('x-ahorro-request-id'));
  assert.equal(row.status, 400);
  assert.match(row.error, /JSON/);
  const a = await raw('/v1/messages', 'not json', { 'anthropic-version': '2023-06-01' });
  anthropicError(a, 400, 'invalid_request_error');
});

test('missing and mistyped fields', async () => {
  openaiError(await raw('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x' }] })), 400);
  const m = await raw('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini' }));
  openaiError(m, 400);
  assert.equal(m.json.error.param, 'messages');
  const t = await raw('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', temperature: 'hot', messages: [{ role: 'user', content: 'x' }] }));
  assert.equal(t.json.error.param, 'temperature');
  openaiError(await raw('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'wizard', content: 'x' }] })), 400);
  openaiError(await raw('/v1/chat/completions', '[1,2,3]'), 400);
  openaiError(await raw('/v1/chat/completions', ''), 400);
  const a = await raw('/v1/messages', JSON.stringify({ model: 'claude-3-5-haiku-latest', messages: [{ role: 'user', content: 'x' }] }));
  anthropicError(a, 400, 'invalid_request_error');
  assert.match(a.json.error.message, /max_tokens/);
  await assert.rejects(claude.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'robot', content: 'x' }] }),
    (e) => e.status === 400);
});

test('unknown model: 404 model_not_found', async () => {
  await assert.rejects(openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(claude.messages.create({ model: 'no-such-model', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && e.error?.error?.type === 'not_found_error');
});

test('oversized body: 413 in the caller\'s format', async () => {
  const big = 'x'.repeat(1100 * 1024);
  const o = await raw('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: big }] }));
  openaiError(o, 413);
  const a = await raw('/v1/messages', JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content: big }] }),
    { 'anthropic-version': '2023-06-01' });
  anthropicError(a, 413, 'request_too_large');
});

test('no key or a wrong key: 401 in the API\'s format', async () => {
  const noKey = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
  assert.equal(noKey.status, 401);
  assert.equal((await noKey.json()).error.code, 'invalid_api_key');
  const bad = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 401);
  const badC = new Anthropic({ baseURL: gw.url, apiKey: 'sk-ah-0000000000000000000000000000000000000000', maxRetries: 0 });
  await assert.rejects(badC.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 401 && e.error?.error?.type === 'authentication_error');
});

test('upstream 429 keeps its status and Retry-After', async () => {
  const r = await raw('/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x [[fault:429]]' }] }));
  openaiError(r, 429);
  assert.equal(r.headers.get('retry-after'), '1');
  const row = await ledgerRow(gw.db, r.headers.get('x-ahorro-request-id'));
  assert.equal(row.status, 429);
  const a = await raw('/v1/messages', JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content: 'x [[fault:429]]' }] }),
    { 'anthropic-version': '2023-06-01' });
  anthropicError(a, 429, 'rate_limit_error');
});

test('upstream 500 becomes 502; a provider 401 never leaks the provider key', async () => {
  await assert.rejects(openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x [[fault:500]]' }] }),
    (e) => e.status === 502);
  const r = await raw('/v1/chat/completions', JSON.stringify({ model: 'wrong-key', messages: [{ role: 'user', content: 'x' }] }));
  openaiError(r, 502);
  assert.ok(!JSON.stringify(r.json).includes('sk-wrong-provider-key-123'));
  assert.ok(!JSON.stringify(r.json).includes(PROVIDER_KEY));
  const row = await ledgerRow(gw.db, r.headers.get('x-ahorro-request-id'));
  assert.ok(!JSON.stringify(row).includes('sk-wrong-provider-key'));
  assert.ok(!gw.logs().includes(PROVIDER_KEY));
});

test('context window exceeded: the provider\'s own error, in the caller\'s format', async () => {
  const words = Array.from({ length: 100 }, (_, i) => `w${i}`).join(' ');
  await assert.rejects(openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: words }] }),
    (e) => e.status === 400 && e.code === 'context_length_exceeded');
});

test('upstream timeout: 504 after the deployment timeout, not a hang', async () => {
  const t0 = Date.now();
  await assert.rejects(openai.chat.completions.create({ model: 'slow', messages: [{ role: 'user', content: 'x [[fault:timeout]]' }] }),
    (e) => e.status === 504);
  assert.ok(Date.now() - t0 < 5000);
  await assert.rejects(claude.messages.create({ model: 'slow-claude', max_tokens: 5, messages: [{ role: 'user', content: 'x [[fault:timeout]]' }] }),
    (e) => e.status === 504);
});

test('reset mid-stream: the client stream ends with an error event', async () => {
  const stream = await openai.chat.completions.create({
    model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'x [[fault:reset]]' }],
  });
  let got = 0;
  await assert.rejects((async () => { for await (const c of stream) got++; })(), /failed|ended|error/i);
  assert.ok(got >= 1, 'some chunks arrived before the reset');
  const cs = claude.messages.stream({ model: 'claude-3-5-haiku-latest', max_tokens: 50, messages: [{ role: 'user', content: 'x [[fault:reset]]' }] });
  await assert.rejects(cs.finalMessage());
  // Cross-format too.
  const x = await openai.chat.completions.create({ model: 'gpt-on-claude', stream: true, messages: [{ role: 'user', content: 'x [[fault:reset]]' }] });
  await assert.rejects((async () => { for await (const c of x); })());
});

test('stalled stream: cut after the idle timeout with an error event', async () => {
  const t0 = Date.now();
  const stream = await openai.chat.completions.create({
    model: 'slow', stream: true, messages: [{ role: 'user', content: 'x [[fault:stall]]' }],
  });
  await assert.rejects((async () => { for await (const c of stream); })());
  assert.ok(Date.now() - t0 < 6000);
  const rows = ledger(gw.db, "status >= 500 AND stream = 1");
  assert.ok(rows.length >= 1);
});

test('every request above left exactly one ledger row, none without a status', async () => {
  const rows = ledger(gw.db);
  const ids = new Set(rows.map((r) => r.request_id));
  assert.equal(ids.size, rows.length);
  for (const r of rows) {
    assert.ok(r.status >= 200, `row ${r.request_id} has status ${r.status}`);
    assert.ok(r.latency_ms >= 0);
    if (r.status >= 400) assert.ok(r.error, `failed row ${r.request_id} has no error`);
  }
});

test('a client that leaves is noticed at once: upstream cancelled, ledger row 499', async () => {
  for (const stream of [false, true]) {
    const ac = new AbortController();
    const started = Date.now();
    const p = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal,
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json', 'x-ahorro-tags': `leaver=${stream}` },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream,
        messages: [{ role: 'user', content: stream ? 'x [[fault:stall]]' : 'x [[delay:20000]]' }] }),
    }).then(async (r) => { for await (const _ of r.body); });
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    await assert.rejects(p);
    const rows = await (async () => {
      for (let i = 0; i < 100; i++) {
        const rs = ledger(gw.db, `tags LIKE '%"leaver":"${stream}"%'`);
        if (rs.length) return rs;
        await new Promise((r) => setTimeout(r, 20));
      }
      return [];
    })();
    assert.equal(rows.length, 1, `no ledger row for the leaving ${stream ? 'stream' : 'call'}`);
    assert.equal(rows[0].status, 499);
    assert.ok(Date.now() - started < 3000, 'noticed well before the provider would answer');
  }
});
