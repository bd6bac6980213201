// Prompt and context shaping through the real gateway (docs/shaping.md): what the
// provider receives is the shaped prompt; the answer says what was done and what it
// saved; the ledger prices it; templates fill prompts; bad controls are clear errors in
// the caller's format; `ahorro prompts audit` names routes a prompt cache would serve.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
  startFake, startGateway, testConfig, ledgerRow, ledger, waitFor, MASTER_KEY, AHORRO_BIN,
} from './lib/harness.mjs';

const DATA = fileURLToPath(new URL('../../build/data', import.meta.url));

let fake, gw, openai, claude;

const SHAPING = `  shaping:
    lossless: true
    context: { strategy: sliding_window, max_turns: 2 }
    routes:
      claude-3-5-haiku-latest: { context: { strategy: token_budget, max_tokens: 120 } }
      tiny: { context: { max_turns: 0, max_tokens: 60 } }
      claude-on-gpt: { context: { strategy: summarize, summarizer: gpt-4o-mini, max_turns: 2, summary_tokens: 64 } }
      slow: { context: { strategy: summarize, summarizer: wrong-key, max_turns: 2 } }
    features:
      support: { output: { preset: factual, max_tokens: 40 } }
`;

before(async () => {
  fake = await startFake();
  gw = await startGateway({
    fake, config: (dir) => testConfig(fake, dir, SHAPING),
    env: { AHORRO_TOKENIZERS_DIR: DATA },
  });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
  claude = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

async function lastUpstream() {
  return (await (await fetch(`http://127.0.0.1:${fake.port}/_fake/last`)).json()).body;
}

function turns(n) {
  const m = [{ role: 'system', content: 'You answer questions about the   solar system.' }];
  for (let i = 1; i <= n; i++) {
    m.push({ role: 'user', content: `Question ${i}: how far is planet ${i} from the sun?` });
    m.push({ role: 'assistant', content: `Planet ${i} is about ${i * 100} million km away.` });
  }
  m.push({ role: 'user', content: 'Which planet is the largest?' });
  return m;
}

test('sliding window: the provider gets the system prompt and the last turns; headers and ledger say so', async () => {
  const { data, response } = await openai.chat.completions
    .create({ model: 'gpt-4o-mini', messages: turns(6) }).withResponse();
  assert.match(data.choices[0].message.content, /largest/);
  const sent = await lastUpstream();
  assert.equal(sent.messages.length, 1 + 2 + 1);
  assert.equal(sent.messages[0].role, 'system');
  assert.equal(sent.messages[0].content, 'You answer questions about the solar system.'); // lossless
  assert.match(sent.messages[1].content, /^Question 6/);
  assert.equal(sent.messages.at(-1).content, 'Which planet is the largest?');
  assert.equal(response.headers.get('x-ahorro-shape'), 'lossless,sliding_window');
  const saved = Number(response.headers.get('x-ahorro-tokens-saved'));
  assert.ok(saved > 50, `saved ${saved}`);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.shape, 'lossless,sliding_window');
  assert.equal(row.shape_tokens_saved, saved);
  assert.ok(row.saved_shaping_usd > 0, 'priced at the input rate');
  // gpt-4o-mini's input rate from the catalogue: 0.15 USD per million tokens
  assert.ok(Math.abs(row.saved_shaping_usd - saved * 0.15e-6) < 1e-12, `${row.saved_shaping_usd}`);
});

test('streaming is shaped too', async () => {
  const stream = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: turns(5), stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.match(text, /largest/);
  assert.equal((await lastUpstream()).messages.length, 4);
});

test('Anthropic client to an Anthropic provider: token budget, the least relevant turns go', async () => {
  const messages = [
    { role: 'user', content: 'My booking code is ZX81 for the Lisbon flight on May 3.' },
    { role: 'assistant', content: 'Thanks, I have noted booking ZX81.' },
    { role: 'user', content: 'Tell me a fun fact about octopuses and their three hearts please.' },
    { role: 'assistant', content: 'Octopuses have three hearts and blue blood, which is copper based.' },
    { role: 'user', content: 'What is a good recipe for a lemon cake with a crunchy glaze on top?' },
    { role: 'assistant', content: 'Mix butter, sugar, eggs, flour and lemon zest; glaze with sugar and juice.' },
    { role: 'user', content: 'What was my booking code for the flight?' },
  ];
  const resp = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50, system: 'You are a travel assistant.', messages,
  }).withResponse();
  assert.equal(resp.data.type, 'message');
  const sent = await lastUpstream();
  const text = JSON.stringify(sent.messages);
  assert.match(text, /ZX81 for the Lisbon/, 'the relevant turn is kept');
  assert.ok(sent.messages.length < messages.length, 'some turns dropped');
  assert.equal(sent.messages[0].role, 'user');
  assert.equal(sent.system, 'You are a travel assistant.');
  assert.match(resp.response.headers.get('x-ahorro-shape'), /token_budget/);

  // streamed, the same shaping
  const stream = claude.messages.stream({
    model: 'claude-3-5-haiku-latest', max_tokens: 50, system: 'You are a travel assistant.', messages,
  });
  const final = await stream.finalMessage();
  assert.equal(final.type, 'message');
  assert.ok((await lastUpstream()).messages.length < messages.length);
});

test('a context array: top-K chunks kept, rendered after the system prompt', async () => {
  const context = [
    'The cafeteria opens at 8 am on weekdays.',
    'Employees get 25 days of paid vacation per year, plus public holidays.',
    'The parking garage is on level minus two.',
    'Expense reports are due by the fifth of each month.',
  ];
  const { data, response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'system', content: 'Answer from the documents.' },
      { role: 'user', content: 'How many vacation days do employees get?' }],
    context, shape: { top_k: 1 },
  }).withResponse();
  assert.ok(data.choices[0].message.content);
  const sent = await lastUpstream();
  assert.equal(sent.context, undefined, 'the gateway field is not sent upstream');
  assert.equal(sent.shape, undefined);
  assert.equal(sent.messages[1].role, 'system');
  assert.match(sent.messages[1].content, /25 days/);
  assert.doesNotMatch(sent.messages[1].content, /parking|cafeteria|Expense/);
  assert.match(response.headers.get('x-ahorro-shape'), /top_k/);
  assert.ok(Number(response.headers.get('x-ahorro-tokens-saved')) > 20);
});

test('output: a feature preset and cap apply unless the client set them', async () => {
  const { response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 500,
  }, { headers: { 'x-ahorro-tags': 'feature=support' } }).withResponse();
  let sent = await lastUpstream();
  assert.equal(sent.max_tokens, 40);
  assert.equal(sent.temperature, 0.1);
  assert.match(response.headers.get('x-ahorro-shape'), /max_tokens/);
  await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], temperature: 0.7,
  }, { headers: { 'x-ahorro-tags': 'feature=support' } });
  sent = await lastUpstream();
  assert.equal(sent.temperature, 0.7);
  assert.equal(sent.max_tokens, 40, 'the preset default applies when none is set');
});

test('output: a max_tokens over the model\'s output limit (catalogue) is lowered to it', async () => {
  const { response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'write a long story' }], max_tokens: 100000,
  }).withResponse();
  const sent = await lastUpstream();
  assert.equal(sent.max_tokens, 16384, 'gpt-4o-mini writes at most 16,384 tokens');
  assert.match(response.headers.get('x-ahorro-shape'), /max_tokens/);
  const out = JSON.parse(execFileSync(AHORRO_BIN, ['prices', '--model', 'gpt-4o-mini', '--json'],
    { encoding: 'utf8' }));
  assert.equal(out.max_output_tokens, 16384);
});

test('shape: false turns shaping off for one request', async () => {
  await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: turns(4), shape: false });
  assert.equal((await lastUpstream()).messages.length, turns(4).length);
});

test('bad controls and impossible budgets are clear errors in the caller\'s format', async () => {
  await assert.rejects(
    openai.chat.completions.create({ model: 'gpt-4o-mini', messages: turns(1), shape: { strategy: 'magic' } }),
    (e) => e.status === 400 && e.error?.param === 'shape' && /unknown shape.strategy/.test(e.message));
  await assert.rejects(
    openai.chat.completions.create({ model: 'gpt-4o-mini', messages: turns(1), shape: { max_tokens: 0 } }),
    (e) => e.status === 400 && /max_tokens/.test(e.message));
  // the route "tiny" has a 60-token budget: a long system prompt cannot fit
  await assert.rejects(
    openai.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'system', content: 'rule '.repeat(200) }, { role: 'user', content: 'hi' }],
    }),
    (e) => e.status === 400 && /prompt budget of 60 tokens/.test(e.message));
  await assert.rejects(
    claude.messages.create({
      model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }],
      shape: { preset: 'nope' },
    }),
    (e) => e.status === 400 && e.error?.type === 'error' && e.error?.error?.type === 'invalid_request_error' &&
      /unknown sampling preset/.test(e.message));
  await assert.rejects(
    openai.chat.completions.create({ model: 'gpt-4o-mini', messages: turns(1), context: 'not an array' }),
    (e) => e.status === 400 && /'context' must be an array/.test(e.message));
  const rows = ledger(gw.db, "status = 400 AND error LIKE '%budget%'");
  assert.ok(rows.length >= 1, 'refusals are on the ledger');
});

test('prompt templates: versions, variables, the ledger tags the version used', async () => {
  const dir = gw.dir;
  const f1 = join(dir, 'tpl1.json'), f2 = join(dir, 'tpl2.txt');
  writeFileSync(f1, JSON.stringify({ messages: [{ role: 'system', content: 'You are {{company}} support. Be {{tone}}.' }] }));
  writeFileSync(f2, 'You are {{company}} support.');
  const add = (f) => execFileSync(AHORRO_BIN, ['templates', 'add', 'support', f, '--config', gw.cfgPath],
    { encoding: 'utf8' }).trim();
  assert.equal(add(f1), 'support@1');
  assert.equal(add(f2), 'support@2');
  const list = execFileSync(AHORRO_BIN, ['templates', 'list', '--config', gw.cfgPath], { encoding: 'utf8' });
  assert.match(list, /support\s+2\s+2/);

  const { response } = await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Where is my parcel?' }],
    prompt_id: 'support@1', prompt_variables: { company: 'Acme', tone: 'brief' },
  }).withResponse();
  let sent = await lastUpstream();
  assert.deepEqual(sent.messages[0], { role: 'system', content: 'You are Acme support. Be brief.' });
  assert.equal(sent.prompt_id, undefined);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(JSON.parse(row.tags).prompt, 'support@1');

  await openai.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }],
    prompt_id: 'support', prompt_variables: { company: 'Acme' },
  });
  sent = await lastUpstream();
  assert.equal(sent.messages[0].content, 'You are Acme support.', 'the latest version');

  await assert.rejects(
    openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], prompt_id: 'nope' }),
    (e) => e.status === 404 && e.error?.param === 'prompt_id');
  await assert.rejects(
    openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], prompt_id: 'support@1' }),
    (e) => e.status === 400 && /prompt_variables has no string or number 'company'/.test(e.message));
});

test('ahorro prompts audit: a repeated long prefix and a varying one, with the amount', async () => {
  const policy = 'Policy clause. '.repeat(700); // ~1,400 tokens
  for (let i = 0; i < 12; i++) {
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [
      { role: 'system', content: policy }, { role: 'user', content: `question ${i}` }], shape: false,
    }, { headers: { 'x-ahorro-tags': 'feature=policy' } });
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [
      { role: 'system', content: `Today is day ${i}. ${policy}` }, { role: 'user', content: `question ${i}` }],
    shape: false }, { headers: { 'x-ahorro-tags': 'feature=dated' } });
  }
  await waitFor(() => ledger(gw.db, "tags LIKE '%dated%'").length >= 12);
  const out = JSON.parse(execFileSync(AHORRO_BIN, ['prompts', 'audit', '--json', '--config', gw.cfgPath],
    { encoding: 'utf8' }));
  const fixed = out.find((r) => r.feature === 'policy');
  const dated = out.find((r) => r.feature === 'dated');
  assert.equal(fixed.requests, 12);
  assert.equal(fixed.distinct_prefixes, 1);
  assert.ok(fixed.saving_caching_usd > 0);
  assert.match(fixed.advice, /prompt caching/);
  assert.equal(dated.distinct_prefixes, 12);
  assert.ok(dated.saving_reorder_usd > 0);
  assert.match(dated.advice, /static part first/);
  const table = execFileSync(AHORRO_BIN, ['prompts', 'audit', '--config', gw.cfgPath], { encoding: 'utf8' });
  assert.match(table, /policy/);
});

async function fakeStats() {
  return (await fetch(`http://127.0.0.1:${fake.port}/_fake/stats`)).json();
}

test('summarize: older turns become a cheap model\'s summary, paid once, on its own ledger row', async () => {
  const before = await fakeStats();
  const { data, response } = await openai.chat.completions
    .create({ model: 'claude-on-gpt', messages: turns(6) }).withResponse();
  assert.ok(data.choices[0].message.content);
  const after = await fakeStats();
  assert.equal(after.chat_completions - before.chat_completions, 2, 'the summary call, then the answer');
  const sent = await lastUpstream();
  assert.equal(sent.messages[0].content, 'You answer questions about the solar system.');
  assert.equal(sent.messages[1].role, 'system');
  assert.match(sent.messages[1].content, /^Summary of the earlier conversation:\n\[simulated\]/);
  assert.match(sent.messages[2].content, /^Question 6/);
  assert.equal(sent.messages.length, 2 + 2 + 1);
  assert.equal(response.headers.get('x-ahorro-shape'), 'lossless,summarize,summary');
  const id = response.headers.get('x-ahorro-request-id');
  const row = await ledgerRow(gw.db, id);
  await waitFor(() => ledger(gw.db, `tags LIKE '%"summary_for":"${id}"%'`).length === 1);
  const [srow] = ledger(gw.db, `tags LIKE '%"summary_for":"${id}"%'`);
  assert.equal(srow.requested_model, 'gpt-4o-mini');
  assert.equal(JSON.parse(srow.tags).purpose, 'summary');
  assert.equal(srow.status, 200);
  assert.ok(row.shape_tokens_saved > 0);

  // the same conversation again: the summary is cached, one upstream call
  const b2 = await fakeStats();
  const again = await openai.chat.completions.create({ model: 'claude-on-gpt', messages: turns(6) }).withResponse();
  assert.equal((await fakeStats()).chat_completions - b2.chat_completions, 1);
  assert.equal(again.response.headers.get('x-ahorro-shape'), 'lossless,summarize,summary_cached');
  assert.match((await lastUpstream()).messages[1].content, /^Summary of the earlier conversation/);

  // one more turn: the summary is extended, not written anew
  const b3 = await fakeStats();
  const more = await openai.chat.completions.create({ model: 'claude-on-gpt', messages: turns(7) }).withResponse();
  assert.equal((await fakeStats()).chat_completions - b3.chat_completions, 2);
  assert.match(more.response.headers.get('x-ahorro-shape'), /summary$/);
});

test('summarize: a failing summarizer leaves the request trimmed, not failed', async () => {
  const { data, response } = await openai.chat.completions
    .create({ model: 'slow', messages: turns(5) }).withResponse();
  assert.ok(data.choices[0].message.content);
  assert.match(response.headers.get('x-ahorro-shape'), /summary_failed/);
  const sent = await lastUpstream();
  assert.ok(sent.messages.every((m) => !/^Summary of/.test(m.content)));
  assert.equal(sent.messages.length, 1 + 2 + 1);
});
