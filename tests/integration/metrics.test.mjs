// /metrics through the real gateway: the text parses as Prometheus text
// format and is well formed (one TYPE per family, no duplicate series,
// cumulative buckets); after a known workload (plain and streamed calls, an
// exact cache hit, a retried upstream error, an unknown model, embeddings,
// tagged requests) its totals match the ledger; 10,000 requests from 10,000
// users with 10,000 tag values leave the series bounded and no user id in a
// label; and every metric the Grafana dashboard queries exists.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { startFake, startGateway, testConfig, ledger, waitFor, MASTER_KEY } from './lib/harness.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MAX_TAG_VALUES = 20;

let fake, gw, client, anthropic;

before(async () => {
  fake = await startFake();
  gw = await startGateway({
    fake,
    config: (d) => testConfig(fake, d, `  metrics: { tags: [feature, env], max_values: ${MAX_TAG_VALUES} }
  cache: { exact: true }
  routing: { retries: 1, backoff: 0.01 }
  budgets:
    - { name: everything, scope: global, period: month, limit_usd: 1000 }
    - { name: per-user, scope: "user:*", period: day, limit_usd: 5 }
`),
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

const scrape = async () => {
  const r = await fetch(`${gw.url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return r.text();
};

// What a Prometheus server would refuse or silently mangle, checked on the raw text;
// returns the families' types and every sample. (parse-prometheus-text-format folds
// the series of a labelled histogram into one, so histograms are read from these.)
function checkWellFormed(text) {
  const types = new Map();
  const samples = [];
  const seen = new Set();
  const lastBucket = new Map();
  const nameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  for (const line of text.split('\n')) {
    if (!line) continue;
    const t = line.match(/^# TYPE (\S+) (counter|gauge|histogram)$/);
    if (t) {
      assert.ok(!types.has(t[1]), `two TYPE lines for ${t[1]}`);
      types.set(t[1], t[2]);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/);
    assert.ok(m, `malformed line: ${line}`);
    const [, name, , labels = '', value] = m;
    assert.ok(!Number.isNaN(Number(value)), `value of ${line}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(family), `${name} has no TYPE line before it`);
    if (types.get(family) === 'counter') assert.ok(Number(value) >= 0, line);
    const pairs = [...labels.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)];
    assert.equal(pairs.map((p) => p[0]).join(','), labels, `labels of ${line}`);
    const names = pairs.map((p) => p[1]);
    assert.equal(new Set(names).size, names.length, `a label twice in ${line}`);
    for (const n of names) assert.match(n, nameRe);
    samples.push({ name, value: Number(value),
      labels: Object.fromEntries(pairs.map((p) => [p[1], p[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))])) });
    const key = `${name}{${labels}}`;
    assert.ok(!seen.has(key), `duplicate series ${key}`);
    seen.add(key);
    if (name.endsWith('_bucket')) { // cumulative buckets, in order, +Inf last
      const series = `${name}{${labels.replace(/,?le="[^"]*"/, '')}}`;
      const prev = lastBucket.get(series) ?? -1;
      assert.ok(Number(value) >= prev, `buckets of ${series} go down`);
      lastBucket.set(series, Number(value));
    }
    if (name.endsWith('_count') && types.get(family) === 'histogram') {
      const series = `${family}_bucket{${labels}}`;
      assert.equal(lastBucket.get(series), Number(value), `${series}: +Inf is not _count`);
    }
  }
  return { types, samples };
}

const family = (parsed, name) => parsed.find((f) => f.name === name) ?? { metrics: [] };
const sum = (fam, pred = () => true) => fam.metrics.filter((m) => pred(m.labels ?? {}))
  .reduce((a, m) => a + Number(m.value ?? m.sum ?? 0), 0);
const sampleSum = (samples, name, pred = () => true) => samples.filter((s) => s.name === name && pred(s.labels))
  .reduce((a, s) => a + s.value, 0);

const chat = (model, content, { tags, user, stream = false } = {}) => client.chat.completions.create(
  { model, messages: [{ role: 'user', content }], user, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) },
  { headers: tags ? { 'x-ahorro-tags': tags } : {} });

async function drain(p) {
  const s = await p;
  if (s && typeof s[Symbol.asyncIterator] === 'function') for await (const _ of s) { /* read it all */ }
  return s;
}

test('after a known workload the metrics parse and match the ledger', async () => {
  const run = Date.now();
  for (let i = 0; i < 5; i++) await chat('gpt-4o-mini', `plain question ${run} ${i}`, { tags: 'feature=search,env=prod', user: `u${i}` });
  for (let i = 0; i < 3; i++) await drain(chat('gpt-4o-mini', `streamed question ${run} ${i}`, { tags: 'feature=chat', stream: true }));
  await drain(anthropic.messages.stream({ model: 'claude-3-5-haiku-latest', max_tokens: 50,
    messages: [{ role: 'user', content: `anthropic stream ${run}` }] }, { headers: { 'x-ahorro-tags': 'feature=chat,env=dev' } }));
  await chat('gpt-4o-mini', `plain question ${run} 0`, { tags: 'feature=search,env=prod' }); // exact hit
  await chat('priced-by-config', `priced ${run}`, { tags: 'feature=search' });
  await client.embeddings.create({ model: 'text-embedding-3-small', input: `embed me ${run}` });
  await assert.rejects(chat('gpt-4o-mini', `x [[fault:500]] ${run}`, { tags: 'feature=search' }), (e) => e.status === 502);
  await assert.rejects(chat('no-such-model', 'hi'), (e) => e.status === 404);
  const requests = 14;

  const done = await waitFor(() => ledger(gw.db, 'attempt_of IS NULL').length >= requests);
  assert.ok(done, 'ledger rows');
  const rows = ledger(gw.db);
  const reqRows = rows.filter((r) => r.attempt_of === null);
  assert.equal(reqRows.length, requests);
  const text = await scrape();
  const { types, samples } = checkWellFormed(text);
  const parsed = parsePrometheusTextFormat(text);
  for (const f of parsed) assert.equal(f.type, types.get(f.name).toUpperCase(), f.name);
  // the parser and the line check read the same counters
  assert.equal(sum(family(parsed, 'ahorro_cost_usd_total')), sampleSum(samples, 'ahorro_cost_usd_total'));
  const histCount = (name, pred) => sampleSum(samples, `${name}_count`, pred);
  const histSum = (name, pred) => sampleSum(samples, `${name}_sum`, pred);

  // requests, by the labels the ledger has too
  const req = family(parsed, 'ahorro_requests_total');
  assert.equal(sum(req), requests);
  const groups = new Map();
  for (const r of reqRows) {
    const k = `${r.served_model ?? ''}|${r.provider ?? ''}|${r.status}`;
    groups.set(k, (groups.get(k) ?? 0) + 1);
  }
  for (const [k, n] of groups) {
    const [model, provider, status] = k.split('|');
    assert.equal(sum(req, (l) => l.model === model && l.provider === provider && l.status === status), n, k);
  }
  const tagOf = (r, t) => (r.tags ? JSON.parse(r.tags)[t] : undefined) ?? '';
  for (const f of ['search', 'chat', ''])
    assert.equal(sum(req, (l) => l.feature === f), reqRows.filter((r) => tagOf(r, 'feature') === f).length, `feature=${f}`);
  assert.equal(sum(req, (l) => l.env === 'prod'), reqRows.filter((r) => tagOf(r, 'env') === 'prod').length);
  assert.equal(sum(req, (l) => l.route === 'unknown'), 1);
  assert.equal(sum(req, (l) => l.route === 'priced-by-config' && l.model === 'my-llama'), 1);

  // tokens by type and cost: every row, retried attempts included (the spend was real)
  const tok = family(parsed, 'ahorro_tokens_total');
  const col = { input: 'prompt_tokens', output: 'completion_tokens', cached: 'cached_tokens',
    cache_write: 'cache_write_tokens', reasoning: 'reasoning_tokens' };
  for (const [type, c] of Object.entries(col))
    assert.equal(sum(tok, (l) => l.type === type), rows.reduce((a, r) => a + r[c], 0), type);
  assert.ok(sum(tok, (l) => l.type === 'input') > 0);
  const cost = rows.reduce((a, r) => a + (r.cost_usd > 0 ? r.cost_usd : 0), 0);
  assert.ok(cost > 0);
  assert.ok(Math.abs(sum(family(parsed, 'ahorro_cost_usd_total')) - cost) < 1e-9,
    `${sum(family(parsed, 'ahorro_cost_usd_total'))} vs ${cost}`);

  // savings by mechanism: what saved, and what cost more, as two counters
  const mech = { cache: 'saved_usd', routing: 'saved_routing_usd', shaping: 'saved_shaping_usd',
    prompt_cache: 'prompt_cache_saved_usd' };
  for (const [m, c] of Object.entries(mech)) {
    const pos = rows.reduce((a, r) => a + (r[c] > 0 ? r[c] : 0), 0);
    const neg = rows.reduce((a, r) => a + (r[c] < 0 ? -r[c] : 0), 0);
    assert.ok(Math.abs(sum(family(parsed, 'ahorro_savings_usd_total'), (l) => l.mechanism === m) - pos) < 1e-9, m);
    assert.ok(Math.abs(sum(family(parsed, 'ahorro_overspend_usd_total'), (l) => l.mechanism === m) - neg) < 1e-9, m);
  }
  assert.ok(sum(family(parsed, 'ahorro_savings_usd_total'), (l) => l.mechanism === 'cache') > 0);

  // cache results
  const cache = family(parsed, 'ahorro_cache_requests_total');
  const byCache = (v) => reqRows.filter((r) => v.includes(r.cache)).length;
  assert.equal(sum(cache, (l) => l.result === 'exact'), byCache(['exact']));
  assert.equal(byCache(['exact']), 1);
  assert.equal(sum(cache, (l) => l.result === 'miss'), byCache(['miss', 'stored']));

  // upstream errors and retries: the 500 was tried twice (one retry), then answered 502
  const attempts = rows.filter((r) => r.attempt_of !== null);
  assert.equal(attempts.length, 1);
  assert.equal(sum(family(parsed, 'ahorro_upstream_retries_total')), attempts.length);
  assert.equal(sum(family(parsed, 'ahorro_upstream_retries_total'), (l) => l.status === '500' && l.deployment === 'gpt-4o-mini'), 1);
  assert.equal(sum(family(parsed, 'ahorro_upstream_errors_total')), attempts.length + 1);
  assert.equal(sum(family(parsed, 'ahorro_upstream_errors_total'), (l) => l.status === '502'), 1);

  // histograms: one latency observation per request, TTFT per streamed answer
  const dur = 'ahorro_request_duration_seconds';
  assert.equal(histCount(dur), requests);
  assert.ok(Math.abs(histSum(dur) - reqRows.reduce((a, r) => a + r.latency_ms / 1000, 0)) < 1e-6);
  assert.equal(histCount('ahorro_time_to_first_token_seconds'), reqRows.filter((r) => r.ttft_ms !== null && r.ttft_ms >= 0).length);
  // GenAI semantic conventions: every call that reached a provider, tokens as reported
  const upstreamRows = rows.filter((r) => r.provider && (r.attempt_of !== null || r.usage_source === 'provider' || r.status >= 500));
  const genaiDur = 'gen_ai_client_operation_duration_seconds';
  assert.equal(histCount(genaiDur), upstreamRows.length);
  assert.equal(histCount(genaiDur, (l) => l.error_type === '500'), 1);
  const usage = 'gen_ai_client_token_usage';
  const provided = rows.filter((r) => r.usage_source === 'provider');
  assert.equal(histSum(usage, (l) => l.gen_ai_token_type === 'input'), provided.reduce((a, r) => a + r.prompt_tokens, 0));
  assert.equal(histSum(usage, (l) => l.gen_ai_token_type === 'output'), provided.reduce((a, r) => a + r.completion_tokens, 0));
  const usageSeries = samples.filter((x) => x.name === `${usage}_count`);
  assert.ok(usageSeries.some((x) => x.labels.gen_ai_operation_name === 'embeddings'));
  assert.ok(usageSeries.every((x) => x.labels.gen_ai_provider_name && x.labels.gen_ai_request_model && x.labels.gen_ai_response_model));

  // budgets: the global one holds what the ledger spent; a per-user one shows its limit only
  const spent = family(parsed, 'ahorro_budget_spent_usd');
  assert.equal(spent.metrics.length, 1);
  assert.equal(spent.metrics[0].labels.budget, 'everything');
  assert.ok(Math.abs(Number(spent.metrics[0].value) - cost) < 1e-7, `${spent.metrics[0].value} vs ${cost}`);
  assert.deepEqual(family(parsed, 'ahorro_budget_limit_usd').metrics.map((m) => [m.labels.budget, Number(m.value)]),
    [['everything', 1000], ['per-user', 5]]);
  assert.equal(Number(family(parsed, 'ahorro_requests_in_flight').metrics[0].value), 0);
});

test('10,000 users and 10,000 tag values: bounded series, no user id in any label', async () => {
  const before = sum(family(parsePrometheusTextFormat(await scrape()), 'ahorro_requests_total'));
  const N = 10000, CONCURRENCY = 32;
  const users = new Set();
  let next = 0, failed = 0;
  const body = (i) => JSON.stringify({ model: 'tiny', user: `user-${i}-${process.pid}`, messages: [{ role: 'user', content: 'hi' }] });
  const worker = async () => {
    for (let i = next++; i < N; i = next++) {
      users.add(`user-${i}-${process.pid}`);
      const r = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST', body: body(i),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER_KEY}`, 'x-ahorro-tags': `feature=f${i},env=e${i % 3}` },
      });
      await r.arrayBuffer();
      if (r.status !== 200) failed++;
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  assert.equal(failed, 0);
  const text = await scrape();
  checkWellFormed(text);
  const parsed = parsePrometheusTextFormat(text);
  const req = family(parsed, 'ahorro_requests_total');
  assert.equal(sum(req) - before, N);
  // at most MAX_TAG_VALUES feature values (earlier ones included) plus "other"
  const features = new Set(req.metrics.map((m) => m.labels.feature).filter((f) => f !== ''));
  assert.ok(features.size <= MAX_TAG_VALUES + 1, `${features.size} feature values`);
  assert.ok(features.has('other'));
  assert.ok(sum(req, (l) => l.feature === 'other') >= N - MAX_TAG_VALUES);
  assert.ok(req.metrics.length < 100, `${req.metrics.length} request series`);
  const lines = text.split('\n').length;
  assert.ok(lines < 3000, `${lines} lines`);
  for (const f of parsed)
    for (const m of f.metrics)
      for (const v of Object.values(m.labels ?? {}))
        assert.ok(!users.has(v) && !v.startsWith('user-'), `user id ${v} in a label of ${f.name}`);
  const series = family(parsed, 'ahorro_metrics_series');
  assert.equal(Number(series.metrics.find((m) => m.labels.family === 'requests').value), req.metrics.length);
  console.log(`# 10,000 requests in ${Date.now() - t0} ms; ${req.metrics.length} request series, ${lines} lines`);
});

test('every metric the Grafana dashboard queries is in /metrics', async () => {
  const dash = JSON.parse(readFileSync(join(ROOT, 'grafana/ahorro.json'), 'utf8'));
  const exprs = [];
  const walk = (o) => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object') for (const [k, v] of Object.entries(o)) (k === 'expr' || k === 'query') && typeof v === 'string' ? exprs.push(v) : walk(v);
  };
  walk(dash);
  assert.ok(exprs.length >= 10, `${exprs.length} queries`);
  const text = await scrape();
  // metric names: what is left once selectors and by/without clauses (label names) are gone
  const bare = (e) => e.replace(/\{[^}]*\}/g, '').replace(/\b(by|without)\s*\([^)]*\)/g, '');
  const names = new Set(exprs.flatMap((e) => bare(e).match(/\b(ahorro|gen_ai)_[a-z0-9_]+\b/g) ?? []));
  assert.ok(names.size >= 10);
  for (const n of names) assert.match(text, new RegExp(`^${n}[{ ]`, 'm'), `${n} (used by the dashboard)`);
  // the datasource is a variable, so the dashboard imports into any Grafana
  assert.ok(JSON.stringify(dash).includes('${DS_PROMETHEUS}'));
});
