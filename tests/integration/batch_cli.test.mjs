// `ahorro batch run | estimate` (docs/batch.md): an OpenAI batch file through the
// gateway the command serves in-process, against the fake provider. Results in
// OpenAI's output format, malformed lines reported per line while the rest runs,
// duplicate custom_ids refused before anything is sent, pacing within the
// deployments' rpm checked from the fake's own request log, a run killed with
// SIGKILL (and one interrupted with SIGINT) resumed with every line answered
// once, ledger rows tagged, and the estimate's token counts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFake, ledger, AHORRO_BIN, PROVIDER_KEY, MASTER_KEY } from './lib/harness.mjs';

// the tokenizers the estimate counts with (built by scripts/build-tokenizers.sh)
const TOKENIZERS = fileURLToPath(new URL('../../build/data', import.meta.url));

let fake, dir, cfgPath, db;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ahorro-batch-'));
  fake = await startFake(['--ttft-ms', '150', '--log', join(dir, 'fake.log')]);
  const o = `http://127.0.0.1:${fake.port}/v1`;
  db = join(dir, 'ahorro.db');
  cfgPath = join(dir, 'ahorro.yaml');
  writeFileSync(cfgPath, `model_list:
  - model_name: paced
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "${PROVIDER_KEY}", rpm: 300 }
  - model_name: paced
    litellm_params: { model: openai/gpt-4o, api_base: "${o}", api_key: "${PROVIDER_KEY}", rpm: 300 }
  - model_name: free
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "${PROVIDER_KEY}" }
general_settings:
  master_key: ${MASTER_KEY}
ahorro:
  db: ${db}
  threads: 2
`);
});

after(async () => {
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const line = (id, model, text, extra = {}) => JSON.stringify({
  custom_id: id, method: 'POST', url: '/v1/chat/completions',
  body: { model, messages: [{ role: 'user', content: text }], max_tokens: 5, ...extra },
});

function writeInput(name, lines) {
  const p = join(dir, name);
  writeFileSync(p, lines.join('\n') + '\n');
  return p;
}

function ahorro(args, opts = {}) {
  return spawnSync(AHORRO_BIN, ['--config', cfgPath, ...args], {
    encoding: 'utf8', timeout: 120000,
    env: { AHORRO_TOKENIZERS_DIR: TOKENIZERS, ...process.env, AHORRO_LOG: 'warn' }, ...opts,
  });
}

const readLines = (p) => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
const fakeStats = async () => (await fetch(`${fake.url}/_fake/stats`)).json();

test('a batch: answers in OpenAI format, malformed lines in the error file, the rest runs', () => {
  const lines = [];
  for (let i = 0; i < 20; i++) lines.push(line(`ok-${i}`, 'free', `hello ${i}`));
  lines.splice(3, 0, 'this is not json');
  lines.splice(6, 0, JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: { model: 'free', messages: [] } }));
  lines.splice(9, 0, JSON.stringify({ custom_id: 'bad-url', method: 'POST', url: '/v1/images/generations', body: { model: 'free' } }));
  lines.splice(12, 0, line('ghost', 'no-such-model', 'hi'));
  const input = writeInput('a.jsonl', lines);
  const out = join(dir, 'a.out.jsonl');
  const r = ahorro(['batch', 'run', input, '-o', out, '--tags', 'team=bulk,job=a']);
  assert.equal(r.status, 0, r.stderr);
  const res = readLines(out);
  const errs = readLines(join(dir, 'a.out.errors.jsonl'));
  assert.equal(res.length, 20);
  assert.deepEqual(res.map((x) => x.custom_id).sort(), Array.from({ length: 20 }, (_, i) => `ok-${i}`).sort());
  for (const x of res) {
    assert.match(x.id, /^batch_req_/);
    assert.equal(x.response.status_code, 200);
    assert.equal(x.response.body.object, 'chat.completion');
    assert.match(x.response.request_id, /^req_/);
    assert.equal(x.error, null);
  }
  // per line, with its number; the unknown model got the gateway's answer
  const byLine = Object.fromEntries(errs.filter((e) => e.error).map((e) => [e.error.line, e.error.code]));
  assert.equal(byLine[4], 'invalid_json_line');
  assert.equal(byLine[7], 'missing_custom_id');
  assert.equal(byLine[10], 'invalid_url');
  const ghost = errs.find((e) => e.custom_id === 'ghost');
  assert.equal(ghost.response.status_code, 404);
  assert.equal(errs.length, 4);
  assert.match(r.stderr, /24 done .* 4 failed/);
  // the ledger: one row per answered line, tagged
  const rows = ledger(db, "json_extract(tags, '$.job') = 'a'");
  assert.equal(rows.filter((x) => x.status === 200).length, 20);
  assert.ok(rows.every((x) => JSON.parse(x.tags).purpose === 'batch' && JSON.parse(x.tags).team === 'bulk'));
});

test('duplicate custom_ids are refused before anything is sent', async () => {
  const before = (await fakeStats()).chat_completions;
  const input = writeInput('dup.jsonl', [line('x', 'free', 'a'), line('y', 'free', 'b'), line('x', 'free', 'c')]);
  const r = ahorro(['batch', 'run', input, '-o', join(dir, 'dup.out.jsonl')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /line 3 repeats custom_id 'x'/);
  assert.equal((await fakeStats()).chat_completions, before);
  assert.equal(existsSync(join(dir, 'dup.out.jsonl')), false);
  // a malformed line's custom_id counts too: its error would stand for the other line
  const input2 = writeInput('dup2.jsonl', [line('z', 'free', 'a'),
    JSON.stringify({ custom_id: 'z', method: 'POST', url: '/v1/images', body: {} })]);
  const r2 = ahorro(['batch', 'run', input2, '-o', join(dir, 'dup2.out.jsonl')]);
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /line 2 repeats custom_id 'z'/);
});

test('a line over 4 MiB is reported on its own line; the rest runs', () => {
  const huge = line('huge', 'free', 'x'.repeat(4 * 1024 * 1024 + 10));
  const input = writeInput('long.jsonl', [line('l1', 'free', 'one'), huge, line('l3', 'free', 'three')]);
  const out = join(dir, 'long.out.jsonl');
  const r = ahorro(['batch', 'run', input, '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readLines(out).map((x) => x.custom_id).sort(), ['l1', 'l3']);
  const errs = readLines(join(dir, 'long.out.errors.jsonl'));
  assert.equal(errs.length, 1);
  assert.equal(errs[0].error.code, 'line_too_long');
  assert.equal(errs[0].error.line, 2);
  // resuming finds it done
  const again = ahorro(['batch', 'run', input, '-o', out]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(readLines(join(dir, 'long.out.errors.jsonl')).length, 1);
  assert.equal(readLines(out).length, 2);
});

test('pacing: two deployments of 300 rpm, checked from the fake provider\'s own log', async () => {
  const n = 60;
  const input = writeInput('paced.jsonl', Array.from({ length: n }, (_, i) => line(`p-${i}`, 'paced', `pace ${i}`)));
  const t0 = Date.now();
  const r = ahorro(['batch', 'run', input, '-o', join(dir, 'paced.out.jsonl'), '--concurrency', '64']);
  assert.equal(r.status, 0, r.stderr);
  const wall = (Date.now() - t0) / 1000;
  assert.equal(readLines(join(dir, 'paced.out.jsonl')).length, n);
  // 600 rpm in all is 10 per second: 60 lines take about 6 s, not one burst
  assert.ok(wall > 4.5, `took ${wall}s`);
  // the fake flushes its log every 500 ms
  const readLog = () => readFileSync(join(dir, 'fake.log'), 'utf8').split('\n').filter(Boolean)
    .map((l) => JSON.parse(l)).filter((x) => x.prompt_tokens && x.t_ms >= t0);
  let log = readLog();
  for (let t = 0; t < 60 && log.length < n; t++) {
    await new Promise((res) => setTimeout(res, 50));
    log = readLog();
  }
  const times = log.map((x) => x.t_ms).sort((a, b) => a - b);
  assert.ok(times.length >= n);
  // no second holds more than the rate (10) plus the one-request burst
  let worst = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] >= 1000) j++;
    worst = Math.max(worst, i - j + 1);
  }
  assert.ok(worst <= 12, `${worst} requests within one second`);
  assert.ok(log.every((x) => x.status === 200));
});

async function killedRun(signal, waitLines) {
  const n = 80;
  const name = `kill-${signal}`;
  const input = writeInput(`${name}.jsonl`, Array.from({ length: n }, (_, i) => line(`${name}-${i}`, 'paced', `resume ${i}`)));
  const out = join(dir, `${name}.out.jsonl`);
  const before = (await fakeStats()).chat_completions;
  const child = spawn(AHORRO_BIN, ['--config', cfgPath, 'batch', 'run', input, '-o', out, '--quiet'],
    { env: { ...process.env, AHORRO_LOG: 'warn' }, stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', (code, sig) => r({ code, sig })));
  for (let t = 0; t < 400 && readLines(out).length < waitLines; t++) await new Promise((r) => setTimeout(r, 50));
  child.kill(signal);
  const how = await exited;
  const partial = readLines(out).length;
  assert.ok(partial > 0 && partial < n, `${partial} lines before the ${signal}`);
  const r = ahorro(['batch', 'run', input, '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`\\((\\d+) resumed`));
  const ids = readLines(out).map((x) => x.custom_id);
  assert.equal(ids.length, n);
  assert.equal(new Set(ids).size, n);
  // sent again: at most the lines in flight when it died (none after a SIGINT)
  const sent = (await fakeStats()).chat_completions - before;
  return { how, sent, n };
}

test('SIGKILL half-way: a second run resumes, every line answered once', async () => {
  const { how, sent, n } = await killedRun('SIGKILL', 20);
  assert.equal(how.sig, 'SIGKILL');
  assert.ok(sent >= n && sent <= n + 64, `${sent} requests for ${n} lines`);
});

test('SIGINT: the in-flight lines finish, exit 130, the next run resumes with nothing sent twice', async () => {
  const { how, sent, n } = await killedRun('SIGINT', 20);
  assert.equal(how.code, 130);
  assert.equal(sent, n);
});

test('estimate: exact prompt tokens and prices per route, nothing sent', async () => {
  const before = (await fakeStats()).chat_completions;
  const input = writeInput('est.jsonl', [
    line('e1', 'free', 'hello world'), line('e2', 'free', 'hello world'), line('e3', 'paced', 'hi', { max_tokens: 100 }),
    '{"broken": true',
  ]);
  const r = ahorro(['batch', 'estimate', input, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const est = JSON.parse(r.stdout);
  const free = est.routes.find((x) => x.model === 'free');
  // OpenAI's chat rule on o200k: 3 per message + "user" (1) + "hello world" (2) + 3 priming
  assert.equal(free.prompt_tokens, 2 * 9);
  assert.equal(free.output_tokens_cap, 10);
  assert.equal(free.estimated, false);
  // gpt-4o-mini: $0.15 / $0.60 per million
  assert.ok(Math.abs(free.usd_prompt - 18 * 0.15e-6) < 1e-12);
  assert.ok(Math.abs(free.usd_output_cap - 10 * 0.6e-6) < 1e-12);
  assert.equal(est.routes.find((x) => x.model === 'paced').output_tokens_cap, 100);
  assert.equal(est.unreadable, 1);
  assert.equal((await fakeStats()).chat_completions, before);
});
