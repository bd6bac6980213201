// bench/batch/check.mjs - the figures of bench/batch/run.sh from its files: the
// output and error files (lost, duplicated), and the fake provider's own request log
// (requests received, 429s, the most requests per model in any sliding 60 s window).
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const [W, N, LAT, SLOW, FAST, CONC, KILL_AT, W1, R1, C1, D1, W2, R2, C2] = process.argv.slice(2);
const n = +N;
const lines = (p) => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean) : []);
const out = lines(join(W, 'out.jsonl')).map((l) => JSON.parse(l));
const errs = lines(join(W, 'out.errors.jsonl')).map((l) => JSON.parse(l));
const ids = new Map();
for (const x of [...out, ...errs]) ids.set(x.custom_id, (ids.get(x.custom_id) || 0) + 1);
let dup = 0;
for (const c of ids.values()) if (c > 1) dup += c - 1;
let missing = 0;
for (let i = 0; i < n; i++) if (!ids.has(`doc-${i}`)) missing++;
const status = {};
for (const x of out) status[x.response.status_code] = (status[x.response.status_code] || 0) + 1;

const log = lines(join(W, 'fake.log')).map((l) => JSON.parse(l)).filter((x) => x.path?.includes('chat'));
const perModel = {};
for (const x of log) (perModel[x.model] ??= []).push(x);
const worst = {};
let r429 = 0;
for (const [m, xs] of Object.entries(perModel)) {
  const t = xs.filter((x) => x.status !== 429).map((x) => x.t_ms).sort((a, b) => a - b);
  r429 += xs.length - t.length;
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i] - t[j] >= 60000) j++;
    best = Math.max(best, i - j + 1);
  }
  worst[m] = { requests: xs.length, answered: t.length, max60: best };
}
const ideal = (n / (+SLOW + +FAST)) * 60 + +LAT / 1000;
const wall = +W1 + +W2;
const p = [];
p.push('# `ahorro batch run`: 100,000 requests within rate limits, killed and resumed');
p.push('');
p.push(`Written by \`bench/batch/run.sh\` on ${new Date().toISOString().slice(0, 10)} (2 cores). Method: \`docs/batch.md\`, "Measured".`);
p.push('');
p.push(`Setup: ${n} requests to the alias \`bulk\`, two deployments on the fake provider: gpt-4o-mini at ${SLOW} RPM and gpt-4o at ${FAST} RPM (configured in the gateway, and enforced by the fake over a sliding minute with 429 + Retry-After). The fake answers after ${LAT} ms. Concurrency ${CONC}. The first run is killed with SIGKILL when ${(100 * +KILL_AT).toFixed(0)}% of the lines are done; the same command is run again.`);
p.push('');
p.push('| measure | value |');
p.push('|---|---:|');
p.push(`| ideal wall time (N / ${+SLOW + +FAST} per minute + one answer) | ${ideal.toFixed(1)} s |`);
p.push(`| wall time, both runs | ${wall.toFixed(1)} s (${(ideal / wall * 100).toFixed(1)}% of the ideal rate) |`);
p.push(`| first run: wall, peak RSS, lines done when killed | ${(+W1).toFixed(1)} s, ${(+R1 / 1024).toFixed(1)} MiB, ${D1} (exit ${C1}) |`);
if (+W2) p.push(`| second run (resume): wall, peak RSS | ${(+W2).toFixed(1)} s, ${(+R2 / 1024).toFixed(1)} MiB (exit ${C2}) |`);
p.push(`| lines in the output file / error file | ${out.length} / ${errs.length} (statuses: ${JSON.stringify(status)}) |`);
p.push(`| lines lost / answered twice | ${missing} / ${dup} |`);
p.push(`| requests the fake received (its log) | ${log.length} (${log.length - n} more than the lines: sent again after the kill, or retried after a 429) |`);
p.push(`| 429s the fake answered | ${r429} |`);
for (const [m, w] of Object.entries(worst))
  p.push(`| ${m}: answered, most in any 60 s window (limit) | ${w.answered}, ${w.max60} (${m === 'gpt-4o' ? FAST : SLOW}) |`);
p.push('');
console.log(p.join('\n'));
