// The gateway as a service: keys, health, metrics, keyless local mode, config errors,
// and SIGTERM draining the ledger.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { AHORRO_BIN, startFake, startGateway, testConfig, ledger, ledgerRow, MASTER_KEY, waitFor } from './lib/harness.mjs';

test('virtual keys: CLI and admin API, hashed at rest, tags on the ledger, revocation', async () => {
  const fake = await startFake();
  const gw = await startGateway({ fake });
  try {
    const out = execFileSync(AHORRO_BIN, ['keys', 'create', '--owner', 'alice', '--tags', 'team=search,env=prod', '--json', '--config', gw.cfgPath], { encoding: 'utf8' });
    const created = JSON.parse(out);
    assert.match(created.key, /^sk-ah-[0-9a-f]{40}$/);
    const dump = execFileSync('sqlite3', [gw.db, 'SELECT * FROM keys'], { encoding: 'utf8' });
    assert.ok(!dump.includes(created.key), 'the key itself is not stored');
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: created.key, maxRetries: 0 });
    const { response } = await c.chat.completions.create({ model: 'gpt-4o-mini', user: 'u-42',
      messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-ahorro-tags': 'feature=chat, department=sales' } }).withResponse();
    const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
    assert.equal(row.key_id, created.id);
    assert.equal(row.owner, 'alice');
    assert.equal(row.user, 'u-42');
    assert.deepEqual(JSON.parse(row.tags), { department: 'sales', env: 'prod', feature: 'chat', team: 'search' });
    // Malformed tags are refused, not dropped.
    await assert.rejects(c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'x-ahorro-tags': 'novalue' } }), (e) => e.status === 400);
    // Admin API: needs the master key.
    const denied = await fetch(`${gw.url}/admin/keys`, { method: 'POST', body: '{"owner":"bob"}' });
    assert.equal(denied.status, 401);
    const made = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}` },
      body: JSON.stringify({ owner: 'bob', tags: { team: 'ads' } }) });
    assert.equal(made.status, 201);
    const bob = await made.json();
    const list = await (await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${MASTER_KEY}` } })).json();
    assert.ok(list.data.some((k) => k.id === bob.id && k.owner === 'bob'));
    assert.ok(!JSON.stringify(list).includes(bob.key));
    const bc = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: bob.key, maxRetries: 0 });
    await bc.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const del = await fetch(`${gw.url}/admin/keys/${bob.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${MASTER_KEY}` } });
    assert.equal(del.status, 200);
    // Revocation applies once the per-thread cache entry expires (5 s).
    const refused = await waitFor(async () => {
      try { await bc.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }); return false; }
      catch (e) { return e.status === 401; }
    }, 8000);
    assert.ok(refused, 'a revoked key is refused');
    // ahorro report reads the same ledger.
    const rep = JSON.parse(execFileSync(AHORRO_BIN, ['report', '--by', 'model', '--by', 'key', '--format', 'json', '--config', gw.cfgPath], { encoding: 'utf8' }));
    assert.ok(rep.model.find((r) => r.model === 'gpt-4o-mini').requests >= 2);
    assert.ok(rep.key.find((r) => r.key === created.id));
    const table = execFileSync(AHORRO_BIN, ['report', '--config', gw.cfgPath], { encoding: 'utf8' });
    assert.match(table, /Spend by model/);
    assert.match(table, /Spend by key/);
  } finally {
    await gw.stop(); await fake.stop(); gw.cleanup();
  }
});

test('health and Prometheus metrics', async () => {
  const fake = await startFake();
  const gw = await startGateway({ fake });
  try {
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const h = await fetch(`${gw.url}/health`);
    assert.equal(h.status, 200);
    assert.equal((await h.json()).status, 'ok');
    const m = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(m, /# TYPE ahorro_requests_total counter/);
    assert.match(m, /ahorro_requests_total\{model="gpt-4o-mini",provider="openai",status="200",route="gpt-4o-mini"\} 1/);
    assert.match(m, /ahorro_tokens_total\{model="gpt-4o-mini",provider="openai",status="200",route="gpt-4o-mini",type="input"\} \d+/);
    assert.match(m, /ahorro_cost_usd_total\{[^}]*\} 0\.0000\d+/);
    assert.match(m, /ahorro_request_duration_seconds_bucket\{[^}]*le="\+Inf"\} 1/);
  } finally {
    await gw.stop(); await fake.stop(); gw.cleanup();
  }
});

test('keyless local mode without a master key', async () => {
  const fake = await startFake();
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-it-'));
  const config = testConfig(fake, dir).replace(/general_settings:\n  master_key: .*\n/, '');
  const gw = await startGateway({ fake, config });
  try {
    assert.match(gw.logs(), /no master key/);
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'anything', maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.match(r.choices[0].message.content, /simulated/);
    // A virtual key that does not exist is still refused.
    const v = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-ah-ffffffffffffffffffffffffffffffffffffffff', maxRetries: 0 });
    await assert.rejects(v.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }), (e) => e.status === 401);
  } finally {
    await gw.stop(); await fake.stop(); gw.cleanup();
  }
});

test('invalid config fails at start with file, line and reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-cfg-'));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'model_list:\n  - model_name: a\n    litellm_params:\n      model: nosuchprovider/x\n');
  let r = spawnSync(AHORRO_BIN, ['serve', '--config', bad], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`${bad}:4: unknown provider 'nosuchprovider'`));
  writeFileSync(bad, 'model_list:\n  - model_name: a\n    litellm_params: { model: openai/x, timeout: soon }\n');
  r = spawnSync(AHORRO_BIN, ['serve', '--config', bad], { encoding: 'utf8' });
  assert.match(r.stderr, /bad.yaml:3: 'timeout' must be a number/);
  writeFileSync(bad, 'model_list: [\n');
  r = spawnSync(AHORRO_BIN, ['serve', '--config', bad], { encoding: 'utf8' });
  assert.match(r.stderr, /bad.yaml:\d+: YAML error/);
  writeFileSync(bad, 'ahorro:\n  listne: 1\n');
  r = spawnSync(AHORRO_BIN, ['serve', '--config', bad], { encoding: 'utf8' });
  assert.match(r.stderr, /bad.yaml:2: unknown setting 'ahorro.listne'/);
  r = spawnSync(AHORRO_BIN, ['serve', '--config', join(dir, 'missing.yaml')], { encoding: 'utf8' });
  assert.match(r.stderr, /missing.yaml: cannot open/);
});

test('SIGTERM drains in-flight requests and the ledger completely', async () => {
  const fake = await startFake();
  const gw = await startGateway({ fake });
  try {
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const N = 40;
    const pending = Array.from({ length: N }, (_, i) => c.chat.completions.create({
      model: 'gpt-4o-mini', messages: [{ role: 'user', content: `request ${i} [[delay:1000]]` }] }));
    // Signal once every request is in flight upstream.
    const inFlight = await waitFor(async () => (await (await fetch(`${fake.url}/_fake/stats`)).json()).requests >= N, 8000);
    assert.ok(inFlight, 'all requests reached the provider');
    const exit = gw.stop('SIGTERM');
    const results = await Promise.allSettled(pending);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    assert.equal(ok, N, 'in-flight requests finish during the drain');
    const ex = await exit;
    assert.equal(ex.code, 0);
    assert.equal(ledger(gw.db).length, N);
  } finally {
    await fake.stop(); gw.cleanup();
  }
});

test('slow senders are cut off, oversized headers refused, the gateway stays up', async () => {
  const fake = await startFake();
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-it-'));
  const config = testConfig(fake, dir).replace('limits: { max_body_bytes: 1048576 }',
    'limits: { max_body_bytes: 1048576, client_timeout_s: 1, max_header_bytes: 8192 }');
  const gw = await startGateway({ fake, config });
  const { connect } = await import('node:net');
  const closedWithin = (payload) => new Promise((resolve) => {
    const t0 = Date.now();
    const s = connect(gw.port, '127.0.0.1', () => s.write(payload));
    let data = '';
    s.on('data', (d) => { data += d; });
    s.on('close', () => resolve({ ms: Date.now() - t0, data }));
    s.on('error', () => {});
    setTimeout(() => s.destroy(), 10000);
  });
  try {
    // A body that never completes, and headers that never end.
    const body = await closedWithin('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mo');
    assert.ok(body.ms < 5000, `slow body held the connection ${body.ms} ms`);
    const head = await closedWithin('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');
    assert.ok(head.ms < 5000, `slow headers held the connection ${head.ms} ms`);
    const big = await closedWithin(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
    assert.ok(!/^HTTP\/1\.1 200/.test(big.data), 'oversized headers are not served');
    const h = await fetch(`${gw.url}/health`);
    assert.equal(h.status, 200);
  } finally {
    await gw.stop(); await fake.stop(); gw.cleanup();
  }
});

test('a stream whose tokens come slower than the client timeout is not cut off', async () => {
  const fake = await startFake(['--itl-ms', '1300']);
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-it-'));
  const config = testConfig(fake, dir).replace('limits: { max_body_bytes: 1048576 }',
    'limits: { max_body_bytes: 1048576, client_timeout_s: 1 }');
  const gw = await startGateway({ fake, config });
  try {
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
    const stream = await c.chat.completions.create({ model: 'gpt-4o-mini', stream: true,
      messages: [{ role: 'user', content: 'slowly [[tokens:3]]' }] });
    let text = '';
    for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
    assert.equal(text.trim().split(/\s+/).length, 3);
  } finally {
    await gw.stop(); await fake.stop(); gw.cleanup();
  }
});
