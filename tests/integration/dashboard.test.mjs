// The dashboard in a real browser: traffic through the real gateway (several models, tags,
// streams, a cache hit, an error), then headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens /dashboard?key=..., and the figures it shows are checked against the
// ledger. Also: the key leaves the address bar for sessionStorage, a viewer key reads but cannot
// write or call models, a wrong key gets the key prompt, the page never leaves localhost, and a
// screenshot is kept (build/artifacts/dashboard.png) for CI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startFake, startGateway, testConfig, ledger, waitFor, MASTER_KEY } from './lib/harness.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.AHORRO_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'build/artifacts');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];

let fake, gw, browser, profile, viewerKey;
const requests = []; // every URL the browser asked for

function config(dir) {
  return testConfig(fake, dir, `  cache: { exact: true, ttl: 600 }
  budgets:
    - { name: all-monthly, scope: global, period: month, limit_usd: 5 }
    - { name: per-feature, scope: "tag:feature", period: day, limit_usd: 2 }
`);
}

async function chat(model, content, { tags, stream = false, key = MASTER_KEY } = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json',
      ...(tags ? { 'x-ahorro-tags': tags } : {}) },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content }] }),
  });
  await res.text();
  return res;
}

before(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: the dashboard test needs Debian's chromium ` +
      '(apt-get install chromium, or scripts/deps.sh --test), or AHORRO_CHROMIUM=/path/to/chromium');
  fake = await startFake();
  gw = await startGateway({ fake, config });
  const sent = [
    ['gpt-4o-mini', 'Summarise the report [[tokens:60]]', { tags: 'feature=a' }],
    ['gpt-4o-mini', 'Translate this sentence', { tags: 'feature=a', stream: true }],
    ['gpt-4o-mini', 'What is the capital of France?', { tags: 'feature=b' }],
    ['gpt-4o-mini', 'What is the capital of France?', { tags: 'feature=b' }], // an exact hit
    ['claude-3-5-haiku-latest', 'Write a haiku [[tokens:30]]', { tags: 'feature=b' }],
    ['claude-3-5-haiku-latest', 'Another haiku', { tags: 'feature=b', stream: true }],
    ['tiny', 'small question', {}],
    ['no-such-model', 'an error', { tags: 'feature=a' }],
  ];
  const statuses = [];
  for (const [model, content, opts] of sent) statuses.push((await chat(model, content, opts)).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 200, 404]);
  assert.ok(await waitFor(() => ledger(gw.db).length >= sent.length), 'every request has its ledger row');
  const k = await fetch(`${gw.url}/admin/keys`, {
    method: 'POST', headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ owner: 'ops', role: 'viewer' }),
  });
  assert.equal(k.status, 201);
  const kb = await k.json();
  assert.equal(kb.role, 'viewer');
  viewerKey = kb.key;

  profile = mkdtempSync(join(tmpdir(), 'ahorro-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 900 },
  });
  browser.on('request', (r) => requests.push(r.url()));
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await gw?.stop();
  await fake?.stop();
  gw?.cleanup();
});

// What the ledger says, the way docs/reporting.md defines each figure.
function expected() {
  const rows = ledger(gw.db);
  const reqs = rows.filter((r) => r.attempt_of === null);
  const byModel = new Map();
  for (const r of rows) {
    const m = r.served_model ?? r.requested_model ?? '(none)';
    byModel.set(m, (byModel.get(m) ?? 0) + (r.cost_usd ?? 0));
  }
  const hits = reqs.filter((r) => r.cache === 'exact' || r.cache === 'semantic').length;
  return { rows, reqs, byModel, hits, cost: rows.reduce((s, r) => s + (r.cost_usd ?? 0), 0) };
}

// p50 / p95 by nearest rank over the requests that reached a provider, as /admin/latency.
function percentiles(rows, model, col) {
  const v = rows.filter((r) => r.attempt_of === null && r.status < 400 &&
      !['exact', 'semantic'].includes(r.cache) && (r.served_model ?? r.requested_model) === model &&
      r[col] !== null).map((r) => r[col]).sort((a, b) => a - b);
  const at = (p) => v[Math.ceil(p * v.length) - 1];
  return v.length ? { p50: at(0.5), p95: at(0.95), n: v.length } : null;
}

async function openDashboard(key) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${gw.url}/dashboard?key=${encodeURIComponent(key)}`);
  return { page, errors };
}

const value = async (page, testid) =>
  Number(await page.getAttribute(`[data-testid="${testid}"]`, 'data-value'));
const text = (page, sel) => page.textContent(sel);
const close = (a, b, what, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b}`);

test('the dashboard shows the ledger\'s figures, keeps the key out of the URL, stays on localhost', async () => {
  const t0 = Date.now();
  const { page, errors } = await openDashboard(MASTER_KEY);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15000 });
  await page.waitForSelector('[data-testid="latency-row"]');

  // the key: out of the address bar, kept in this tab's sessionStorage
  const url = new URL(page.url());
  assert.equal(url.pathname, '/dashboard');
  assert.equal(url.search, '', `the key left the address bar: ${page.url()}`);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ahorro.dashboard.key')), MASTER_KEY);

  const e = expected();
  // totals
  assert.equal(await value(page, 'total-requests'), e.reqs.length);
  assert.equal((await text(page, '[data-testid="total-requests"]')).trim(), String(e.reqs.length));
  close(await value(page, 'total-spend'), e.cost, 'total spend');
  assert.ok(e.cost > 0, 'the fake prices its tokens');
  assert.equal(e.hits, 1, 'one exact cache hit');
  close(await value(page, 'total-cache-hit-rate'), e.hits / e.reqs.length, 'cache hit rate');
  assert.equal((await text(page, '[data-testid="total-cache-hit-rate"]')).trim(),
    `${((e.hits / e.reqs.length) * 100).toFixed(1)}%`);
  assert.equal(await value(page, 'total-errors'), e.reqs.filter((r) => r.status >= 400).length);

  // spend by model: one row per model, each the ledger's sum
  const shown = await page.$$eval('[data-testid="model-row"]', (rows) => rows.map((r) => ({
    model: r.dataset.model,
    spend: Number(r.querySelector('[data-testid="model-spend"]').dataset.value),
    requests: Number(r.querySelector('[data-testid="model-requests"]').dataset.value),
  })));
  assert.deepEqual(shown.map((r) => r.model).sort(), [...e.byModel.keys()].sort());
  for (const r of shown) close(r.spend, e.byModel.get(r.model), `spend of ${r.model}`);
  assert.equal(shown.reduce((s, r) => s + r.requests, 0), e.reqs.length);

  // spend over time (by model, the default): the legend adds up to the total
  const legend = await page.$$eval('[data-testid="spend-legend-item"]', (xs) => xs.map((x) => Number(x.dataset.value)));
  close(legend.reduce((s, v) => s + v, 0), e.cost, 'spend chart legend');
  assert.ok((await page.$$('[data-testid="spend-bar"]')).length >= 2, 'bars drawn');

  // split by the feature tag: two series and (none)
  await page.selectOption('[data-testid="dimension"]', 'feature');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="spend-legend-item"]')]
    .some((x) => x.dataset.series === 'a'));
  const byFeature = Object.fromEntries(await page.$$eval('[data-testid="spend-legend-item"]',
    (xs) => xs.map((x) => [x.dataset.series, Number(x.dataset.value)])));
  const featureCost = (f) => e.rows.filter((r) => (JSON.parse(r.tags || '{}').feature ?? '(none)') === f)
    .reduce((s, r) => s + (r.cost_usd ?? 0), 0);
  for (const f of ['a', 'b']) close(byFeature[f], featureCost(f), `feature ${f}`);

  // savings against the baseline, from the same totals
  close(await value(page, 'savings-spend'), e.cost, 'savings: paid');
  close(await value(page, 'savings-cache'), e.reqs.reduce((s, r) => s + (r.saved_usd ?? 0), 0), 'savings: cache');
  close(await value(page, 'savings-baseline'), e.rows.reduce((s, r) => s + (r.baseline_usd ?? 0), 0), 'baseline');

  // latency and TTFT by model
  for (const model of ['gpt-4o-mini', 'claude-3-5-haiku-latest']) {
    const row = `[data-testid="latency-row"][data-model="${model}"]`;
    const lat = percentiles(e.rows, model, 'latency_ms');
    close(Number(await page.getAttribute(`${row} [data-testid="latency-p50"]`, 'data-value')), lat.p50, `${model} p50`);
    close(Number(await page.getAttribute(`${row} [data-testid="latency-p95"]`, 'data-value')), lat.p95, `${model} p95`);
    assert.equal(Number(await page.getAttribute(`${row} [data-testid="latency-count"]`, 'data-value')), lat.n);
    const ttft = percentiles(e.rows, model, 'ttft_ms');
    assert.ok(ttft, `${model} has a streamed request`);
    close(Number(await page.getAttribute(`${row} [data-testid="ttft-p50"]`, 'data-value')), ttft.p50, `${model} TTFT p50`);
  }

  // budgets: the global one has spent what the ledger holds (nano-USD counters: 1e-9 a request)
  const g = '[data-testid="budget-row"][data-budget="all-monthly"]';
  close(Number(await page.getAttribute(`${g} [data-testid="budget-spent"]`, 'data-value')), e.cost, 'budget spent', 1e-7);
  assert.equal(Number(await page.getAttribute(`${g} [data-testid="budget-limit"]`, 'data-value')), 5);
  assert.ok(Number(await page.getAttribute(`${g} [data-testid="budget-projected"]`, 'data-value')) >= e.cost - 1e-7);
  const perFeature = await page.$$eval('[data-testid="budget-row"][data-budget="per-feature"]',
    (xs) => xs.map((x) => x.dataset.scopeValue).sort());
  assert.deepEqual(perFeature, ['a', 'b']);

  // prompts and routes: the dearest prompt is the ledger's dearest (model, user, tags)
  const prompts = await page.$$eval('[data-testid="prompt-spend"]', (xs) => xs.map((x) => Number(x.dataset.value)));
  assert.ok(prompts.length >= 3);
  assert.deepEqual(prompts, [...prompts].sort((a, b) => b - a));
  assert.ok((await page.$$('[data-testid="route-row"]')).length >= 3);

  // experiments: none yet
  assert.ok(await page.isVisible('[data-testid="experiments-empty"]'));
  assert.match(await text(page, '[data-testid="status"]'), /updated at \d\d:\d\d:\d\d/);

  // nothing left localhost, and the page ran without errors under its CSP
  const foreign = requests.filter((u) => !u.startsWith('data:') && new URL(u).hostname !== '127.0.0.1');
  assert.deepEqual(foreign, [], 'requests to other hosts');
  assert.deepEqual(errors, [], 'console errors');

  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = join(ARTIFACTS, 'dashboard.png');
  await page.selectOption('[data-testid="dimension"]', 'model');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="spend-legend-item"]')]
    .some((x) => x.dataset.series === 'gpt-4o-mini'));
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`dashboard screenshot: ${shot} (${Date.now() - t0} ms)`);
  await page.close();
});

test('the page is served with a strict CSP and no data; the data needs a key', async () => {
  const res = await fetch(`${gw.url}/dashboard`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/html/);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
  assert.match(csp, /connect-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|https?:/);
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
  const html = await res.text();
  assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no external URL in the page');
  for (const p of ['/admin/latency', '/admin/budgets', '/admin/experiments', '/admin/spend'])
    assert.equal((await fetch(`${gw.url}${p}`)).status, 401, p);
  const bad = await fetch(`${gw.url}/admin/latency?since=yesterday`, { headers: { authorization: `Bearer ${MASTER_KEY}` } });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.code, 'invalid_parameter');
  assert.equal((await fetch(`${gw.url}/dashboard`, { method: 'POST' })).status, 405);
});

test('a viewer key reads the dashboard and the admin GETs, and nothing else', async () => {
  const h = { authorization: `Bearer ${viewerKey}` };
  for (const p of ['/admin/spend?group_by=model', '/admin/latency', '/admin/budgets', '/admin/experiments',
    '/admin/cache', '/admin/deployments'])
    assert.equal((await fetch(`${gw.url}${p}`, { headers: h })).status, 200, p);
  const post = await fetch(`${gw.url}/admin/keys`, {
    method: 'POST', headers: { ...h, 'content-type': 'application/json' }, body: JSON.stringify({ owner: 'x' }),
  });
  assert.equal(post.status, 403);
  assert.equal((await post.json()).error.type, 'permission_error');
  assert.equal((await fetch(`${gw.url}/admin/keys`, { headers: h })).status, 403);
  assert.equal((await fetch(`${gw.url}/admin/cache`, { method: 'DELETE', headers: h })).status, 403);
  const call = await chat('gpt-4o-mini', 'may a viewer call a model?', { key: viewerKey });
  assert.equal(call.status, 403, 'a viewer key cannot call models');
  const keys = await (await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${MASTER_KEY}` } })).json();
  assert.equal(keys.data.find((k) => k.owner === 'ops').role, 'viewer');

  const { page, errors } = await openDashboard(viewerKey);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15000 });
  assert.equal(new URL(page.url()).search, '');
  assert.equal(await value(page, 'total-requests'), expected().reqs.length);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a wrong key gets the key prompt, and a good key typed there opens the dashboard', async () => {
  const { page } = await openDashboard('sk-ah-not-a-real-key');
  await page.waitForSelector('[data-testid="key-prompt"].open', { timeout: 15000 });
  await page.fill('[data-testid="key-input"]', MASTER_KEY);
  await page.press('[data-testid="key-input"]', 'Enter');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15000 });
  assert.ok(!(await page.isVisible('[data-testid="key-prompt"]')));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ahorro.dashboard.key')), MASTER_KEY);
  await page.close();
});
