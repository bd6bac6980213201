// Spend reporting through the real gateway: requests with different x-ahorro-tags, then
// `ahorro report --by feature` and GET /admin/spend agree with the ledger rows; several
// dimensions group together; forecasts; bad parameters are a 400 in OpenAI's format.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import { AHORRO_BIN, startFake, startGateway, ledger, ledgerRow, MASTER_KEY } from './lib/harness.mjs';

let fake, gw, client;
const ids = [];

before(async () => {
  fake = await startFake();
  gw = await startGateway({ fake });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  const calls = [
    ['feature=support,department=sales', 'alice', 'gpt-4o-mini', 'How do I reset my password?'],
    ['feature=support,department=sales', 'alice', 'gpt-4o-mini', 'Where is my invoice? [[tokens:40]]'],
    ['feature=support, department=sales', 'bob', 'claude-3-5-haiku-latest', 'Cancel my order'],
    ['feature=search,department=product', 'carol', 'gpt-4o-mini', 'Find red shoes [[tokens:80]]'],
    ['feature=search,department=sales', 'dave', 'gpt-4o-mini', 'Find blue shoes'],
    [null, null, 'gpt-4o-mini', 'untagged'],
  ];
  for (const [tags, user, model, content] of calls) {
    const { response } = await client.chat.completions.create(
      { model, messages: [{ role: 'user', content }], ...(user ? { user } : {}) },
      tags ? { headers: { 'x-ahorro-tags': tags } } : {}).withResponse();
    ids.push(response.headers.get('x-ahorro-request-id'));
  }
  for (const id of ids) assert.ok(await ledgerRow(gw.db, id), `ledger row of ${id}`);
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

const tagOf = (row, k) => (row.tags ? JSON.parse(row.tags)[k] : undefined) ?? '(none)';

// What the ledger says, summed in JS: cost, requests (attempt rows apart), tokens.
function expected(keys) {
  const by = new Map();
  for (const r of ledger(gw.db)) {
    const k = keys.map((d) => tagOf(r, d)).join('|');
    const e = by.get(k) ?? { cost: 0, requests: 0, tokens: 0, users: new Map() };
    e.cost += r.cost_usd ?? 0;
    e.tokens += r.prompt_tokens + r.completion_tokens;
    if (r.attempt_of === null) e.requests++;
    e.users.set(r.user ?? '(none)', (e.users.get(r.user ?? '(none)') ?? 0) + (r.cost_usd ?? 0));
    by.set(k, e);
  }
  return by;
}

function report(...args) {
  return execFileSync(AHORRO_BIN, ['report', ...args, '--config', gw.cfgPath], { encoding: 'utf8' });
}

const admin = (q, key = MASTER_KEY) => fetch(`${gw.url}/admin/spend${q}`,
  { headers: key ? { authorization: `Bearer ${key}` } : {} });

test('ahorro report --by feature --format json agrees with the ledger', () => {
  const want = expected(['feature']);
  const rep = JSON.parse(report('--by', 'feature', '--format', 'json'));
  assert.equal(rep.feature.length, want.size);
  for (const g of rep.feature) {
    const e = want.get(g.feature);
    assert.ok(e, `group ${g.feature}`);
    assert.ok(Math.abs(g.cost_usd - e.cost) < 1e-9, `${g.feature}: ${g.cost_usd} vs ${e.cost}`);
    assert.equal(g.requests, e.requests);
    assert.equal(g.total_tokens, e.tokens);
    assert.ok(Math.abs(g.cost_per_request_usd - e.cost / e.requests) < 1e-12);
    // top users: the most expensive first, and each the ledger's figure
    const top = [...e.users.entries()].sort((a, b) => b[1] - a[1]);
    assert.equal(g.top_users[0].user, top[0][0]);
    assert.ok(Math.abs(g.top_users[0].cost_usd - top[0][1]) < 1e-9);
    assert.ok(g.top_prompts.length >= 1 && 'requested_model' in g.top_prompts[0]);
  }
  assert.equal(rep.feature.find((g) => g.feature === 'support').requests, 3);
  assert.ok(rep.feature.find((g) => g.feature === '(none)'), 'untagged requests have their group');
  const sum = rep.feature.reduce((s, g) => s + g.cost_usd, 0);
  assert.ok(Math.abs(rep.$summary.feature.total.cost_usd - sum) < 1e-9);
  // cost is spent: the fake prices real tokens
  assert.ok(sum > 0);
});

test('several dimensions group together; table and CSV show the same groups', () => {
  const want = expected(['feature', 'department']);
  const rep = JSON.parse(report('--by', 'feature,department', '--format', 'json'));
  const rows = rep['feature,department'];
  assert.equal(rows.length, want.size);
  const sales = rows.find((g) => g.feature === 'search' && g.department === 'sales');
  assert.ok(Math.abs(sales.cost_usd - want.get('search|sales').cost) < 1e-9);
  const csv = report('--by', 'feature,department', '--format', 'csv').trim().split('\n');
  assert.match(csv[0], /^feature,department,requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd,/);
  assert.equal(csv.length, 1 + want.size);
  assert.ok(csv.some((l) => l.startsWith('"search","product",1,')));
  const table = report('--by', 'feature,department', '--by', 'model');
  assert.match(table, /Spend by feature,department/);
  assert.match(table, /Spend by model/);
  assert.match(table, /top users: bob [0-9.]+ \(1\); alice [0-9.]+ \(2\)/);
});

test('GET /admin/spend returns the same figures as the CLI, and a forecast', async () => {
  const res = await admin('?group_by=feature,model&since=1d&top=2');
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.deepEqual(body.group_by, ['feature', 'model']);
  const cli = JSON.parse(report('--by', 'feature,model', '--since', '1d', '--top', '2', '--format', 'json'));
  const key = (g) => `${g.group.feature}|${g.group.model}`;
  assert.deepEqual(body.groups.map(key).sort(), cli['feature,model'].map(key).sort());
  for (const g of body.groups) {
    const c = cli['feature,model'].find((x) => key(x) === key(g));
    assert.ok(Math.abs(g.cost_usd - c.cost_usd) < 1e-12);
    assert.equal(g.requests, c.requests);
    assert.deepEqual(g.top_users, c.top_users);
  }
  const want = expected(['feature']);
  const support = body.groups.filter((g) => g.group.feature === 'support').reduce((s, g) => s + g.cost_usd, 0);
  assert.ok(Math.abs(support - want.get('support').cost) < 1e-9);

  const fc = await (await admin('?group_by=feature&forecast=1&period=week')).json();
  assert.equal(fc.forecast.period, 'week');
  const t = fc.forecast.total;
  assert.ok(t.spent_usd > 0 && t.projected_usd >= t.spent_usd);
  assert.ok(t.low_usd <= t.projected_usd && t.high_usd >= t.projected_usd);
  assert.ok(fc.forecast.groups.some((g) => g.feature === 'support'));
  const cliFc = JSON.parse(report('--forecast', '--by', 'feature', '--period', 'week', '--format', 'json'));
  assert.ok(Math.abs(cliFc.feature.total.spent_usd - t.spent_usd) < 1e-9);
});

test('/admin/spend: master key, and bad parameters are a 400 with a clear message', async () => {
  assert.equal((await admin('?group_by=feature', null)).status, 401);
  for (const [q, re] of [
    ['?group_by=feat%3Bure', /cannot group by 'feat;ure'/],
    ["?group_by=x')%20OR%201%3D1--", /cannot group by/],
    ['?group_by=', /group_by is empty/],
    ['?group_by=a,b,c,d,e', /at most 4 dimensions/],
    ['?group_by=feature&since=yesterday', /since and until take/],
    ['?group_by=feature&since=1d&until=2d', /since must be before until/],
    ['?group_by=feature&limit=0', /limit must be/],
    ['?group_by=feature&top=99', /top must be/],
    ['?group_by=feature&forecast=maybe', /forecast must be/],
  ]) {
    const res = await admin(q);
    assert.equal(res.status, 400, q);
    const body = await res.json();
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.code, 'invalid_parameter');
    assert.match(body.error.message, re, q);
  }
  // the CLI refuses the same names, with exit status 2
  const r = spawnSync(AHORRO_BIN, ['report', '--by', 'a"b', '--config', gw.cfgPath], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /cannot group by/);
});
