// Cost with provider prompt caching is exact: every token kind at its own rate.
//
// Other gateways price every prompt token at the input rate (or count cached tokens
// twice), overcharging cached calls by 1.7x to 7x. Here each call's ledger cost_usd must
// equal, to 1e-12 USD, the cost computed by hand from the catalogue's rates as
// `ahorro prices --model ... --json` reports them: uncached input at the input rate, cache
// reads at the cache-read rate, cache writes at the cache-write rate, output at the output
// rate. OpenAI and Anthropic upstreams, non-streamed and streamed, and across formats.
// Also self-hosted deployments priced from GPU cost and throughput (docs/pricing.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
  startFake, startGateway, testConfig, ledgerRow, MASTER_KEY, PROVIDER_KEY, AHORRO_BIN,
} from './lib/harness.mjs';

const GPU_COST_PER_HOUR = 2.5, THROUGHPUT = 1200;

let fake, gw, openai, claude;

// The test config plus a self-hosted deployment with GPU figures.
function config(dir) {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  return testConfig(fake, dir).replace('model_list:\n', `model_list:
  - model_name: gpu-llama
    litellm_params: { model: hosted_vllm/llama-3.1-8b, api_base: "${o}", api_key: "${PROVIDER_KEY}", gpu_cost_per_hour: ${GPU_COST_PER_HOUR}, throughput_tokens_per_s: ${THROUGHPUT} }
`);
}

before(async () => {
  fake = await startFake();
  gw = await startGateway({ fake, config });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  claude = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

// The price `ahorro prices` says the gateway charges for a model name of the config.
function prices(model) {
  const out = execFileSync(AHORRO_BIN, ['prices', '--config', gw.cfgPath, '--model', model, '--json'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out);
}

// Hand-computed cost in USD: a cache rate the catalogue lacks falls back to the input rate.
function handCost(p, { prompt, cacheRead = 0, cacheWrite = 0, output }) {
  const cr = p.cache_read_mtok ?? p.input_mtok, cw = p.cache_write_mtok ?? p.input_mtok;
  const uncached = prompt - cacheRead - cacheWrite;
  return (uncached * p.input_mtok + cacheRead * cr + cacheWrite * cw + output * p.output_mtok) / 1e6;
}

// What a gateway that prices every prompt token at the input rate would charge.
function naiveCost(p, { prompt, output }) {
  return (prompt * p.input_mtok + output * p.output_mtok) / 1e6;
}

function assertExact(row, expect) {
  assert.ok(row, 'ledger row');
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12, `cost_usd ${row.cost_usd} != ${expect}`);
}

const LONG = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');

test('ahorro prices: the catalogue rates, searched and listed', () => {
  const haiku = prices('claude-3-5-haiku-latest');
  assert.equal(haiku.source, 'catalogue');
  assert.equal(haiku.provider, 'anthropic');
  assert.equal(haiku.deployment, 'claude-3-5-haiku-latest');
  assert.ok(haiku.cache_read_mtok < haiku.input_mtok && haiku.cache_write_mtok > haiku.input_mtok);
  const list = JSON.parse(execFileSync(AHORRO_BIN, ['prices', 'haiku', '--provider', 'anthropic', '--json'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  assert.ok(list.count > 0 && list.models.every((m) => m.provider === 'anthropic' && /haiku/i.test(m.model)));
  // A name outside the config is priced by the catalogue's match rules.
  const dated = JSON.parse(execFileSync(AHORRO_BIN, ['prices', '--model', 'gpt-4o-mini-2024-07-18', '--provider', 'openai', '--json'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  assert.equal(dated.model, 'gpt-4o-mini');
  assert.equal(dated.source, 'catalogue');
});

test('OpenAI upstream, non-streamed: cached prompt tokens at the cache-read rate', async () => {
  const p = prices('gpt-4o-mini');
  const { data, response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${LONG} [[cached:256]] [[tokens:9]]` }],
  }).withResponse();
  assert.equal(data.usage.prompt_tokens_details.cached_tokens, 256);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.prompt_tokens, data.usage.prompt_tokens);
  assert.equal(row.cached_tokens, 256);
  assert.equal(row.cache_write_tokens, 0);
  const u = { prompt: data.usage.prompt_tokens, cacheRead: 256, output: data.usage.completion_tokens };
  assertExact(row, handCost(p, u));
  assert.ok(naiveCost(p, u) > 1.5 * row.cost_usd, 'all prompt tokens at the input rate would overcharge');
});

test('OpenAI upstream, streamed: the usage chunk is priced the same way', async () => {
  const p = prices('gpt-4o-mini');
  const { data: stream, response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `${LONG} [[cached:200]] [[tokens:5]]` }],
  }).withResponse();
  let usage = null;
  for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
  assert.equal(usage.prompt_tokens_details.cached_tokens, 200);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.stream, 1);
  assert.equal(row.cached_tokens, 200);
  assertExact(row, handCost(p, { prompt: usage.prompt_tokens, cacheRead: 200, output: usage.completion_tokens }));
});

test('Anthropic upstream, non-streamed: reads, writes and uncached input each at their rate', async () => {
  const p = prices('claude-3-5-haiku-latest');
  const { data, response } = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50,
    messages: [{ role: 'user', content: `${LONG} [[cached:200]] [[cache_write:80]] [[tokens:11]]` }],
  }).withResponse();
  assert.equal(data.usage.cache_read_input_tokens, 200);
  assert.equal(data.usage.cache_creation_input_tokens, 80);
  const prompt = data.usage.input_tokens + 200 + 80;
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.prompt_tokens, prompt);
  assert.equal(row.cached_tokens, 200);
  assert.equal(row.cache_write_tokens, 80);
  const u = { prompt, cacheRead: 200, cacheWrite: 80, output: data.usage.output_tokens };
  assertExact(row, handCost(p, u));
  // Anthropic's input_tokens excludes cache tokens: pricing only it would undercharge,
  // pricing all prompt tokens at the input rate would overcharge.
  assert.notEqual(row.cost_usd, naiveCost(p, u));
});

test('Anthropic upstream, streamed: usage from message_start and message_delta', async () => {
  const p = prices('claude-3-5-haiku-latest');
  const { data: stream, response } = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50, stream: true,
    messages: [{ role: 'user', content: `${LONG} [[cached:250]] [[cache_write:40]] [[tokens:6]]` }],
  }).withResponse();
  let start = null, output = 0;
  for await (const ev of stream) {
    if (ev.type === 'message_start') start = ev.message.usage;
    if (ev.type === 'message_delta') output = ev.usage.output_tokens;
  }
  assert.equal(start.cache_read_input_tokens, 250);
  assert.equal(start.cache_creation_input_tokens, 40);
  const prompt = start.input_tokens + 250 + 40;
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.stream, 1);
  assert.equal(row.prompt_tokens, prompt);
  assert.equal(row.cached_tokens, 250);
  assert.equal(row.cache_write_tokens, 40);
  assert.equal(row.completion_tokens, 6);
  assertExact(row, handCost(p, { prompt, cacheRead: 250, cacheWrite: 40, output }));
});

test('OpenAI client on an Anthropic model, streamed and not: the same exact cost', async () => {
  const p = prices('gpt-on-claude');
  assert.equal(p.model, 'claude-3-5-haiku-latest');
  const content = `${LONG} [[cached:120]] [[cache_write:60]] [[tokens:4]]`;
  const { data, response } = await openai.chat.completions.create({
    model: 'gpt-on-claude', messages: [{ role: 'user', content }],
  }).withResponse();
  let row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.prompt_tokens, data.usage.prompt_tokens);
  assert.equal(row.cache_write_tokens, 60);
  assertExact(row, handCost(p, { prompt: data.usage.prompt_tokens, cacheRead: 120, cacheWrite: 60, output: 4 }));

  const { data: stream, response: r2 } = await openai.chat.completions.create({
    model: 'gpt-on-claude', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content }],
  }).withResponse();
  for await (const chunk of stream) void chunk;
  row = await ledgerRow(gw.db, r2.headers.get('x-ahorro-request-id'));
  assert.equal(row.cached_tokens, 120);
  assert.equal(row.cache_write_tokens, 60);
  assertExact(row, handCost(p, { prompt: row.prompt_tokens, cacheRead: 120, cacheWrite: 60, output: 4 }));
});

test('self-hosted: GPU cost per hour / 3600 / throughput, input and output alike', async () => {
  const perToken = GPU_COST_PER_HOUR / 3600 / THROUGHPUT;
  const p = prices('gpu-llama');
  assert.equal(p.source, 'config');
  assert.ok(Math.abs(p.input_mtok - perToken * 1e6) < 1e-9);
  assert.ok(Math.abs(p.output_mtok - perToken * 1e6) < 1e-9);
  const { data, response } = await openai.chat.completions.create({
    model: 'gpu-llama', messages: [{ role: 'user', content: 'What does a GPU hour cost? [[tokens:30]]' }],
  }).withResponse();
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.provider, 'hosted_vllm');
  assert.ok(row.cost_usd > 0, 'self-hosted is never free');
  const expect = (data.usage.prompt_tokens + data.usage.completion_tokens) * perToken;
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12, `${row.cost_usd} != ${expect}`);
});

test('bad GPU pricing in the config: refused at start with file:line', async () => {
  const o = `http://127.0.0.1:${fake.port}/v1`;
  const entry = (params) => `model_list:
  - model_name: gpu-bad
    litellm_params: { model: hosted_vllm/llama, api_base: "${o}", ${params} }
`;
  const cases = [
    ['gpu_cost_per_hour: 2', /ahorro\.yaml:\d+: .*'gpu_cost_per_hour' needs 'throughput_tokens_per_s'/],
    ['throughput_tokens_per_s: 500', /ahorro\.yaml:\d+: .*'throughput_tokens_per_s' needs 'gpu_cost_per_hour'/],
    ['gpu_cost_per_hour: 0, throughput_tokens_per_s: 500', /ahorro\.yaml:\d+: 'gpu_cost_per_hour' must be positive/],
    ['gpu_cost_per_hour: 2, throughput_tokens_per_s: -5', /ahorro\.yaml:\d+: 'throughput_tokens_per_s' must be between/],
    ['gpu_cost_per_hour: two, throughput_tokens_per_s: 5', /ahorro\.yaml:\d+: 'gpu_cost_per_hour' must be a number/],
    ['gpu_cost_per_hour: 2, throughput_tokens_per_s: 500, input_cost_per_token: 0.000001', /ahorro\.yaml:\d+: .*not both/],
  ];
  for (const [params, why] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'ahorro-it-'));
    try {
      await assert.rejects(startGateway({ fake, dir, config: (d) => testConfig(fake, d).replace('model_list:\n', entry(params)) }),
        (e) => why.test(e.message) && /exited 1/.test(e.message), params);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
