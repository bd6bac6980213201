// bench/semcache/replay.mjs - the Banking77 customer-support workload replayed through the
// real gateway with the semantic cache on, at several thresholds.
//
//   node bench/semcache/replay.mjs [thresholds, default 0.85,0.90,0.93,0.95]
//   node bench/semcache/replay.mjs --intents [confidences, default 0.7,0.8,0.9]
//
// For each threshold: a fresh build/ahorro-fake and build/ahorro (semantic cache on the
// route, built-in SIF embedder), then the 10,003 queries of banking77-train.csv one at a time
// in a fixed shuffled order (seed 77). The fake's answer quotes the prompt it answered, so a
// hit's answer names the stored query it came from: the hit is right when that query has the
// same intent. Prints a table and writes bench/semcache/REPLAY.md. This checks, end to end,
// the offline replay of eval.c (its order differs, so the figures differ a little).
// With --intents: the route learns from a labelled history (cache.intents, src/cache/intent.c):
// one half of the order is the history, the other half is replayed alone, then the halves
// swap; writes bench/semcache/REPLAY_INTENTS.md (bench/semcache/intent.c is its offline twin,
// with the same halves).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DATA = process.env.SEMCACHE_BANKING || '/work/shared/data/workloads/banking77-train.csv';
const VECTORS = process.env.SEMCACHE_VECTORS || join(ROOT, 'build/data/sif-100d.bin');
const INTENTS = process.argv.includes('--intents');
const args = process.argv.slice(2).filter((a) => a !== '--intents');
const thresholds = (args[0] || (INTENTS ? '0.7,0.8,0.9' : '0.85,0.90,0.93,0.95')).split(',').map(Number);

function parseCsv(text) {
  const rows = [];
  let row = [], field = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') q = false; else field += c;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(field); field = ''; } else if (c === '\n') { row.push(field); rows.push(row); row = []; field = ''; } else if (c !== '\r') field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

function mulberry32(a) {
  return () => { a |= 0; a = (a + 0x6d2b79f5) | 0; let t = Math.imul(a ^ (a >>> 15), 1 | a); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

function start(bin, args, ready) {
  return new Promise((res, rej) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AHORRO_LOG: 'warn', AHORRO_MASTER_KEY: '' } });
    let out = '';
    const t = setTimeout(() => rej(new Error(`${bin} did not start`)), 10000);
    p.stdout.on('data', (d) => { out += d; if (ready.test(out)) { clearTimeout(t); res(p); } });
    p.stderr.on('data', () => {});
    p.on('exit', (c) => { clearTimeout(t); rej(new Error(`${bin} exited ${c}`)); });
  });
}

const rows = parseCsv(readFileSync(DATA, 'utf8')).slice(1).filter((r) => r.length === 2);
const SEED = Number(process.env.SEMCACHE_SEED || 77); // another order: another split, for a check
const rnd = mulberry32(SEED);
const order = rows.map((_, i) => i);
for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }

async function replay(routeYaml, queries, files = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ahorro-replay-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const fport = 18700 + Math.floor(Math.random() * 200), gport = fport + 300;
  const fake = await start(join(ROOT, 'build/ahorro-fake'), ['--listen', `127.0.0.1:${fport}`, '--threads', '1'], /listening/);
  writeFileSync(join(dir, 'c.yaml'), `model_list:
  - model_name: bank-bot
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:${fport}/v1", api_key: x }
ahorro:
  db: ${join(dir, 'a.db')}
  threads: 2
  cache: { exact: true, persist: false, embedder_path: ${VECTORS}, routes: { bank-bot: { semantic: true, ${routeYaml.replaceAll('DIR', dir)} } } }
`);
  const gw = await start(join(ROOT, 'build/ahorro'), ['serve', '--config', join(dir, 'c.yaml'), '--listen', `127.0.0.1:${gport}`], /listening on/);
  const byAnswer = new Map(); // answer text -> intent of the query that produced it
  let hits = 0, right = 0, exact = 0, semantic = 0, n = 0;
  const t0 = Date.now();
  for (const i of queries) {
    const [text, intent] = rows[i];
    const res = await fetch(`http://127.0.0.1:${gport}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'bank-bot', temperature: 0, messages: [{ role: 'system', content: 'You are the assistant of a bank.' }, { role: 'user', content: text }] }),
    });
    const body = await res.json();
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
    const answer = body.choices[0].message.content;
    const kind = res.headers.get('x-ahorro-cache');
    n++;
    if (kind === 'exact' || kind === 'semantic') {
      hits++;
      if (kind === 'exact') exact++; else semantic++;
      if (byAnswer.get(answer) === intent) right++;
    } else if (!byAnswer.has(answer)) {
      byAnswer.set(answer, intent);
    }
  }
  const secs = (Date.now() - t0) / 1000;
  gw.kill('SIGTERM'); fake.kill('SIGTERM');
  await sleep(300);
  rmSync(dir, { recursive: true, force: true });
  return { n, hitRate: hits / n, precision: hits ? right / hits : 0, exact, semantic, rps: n / secs };
}

const csvField = (s) => (/[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
const history = (idx) => ['text,category', ...idx.map((i) => `${csvField(rows[i][0])},${csvField(rows[i][1])}`)].join('\n') + '\n';

const head = `Written by \`node bench/semcache/replay.mjs${INTENTS ? ' --intents' : ''}\` on ${new Date().toISOString().slice(0, 10)}: `;
let md;
if (!INTENTS) {
  const results = [];
  for (const t of thresholds) {
    const r = { t, ...(await replay(`similarity_threshold: ${t}`, order)) };
    results.push(r);
    console.log(`threshold ${t}: hit rate ${r.hitRate.toFixed(3)} precision ${r.precision.toFixed(3)} (exact ${r.exact}, semantic ${r.semantic}) ${r.rps.toFixed(0)} req/s`);
  }
  md = ['# Banking77 replayed through the gateway', '',
    head + `${rows.length} queries, one at a time, in a fixed`,
    `shuffled order (seed ${SEED}), through build/ahorro (semantic cache on, built-in SIF embedder) and the fake`,
    'provider. A hit is right when the stored query it answers with has the same intent.', '',
    '| threshold | hit rate | precision | exact hits | semantic hits | req/s (sequential) |', '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.t.toFixed(2)} | ${r.hitRate.toFixed(3)} | ${r.precision.toFixed(3)} | ${r.exact} | ${r.semantic} | ${r.rps.toFixed(0)} |`), ''];
} else {
  // the labelled history of one half trains the route's classifier; the other half is replayed
  const mid = Math.floor(order.length / 2);
  const halves = [['A', order.slice(0, mid)], ['B', order.slice(mid)]];
  const results = [];
  for (const c of thresholds) {
    for (const [name, train] of halves) {
      const [, test] = halves.find(([n]) => n !== name);
      const r = { c, train: name, ...(await replay(`intents: DIR/history.csv, intent_confidence: ${c}`, test, { 'history.csv': history(train) })) };
      results.push(r);
      console.log(`confidence ${c}, trained on ${name}: hit rate ${r.hitRate.toFixed(3)} precision ${r.precision.toFixed(3)} (semantic ${r.semantic}) ${r.rps.toFixed(0)} req/s`);
    }
  }
  md = ['# Banking77 replayed through the gateway, with a labelled history', '',
    head + `the ${rows.length} queries in a fixed shuffled order (seed ${SEED})`,
    'cut in halves A and B; the route\'s `intents` file is one half (text,category), the other half is replayed',
    'alone, one query at a time, from an empty cache, through build/ahorro (semantic cache on, built-in SIF',
    'embedder) and the fake provider. A hit is right when the stored query it answers with has the same intent.', '',
    '| intent_confidence | trained on | replayed | hit rate | precision | semantic hits | req/s (sequential) |', '|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.c.toFixed(2)} | ${r.train} | ${r.train === 'A' ? 'B' : 'A'} (${r.n}) | ${r.hitRate.toFixed(3)} | ${r.precision.toFixed(3)} | ${r.semantic} | ${r.rps.toFixed(0)} |`), ''];
}
const outName = (INTENTS ? 'REPLAY_INTENTS' : 'REPLAY') + (SEED === 77 ? '' : `_seed${SEED}`) + '.md';
writeFileSync(join(ROOT, 'bench/semcache', outName), md.join('\n'));
