// The official @anthropic-ai/sdk against the real gateway, served by the fake provider,
// and the cross-format paths: OpenAI clients on Anthropic models and back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFake, startGateway, ledgerRow, MASTER_KEY, PROVIDER_KEY } from './lib/harness.mjs';

let fake, gw, claude, openai;
before(async () => {
  fake = await startFake();
  gw = await startGateway({ fake });
  claude = new Anthropic({ baseURL: gw.url, apiKey: MASTER_KEY, maxRetries: 0 });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
});
after(async () => { await gw?.stop(); await fake?.stop(); gw?.cleanup(); });

const weather = {
  name: 'get_weather', description: 'Weather of a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('messages, non-streaming: the body reaches Anthropic as sent, usage lands on the ledger', async () => {
  const body = {
    model: 'claude-3-5-haiku-latest', max_tokens: 100, system: 'Be brief.', top_k: 5,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello there', cache_control: { type: 'ephemeral' } }] }],
  };
  const { data, response } = await claude.messages.create(body,
    { headers: { 'anthropic-beta': 'prompt-caching-2024-07-31' } }).withResponse();
  assert.equal(data.type, 'message');
  assert.match(data.content[0].text, /simulated/);
  assert.ok(data.usage.input_tokens > 0);
  const last = await fake.last();
  assert.equal(last.headers['x-api-key'], PROVIDER_KEY);
  assert.match(last.headers['anthropic-version'], /^\d{4}-\d{2}-\d{2}$/); // the SDK's own version, forwarded
  assert.equal(last.headers['anthropic-beta'], 'prompt-caching-2024-07-31');
  assert.deepEqual(last.body, body); // passthrough: nothing lost, nothing added
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.api, 'anthropic');
  assert.equal(row.provider, 'anthropic');
  assert.equal(row.prompt_tokens, data.usage.input_tokens);
  assert.equal(row.completion_tokens, data.usage.output_tokens);
  const expect = (data.usage.input_tokens * 0.8 + data.usage.output_tokens * 4) / 1e6;
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12);
});

test('messages, streaming: events pass through, final message assembled by the SDK', async () => {
  const stream = claude.messages.stream({
    model: 'claude-3-5-haiku-latest', max_tokens: 100,
    messages: [{ role: 'user', content: 'Stream please [[tokens:9]]' }],
  });
  let deltas = 0;
  stream.on('text', () => deltas++);
  const msg = await stream.finalMessage();
  assert.ok(deltas >= 9);
  assert.equal(msg.usage.output_tokens, 9);
  assert.equal(msg.stop_reason, 'end_turn');
});

test('Anthropic cache reads are priced at their own rate', async () => {
  const { data, response } = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50,
    messages: [{ role: 'user', content: 'a long prompt [[cached:6]]' }],
  }).withResponse();
  assert.equal(data.usage.cache_read_input_tokens, 6);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.cached_tokens, 6);
  assert.equal(row.prompt_tokens, data.usage.input_tokens + 6);
  const expect = (data.usage.input_tokens * 0.8 + 6 * 0.08 + data.usage.output_tokens * 4) / 1e6;
  assert.ok(Math.abs(row.cost_usd - expect) < 1e-12, `${row.cost_usd} != ${expect}`);
});

test('messages with tools: tool_use blocks', async () => {
  const r = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 100, tools: [weather], tool_choice: { type: 'any' },
    messages: [{ role: 'user', content: 'Weather in Paris?' }],
  });
  assert.equal(r.stop_reason, 'tool_use');
  const tu = r.content.find((b) => b.type === 'tool_use');
  assert.equal(tu.name, 'get_weather');
  assert.deepEqual(tu.input, { city: 'fake' });
});

test('OpenAI client, Anthropic model: request translated, answer and usage mapped back', async () => {
  const { data, response } = await openai.chat.completions.create({
    model: 'gpt-on-claude', max_tokens: 64, stop: 'never-here', temperature: 1.5,
    messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hi from OpenAI land [[cached:3]]' }],
  }).withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.match(data.choices[0].message.content, /simulated/);
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.equal(data.usage.prompt_tokens_details.cached_tokens, 3);
  const last = await fake.last();
  assert.equal(last.path, '/v1/messages');
  assert.equal(last.body.system, 'You are terse.');
  assert.deepEqual(last.body.stop_sequences, ['never-here']);
  assert.equal(last.body.max_tokens, 64);
  assert.equal(last.body.temperature, 1); // Anthropic's range is 0..1
  assert.equal(last.body.messages[0].role, 'user');
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.api, 'openai');
  assert.equal(row.provider, 'anthropic');
  assert.equal(row.prompt_tokens, data.usage.prompt_tokens);
  assert.equal(row.cached_tokens, 3);
});

test('OpenAI client, Anthropic model, streaming with usage', async () => {
  const stream = await openai.chat.completions.create({
    model: 'gpt-on-claude', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'stream across formats [[tokens:7]]' }],
  });
  let text = '', usage = null, finish = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? '';
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    if (c.usage) usage = c.usage;
  }
  assert.match(text, /simulated/);
  assert.equal(finish, 'stop');
  assert.equal(usage.completion_tokens, 7);
  assert.ok(usage.prompt_tokens > 0);
});

test('OpenAI client, Anthropic model: tools both ways, streamed too', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: weather.input_schema } }];
  const r = await openai.chat.completions.create({
    model: 'gpt-on-claude', tools, tool_choice: 'required',
    messages: [{ role: 'user', content: 'Weather?' }],
  });
  const call = r.choices[0].message.tool_calls[0];
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'fake' });
  assert.deepEqual((await fake.last()).body.tool_choice, { type: 'any' });
  // Send the tool result back: it must become a tool_result block.
  await openai.chat.completions.create({
    model: 'gpt-on-claude',
    messages: [{ role: 'user', content: 'Weather?' }, r.choices[0].message,
      { role: 'tool', tool_call_id: call.id, content: 'sunny' }],
  });
  const sent = (await fake.last()).body.messages;
  assert.equal(sent[1].content[0].type, 'tool_use');
  assert.equal(sent[2].content[0].type, 'tool_result');
  assert.equal(sent[2].content[0].tool_use_id, call.id);
  const final = await openai.chat.completions.stream({
    model: 'gpt-on-claude', tools, tool_choice: 'required', messages: [{ role: 'user', content: 'Weather?' }],
  }).finalChatCompletion();
  assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { city: 'fake' });
});

test('Anthropic client, OpenAI model: translated both ways, streaming included', async () => {
  const { data, response } = await claude.messages.create({
    model: 'claude-on-gpt', max_tokens: 50, system: 'Be kind.',
    messages: [{ role: 'user', content: 'Hi from Anthropic land' }],
  }).withResponse();
  assert.equal(data.type, 'message');
  assert.match(data.content[0].text, /simulated/);
  assert.equal(data.stop_reason, 'end_turn');
  const last = await fake.last();
  assert.equal(last.path, '/v1/chat/completions');
  assert.deepEqual(last.body.messages[0], { role: 'system', content: 'Be kind.' });
  assert.equal(last.body.max_tokens, 50);
  const row = await ledgerRow(gw.db, response.headers.get('x-ahorro-request-id'));
  assert.equal(row.api, 'anthropic');
  assert.equal(row.provider, 'openai');
  assert.equal(row.prompt_tokens, data.usage.input_tokens);
  const stream = claude.messages.stream({
    model: 'claude-on-gpt', max_tokens: 50, messages: [{ role: 'user', content: 'stream it [[tokens:6]]' }],
  });
  let text = '';
  stream.on('text', (t) => { text += t; });
  const msg = await stream.finalMessage();
  assert.match(text, /simulated/);
  assert.equal(msg.usage.output_tokens, 6);
  assert.ok(msg.usage.input_tokens > 0);
});

test('Anthropic client, OpenAI model: tool use streamed as tool_use blocks', async () => {
  const stream = claude.messages.stream({
    model: 'claude-on-gpt', max_tokens: 50, tools: [weather], tool_choice: { type: 'tool', name: 'get_weather' },
    messages: [{ role: 'user', content: 'Weather?' }],
  });
  const msg = await stream.finalMessage();
  const tu = msg.content.find((b) => b.type === 'tool_use');
  assert.equal(tu.name, 'get_weather');
  assert.deepEqual(tu.input, { city: 'fake' });
  assert.equal(msg.stop_reason, 'tool_use');
  const sent = (await fake.last()).body;
  assert.deepEqual(sent.tool_choice, { type: 'function', function: { name: 'get_weather' } });
});
