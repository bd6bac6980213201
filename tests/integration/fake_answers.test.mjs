// ahorro-fake --answers FILE: recorded answers replace the simulated text when the model
// and the last user message match (docs/fake-provider.md, "Recorded answers"). The tests
// talk to the fake directly with the official SDKs; no gateway is involved.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFake, FAKE_BIN, PROVIDER_KEY } from './lib/harness.mjs';

const EXACT_Q = 'What is the capital of France?';
const SHARED_Q = 'Which planet is the largest?';
const MULTI_Q = 'Tell me a story'; // only the prompt-only entry knows it
const JSON_Q = 'Give me JSON';
const SLOW_Q = 'Take your time';
const UNICODE_Q = 'Say it twice';
const entries = [
  { model: 'gpt-4o', prompt: EXACT_Q, answer: 'The capital of France is Paris.' },
  { model: 'claude-3-5-haiku-latest', prompt: EXACT_Q, answer: 'Paris, says Claude.' },
  { prompt: EXACT_Q, answer: 'Paris (any model).' },
  { model: 'gpt-4o', prompt: SHARED_Q, answer: 'Jupiter, says gpt-4o.' },
  { prompt: SHARED_Q, answer: 'Jupiter (any model).' },
  { model: 'gpt-4o', answer: 'gpt-4o has recorded nothing for this prompt.' },
  { prompt: MULTI_Q, answer: 'Once upon a time there was a recorded answer.' },
  { model: 'gpt-4o', prompt: JSON_Q, answer: '{"answer":"B"}' },
  { model: 'gpt-4o-mini', prompt: SLOW_Q, answer: 'Slow but sure.', delay_ms: 400 },
  { prompt: UNICODE_Q, answer: 'Line one\nLínea dos ✓  "quoted"' },
  // Parts of an array content are joined by "\n"; the system prompt is not part of the key.
  { model: 'claude-3-5-haiku-latest', prompt: 'first part\nsecond part', answer: 'Two parts, one prompt.' },
  // A later duplicate of a key is ignored: the first entry wins.
  { model: 'gpt-4o', prompt: EXACT_Q, answer: 'never returned' },
];

const words = (s) => s.split(/[ \t\n\r\f\v]+/).filter(Boolean).length;

let dir, fake, openai, claude;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ahorro-fake-answers-'));
  const file = join(dir, 'answers.jsonl');
  // Blank lines are skipped; CRLF line ends are accepted.
  writeFileSync(file, entries.map((e) => JSON.stringify(e)).join('\n\n').replace(/\n\n$/, '') + '\r\n\n');
  fake = await startFake(['--answers', file]);
  openai = new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: PROVIDER_KEY, maxRetries: 0 });
  // This SDK sends the key as a bearer token; the fake's --require-key wants x-api-key.
  claude = new Anthropic({ baseURL: fake.url, apiKey: PROVIDER_KEY, maxRetries: 0,
    defaultHeaders: { 'x-api-key': PROVIDER_KEY } });
});
after(async () => {
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // A clean stop exits 0; under ASan a leak at exit would make it fail.
  assert.equal(fake?.proc.exitCode, 0);
});

const ask = (model, content, extra = {}) =>
  openai.chat.completions.create({ model, messages: [{ role: 'user', content }], ...extra });

async function stats() {
  return (await fetch(`${fake.url}/_fake/stats`)).json();
}

test('exact (model, prompt) hit: the recorded text, no [simulated], usage by the word rule', async () => {
  const r = await ask('gpt-4o', EXACT_Q);
  const text = 'The capital of France is Paris.';
  assert.equal(r.choices[0].message.content, text);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.completion_tokens, words(text));
  // The prompt is counted as for any request: (6 words + 4) + 3.
  assert.equal(r.usage.prompt_tokens, 13);
  assert.equal(r.usage.total_tokens, 13 + words(text));

  const c = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 100, messages: [{ role: 'user', content: EXACT_Q }],
  });
  assert.equal(c.content[0].text, 'Paris, says Claude.');
  assert.equal(c.stop_reason, 'end_turn');
  assert.equal(c.usage.output_tokens, 3);
  assert.equal(c.usage.input_tokens, 13);
});

test('lookup order: (model, prompt), (any model, prompt), (model, any prompt), then simulated', async () => {
  // A prompt-only entry serves every model that has no entry of its own for the prompt.
  assert.equal((await ask('gpt-4o-mini', EXACT_Q)).choices[0].message.content, 'Paris (any model).');
  assert.equal((await ask('gpt-4o', SHARED_Q)).choices[0].message.content, 'Jupiter, says gpt-4o.');
  assert.equal((await ask('some-other-model', SHARED_Q)).choices[0].message.content, 'Jupiter (any model).');
  // A prompt-only entry beats the model-wide default...
  assert.equal((await ask('gpt-4o', MULTI_Q)).choices[0].message.content,
    'Once upon a time there was a recorded answer.');
  // ...which answers every other prompt to that model.
  assert.equal((await ask('gpt-4o', 'Anything else at all')).choices[0].message.content,
    'gpt-4o has recorded nothing for this prompt.');
  // No entry: the simulated answer, exactly as without --answers.
  const sim = await ask('gpt-4o-mini', 'Anything else at all');
  assert.equal(sim.choices[0].message.content,
    '[simulated] ahorro-fake answer from gpt-4o-mini: Anything else at all lorem ipsum dolor sit amet ' +
    'consectetur adipiscing elit sed do eiusmod');
  assert.equal(sim.usage.completion_tokens, 20);
  // The prompt is matched exactly: no trimming, no case folding.
  assert.match((await ask('gpt-4o-mini', `${EXACT_Q} `)).choices[0].message.content, /^\[simulated\]/);
  assert.match((await ask('gpt-4o-mini', EXACT_Q.toLowerCase())).choices[0].message.content, /^\[simulated\]/);
});

test('the key is the last user message: earlier turns, assistant turns and the system prompt do not count', async () => {
  const r = await openai.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'Hi.' },
      { role: 'user', content: EXACT_Q },
      { role: 'assistant', content: 'prefill that is not a user message' },
    ],
  });
  assert.equal(r.choices[0].message.content, 'Paris (any model).');
  const later = await openai.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: EXACT_Q }, { role: 'assistant', content: 'Paris.' },
      { role: 'user', content: 'And of Spain?' }],
  });
  assert.match(later.choices[0].message.content, /^\[simulated\]/);
  // Text parts (OpenAI) and text blocks (Anthropic) are joined by "\n".
  const parts = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 50, system: 'Ignored by the key.',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'first part' }, { type: 'text', text: 'second part' }] }],
  });
  assert.equal(parts.content[0].text, 'Two parts, one prompt.');
  const oparts = await ask('gpt-4o', [{ type: 'text', text: EXACT_Q }]);
  assert.equal(oparts.choices[0].message.content, 'The capital of France is Paris.');
});

test('streaming: the recorded answer in word pieces, OpenAI and Anthropic', async () => {
  const text = 'Line one\nLínea dos ✓  "quoted"';
  const stream = await ask('gpt-4o', UNICODE_Q, { stream: true, stream_options: { include_usage: true } });
  let got = '', pieces = 0, usage = null, finish = null;
  for await (const c of stream) {
    if (c.choices[0]?.delta?.content) { got += c.choices[0].delta.content; pieces++; }
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    if (c.usage) usage = c.usage;
  }
  assert.equal(got, text);
  assert.equal(pieces, words(text));
  assert.equal(usage.completion_tokens, words(text));
  assert.equal(finish, 'stop');

  const cs = claude.messages.stream({
    model: 'claude-3-5-haiku-latest', max_tokens: 100, messages: [{ role: 'user', content: EXACT_Q }],
  });
  let deltas = 0;
  cs.on('text', () => deltas++);
  const final = await cs.finalMessage();
  assert.equal(final.content[0].text, 'Paris, says Claude.');
  assert.equal(deltas, 3);
  assert.equal(final.usage.output_tokens, 3);
  assert.equal(final.stop_reason, 'end_turn');
});

test('max_tokens and stop sequences cut a recorded answer; usage counts what is returned', async () => {
  const r = await ask('gpt-4o', EXACT_Q, { max_tokens: 3 });
  assert.equal(r.choices[0].message.content, 'The capital of');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 3);

  const s = await ask('gpt-4o', EXACT_Q, { stop: [' is'] });
  assert.equal(s.choices[0].message.content, 'The capital of France');
  assert.equal(s.choices[0].finish_reason, 'stop');
  assert.equal(s.usage.completion_tokens, 4);

  const stream = await ask('gpt-4o', EXACT_Q, { max_tokens: 2, stream: true, stream_options: { include_usage: true } });
  let got = '', usage = null;
  for await (const c of stream) {
    got += c.choices[0]?.delta?.content ?? '';
    if (c.usage) usage = c.usage;
  }
  assert.equal(got, 'The capital');
  assert.equal(usage.completion_tokens, 2);

  const c = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 2, messages: [{ role: 'user', content: EXACT_Q }],
  });
  assert.equal(c.content[0].text, 'Paris, says');
  assert.equal(c.stop_reason, 'max_tokens');
  assert.equal(c.usage.output_tokens, 2);
  const cstop = await claude.messages.create({
    model: 'claude-3-5-haiku-latest', max_tokens: 100, stop_sequences: ['says'],
    messages: [{ role: 'user', content: EXACT_Q }],
  });
  assert.equal(cstop.content[0].text, 'Paris, ');
  assert.equal(cstop.stop_reason, 'stop_sequence');
  assert.equal(cstop.stop_sequence, 'says');
  assert.equal(cstop.usage.output_tokens, 1);
});

test('delay_ms waits before answering; a [[delay]] directive or header in the request wins', async () => {
  let t0 = Date.now();
  const r = await ask('gpt-4o-mini', SLOW_Q);
  assert.equal(r.choices[0].message.content, 'Slow but sure.');
  assert.ok(Date.now() - t0 >= 390, `answered after ${Date.now() - t0} ms`);

  t0 = Date.now();
  const stream = await ask('gpt-4o-mini', SLOW_Q, { stream: true });
  let got = '';
  for await (const c of stream) got += c.choices[0]?.delta?.content ?? '';
  assert.equal(got, 'Slow but sure.');
  assert.ok(Date.now() - t0 >= 390);

  // The header's delay replaces the recorded one.
  t0 = Date.now();
  const quick = await openai.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: SLOW_Q }] },
    { headers: { 'x-fake-fault': 'delay:1' } });
  assert.equal(quick.choices[0].message.content, 'Slow but sure.');
  assert.ok(Date.now() - t0 < 390, `answered after ${Date.now() - t0} ms`);
});

test('JSON mode returns the recording as it is; tool calls and faults are unchanged', async () => {
  const r = await ask('gpt-4o', JSON_Q, { response_format: { type: 'json_object' } });
  assert.deepEqual(JSON.parse(r.choices[0].message.content), { answer: 'B' });
  // Without a recording JSON mode wraps the simulated text, as before.
  const sim = await ask('gpt-4o-mini', 'No recording here', { response_format: { type: 'json_object' } });
  assert.equal(JSON.parse(sim.choices[0].message.content).simulated, true);
  // A forced tool call is still a tool call.
  const t = await ask('gpt-4o', EXACT_Q, {
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
    tool_choice: 'required',
  });
  assert.equal(t.choices[0].finish_reason, 'tool_calls');
  assert.equal(t.choices[0].message.tool_calls[0].function.arguments, '{"q":"fake"}');
  // A fault still fails the request.
  await assert.rejects(
    openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: EXACT_Q }] },
      { headers: { 'x-fake-fault': '500' } }),
    (e) => e.status === 500);
});

test('embeddings are not affected; /_fake/stats counts recorded answers', async () => {
  await fetch(`${fake.url}/_fake/reset`, { method: 'POST' });
  const e = await openai.embeddings.create({ model: 'gpt-4o', input: EXACT_Q });
  assert.equal(e.data[0].embedding.length, 16);
  await ask('gpt-4o', EXACT_Q);
  await ask('gpt-4o-mini', 'not recorded');
  const s = await stats();
  assert.equal(s.requests, 3);
  assert.equal(s.recorded, 1);
});

test('30,000 entries load at start and answer by exact lookup; a catch-all entry ends the fallback', async () => {
  const big = join(dir, 'big.jsonl');
  const lines = [];
  for (let i = 0; i < 30000; i++)
    lines.push(JSON.stringify({ model: i % 2 ? 'mixtral' : 'gpt4', prompt: `Question ${i}?\nA. x\nB. y\nAnswer:`, answer: `The answer is ${'ABCD'[i % 4]}.` }));
  lines.push(JSON.stringify({ answer: 'I do not know.' }));
  writeFileSync(big, lines.join('\n') + '\n');
  const t0 = Date.now();
  const f = await startFake(['--answers', big]);
  const startMs = Date.now() - t0;
  try {
    const c = new OpenAI({ baseURL: `${f.url}/v1`, apiKey: PROVIDER_KEY, maxRetries: 0 });
    for (const i of [0, 1, 12345, 29999]) {
      const model = i % 2 ? 'mixtral' : 'gpt4';
      const r = await c.chat.completions.create({ model, messages: [{ role: 'user', content: `Question ${i}?\nA. x\nB. y\nAnswer:` }] });
      assert.equal(r.choices[0].message.content, `The answer is ${'ABCD'[i % 4]}.`);
    }
    // Right prompt, wrong model, no prompt-only entry: the (any, any) entry.
    const miss = await c.chat.completions.create({ model: 'gpt4', messages: [{ role: 'user', content: 'Question 1?\nA. x\nB. y\nAnswer:' }] });
    assert.equal(miss.choices[0].message.content, 'I do not know.');
    assert.ok(startMs < 8000, `start with 30,000 entries took ${startMs} ms`);
  } finally {
    await f.stop();
  }
  assert.equal(f.proc.exitCode, 0);
});

// Runs the fake on a file expected to be refused; resolves with its exit code and stderr.
function refused(file) {
  return new Promise((res, rej) => {
    const p = spawn(FAKE_BIN, ['--listen', '127.0.0.1:0', '--answers', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '', out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); rej(new Error(`still running: ${out}`)); }, 10000);
    p.on('exit', (code) => { clearTimeout(timer); res({ code, err, out }); });
  });
}

test('a bad file is refused at start with exit status 2, naming the file and the line', async () => {
  const cases = [
    ['{"answer":"ok"}\n\nnot json\n', 3, /not JSON/],
    ['{"answer":"ok"}\n{"model":"m","prompt":"p"}\n', 2, /"answer" is missing/],
    ['{"answer":42}\n', 1, /"answer" is not a string/],
    ['{"answer":"ok","model":7}\n', 1, /"model" is not a string/],
    ['{"answer":"ok","prompt":["p"]}\n', 1, /"prompt" is not a string/],
    ['{"answer":"ok","delay_ms":600001}\n', 1, /"delay_ms"/],
    ['{"answer":"ok","delay_ms":"5"}\n', 1, /"delay_ms"/],
    ['["answer","ok"]\n', 1, /not a JSON object/],
  ];
  for (const [i, [text, line, why]] of cases.entries()) {
    const file = join(dir, `bad${i}.jsonl`);
    writeFileSync(file, text);
    const r = await refused(file);
    assert.equal(r.code, 2, `case ${i}: exit ${r.code}: ${r.err}`);
    assert.equal(r.out, '', `case ${i}: printed the ready line`);
    assert.ok(r.err.includes(`${file}:${line}: `), `case ${i}: ${r.err}`);
    assert.match(r.err, why);
  }
  const missing = await refused(join(dir, 'no-such-file.jsonl'));
  assert.equal(missing.code, 2);
  assert.match(missing.err, /no-such-file\.jsonl: No such file/);
});
