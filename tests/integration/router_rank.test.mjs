// router_rank.test.mjs - a router ranked by expected accuracy gain per extra dollar
// (rank: gain_per_dollar): the strong tier for a short hard prompt, the cheap one for a very
// long prompt of about the same score (its extra cost on the strong model is far higher),
// the request's max_tokens in the estimate, the gain in the route reason and the ledger,
// the fallback to the score when a price is unknown, and a bad threshold stopping the start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startFake, startGateway, ledgerRow, MASTER_KEY, PROVIDER_KEY, AHORRO_BIN } from './lib/harness.mjs';

let fake, gw, client;

const dep = (name, model, extra = '') =>
  `  - model_name: ${name}
    litellm_params: { model: openai/${model}, api_base: "http://127.0.0.1:${fake.port}/v1", api_key: "${PROVIDER_KEY}"${extra} }
`;

// USD per token: strong $10 / $30 per million, cheap $0.50 / $1.50.
const STRONG_PRICE = ', input_cost_per_token: 0.00001, output_cost_per_token: 0.00003';
const CHEAP_PRICE = ', input_cost_per_token: 0.0000005, output_cost_per_token: 0.0000015';

function config(dir, routers) {
  return `model_list:
${dep('strong', 'gpt-4o', STRONG_PRICE)}${dep('cheap', 'gpt-4o-mini', CHEAP_PRICE)}${dep('mystery', 'fake-unpriced-model-zz9')}general_settings:
  master_key: ${MASTER_KEY}
ahorro:
  db: ${join(dir, 'ahorro.db')}
  threads: 2
  routing:
    routers:
${routers}`;
}

// Expected gain per extra USD = (2s - 1) / extra, extra = in * 9.5e-6 + out * 28.5e-6 with in
// = characters / 4 + 8 and out = 100 (or max_tokens when smaller). With complexity scores near
// 0.95: the short prompt (~96 input tokens) ~2.4e2/USD; the medium one (~460) ~1.2e2, ~1.9e2
// with max_tokens 16; the long one (~3,750) ~2.4e1. The threshold, 150, sits between.
const ROUTERS = `      - name: auto
        kind: complexity
        rank: gain_per_dollar
        expected_output_tokens: 100
        tiers:
          - { name: high, model: strong, min_gain_per_usd: 150 }
          - { name: low, model: cheap }
      - name: unpriced
        rank: gain_per_dollar
        tiers:
          - { name: high, model: mystery, min_gain_per_usd: 150 }
          - { name: low, model: cheap }
      - name: by-score
        tiers:
          - { name: high, model: strong, min_score: 0.5 }
          - { name: low, model: cheap }
`;

const HARD = `Step by step: first prove that the sum of the first n odd numbers is n^2 by induction,
then write a Python function that checks it for n up to 10^6 and analyse its time complexity.
\`\`\`python
def check(n):
    return sum(2*k+1 for k in range(n)) == n*n
\`\`\`
Finally, compare the approach with a closed-form derivation and explain the trade-offs in detail.`;
const CONTEXT = 'The quarterly report lists revenue, costs and headcount for each region. ';
const MEDIUM = `${HARD}\n\nContext:\n${CONTEXT.repeat(20)}`;
const LONG = `${HARD}\n\nContext:\n${CONTEXT.repeat(200)}`;

before(async () => {
  fake = await startFake();
  gw = await startGateway({ config: (d) => config(d, ROUTERS) });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => {
  await gw?.stop();
  await fake?.stop();
  gw?.cleanup();
});

const ask = (model, content, extra = {}) =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content }], ...extra }).withResponse();

// "router auto: tier high (complexity score 0.95, gain 2.4e2/USD >= 1.5e2)" -> its parts.
function parse(reason) {
  const m = reason.match(/^router (\S+): tier (\S+) \(complexity score (\d\.\d\d), gain (-?\d\.\de-?\d+)\/USD (>=|<) (\d\.\de-?\d+)\)$/);
  assert.ok(m, `reason: ${reason}`);
  return { router: m[1], tier: m[2], score: Number(m[3]), gain: Number(m[4]), cmp: m[5], min: Number(m[6]) };
}

test('a short hard prompt goes to the strong tier, a long one of about the same score to the cheap tier', async () => {
  const short = await ask('auto', HARD);
  const s = parse(short.response.headers.get('x-ahorro-route-reason'));
  assert.equal(short.response.headers.get('x-ahorro-model'), 'gpt-4o');
  assert.equal(s.tier, 'high');
  assert.equal(s.cmp, '>=');
  assert.equal(s.min, 150);
  assert.ok(s.gain >= 150 && s.gain < 400, `short gain ${s.gain}`);

  const long = await ask('auto', LONG);
  const l = parse(long.response.headers.get('x-ahorro-route-reason'));
  assert.equal(long.response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
  assert.equal(l.tier, 'low');
  assert.equal(l.cmp, '<');
  assert.ok(l.gain > 0 && l.gain < 50, `long gain ${l.gain}`);
  // About the same score: what differs is the price of the upgrade.
  assert.ok(Math.abs(l.score - s.score) <= 0.1, `scores ${s.score} and ${l.score}`);
  assert.ok(s.gain / l.gain > 5, `gains ${s.gain} and ${l.gain}`);

  // A router ranked by score sends both to the strong tier.
  for (const p of [HARD, LONG]) {
    const r = await ask('by-score', p);
    assert.equal(r.response.headers.get('x-ahorro-model'), 'gpt-4o');
  }

  // The ledger keeps the reason.
  const row = await ledgerRow(gw.db, long.response.headers.get('x-ahorro-request-id'));
  assert.equal(row.deployment, 'cheap');
  assert.match(row.route_reason, /^router auto: tier low \(complexity score \d\.\d\d, gain .*\/USD < 1\.5e2\)$/);
});

test("the request's max_tokens, when smaller, is the output priced", async () => {
  const dflt = await ask('auto', MEDIUM);
  const d = parse(dflt.response.headers.get('x-ahorro-route-reason'));
  assert.equal(d.tier, 'low', `default output (100 tokens): gain ${d.gain}`);
  assert.equal(dflt.response.headers.get('x-ahorro-model'), 'gpt-4o-mini');

  const capped = await ask('auto', MEDIUM, { max_tokens: 16 });
  const c = parse(capped.response.headers.get('x-ahorro-route-reason'));
  assert.equal(c.tier, 'high', `max_tokens 16: gain ${c.gain}`);
  assert.equal(capped.response.headers.get('x-ahorro-model'), 'gpt-4o');
  assert.ok(c.gain > d.gain);

  const bigger = await ask('auto', MEDIUM, { max_completion_tokens: 4000 }); // larger: 100 stays
  assert.equal(parse(bigger.response.headers.get('x-ahorro-route-reason')).gain, d.gain);
});

test('an unknown price ranks by score at 0.5 and says so', async () => {
  const r = await ask('unpriced', HARD);
  assert.equal(r.response.headers.get('x-ahorro-model'), 'fake-unpriced-model-zz9');
  assert.match(r.response.headers.get('x-ahorro-route-reason'),
    /^router unpriced: tier high \(complexity score 0\.\d\d >= 0\.5: no price known for 'mystery', ranked by score\)$/);
  const low = await ask('unpriced', 'hi');
  assert.equal(low.response.headers.get('x-ahorro-model'), 'gpt-4o-mini');
  assert.match(low.response.headers.get('x-ahorro-route-reason'), /tier low \(complexity score 0\.\d\d < 0\.5: no price known/);
});

test('a gain_per_dollar router with a bad threshold stops the start with file and line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-rank-'));
  const cases = [
    [`      - name: auto
        rank: gain_per_dollar
        tiers:
          - { name: high, model: strong, min_gain_per_usd: -3 }
          - { name: low, model: cheap }
`, /c\.yaml:\d+: router 'auto', tier 'high': 'min_gain_per_usd' must be a positive number/],
    [`      - name: auto
        rank: gain_per_dollar
        tiers:
          - { name: high, model: strong, min_score: 0.5 }
          - { name: low, model: cheap }
`, /c\.yaml:\d+: .*threshold is 'min_gain_per_usd', not 'min_score'/],
  ];
  try {
    for (const [routers, re] of cases) {
      writeFileSync(join(dir, 'c.yaml'), config(dir, routers));
      const r = spawnSync(AHORRO_BIN, ['serve', '--config', join(dir, 'c.yaml'), '--listen', '127.0.0.1:0'],
        { encoding: 'utf8', timeout: 10000 });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, re);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
