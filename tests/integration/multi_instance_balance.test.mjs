// Three gateway instances sharing one Redis hold a deployment's rpm together
// (docs/routing.md, "Rate limits across instances"): each counts the
// others' requests, seen through Redis every ~250 ms. With a second
// deployment of the alias, it takes what the limited one may not; alone,
// the limited one's alias answers 429 with the balancer's message. A
// Redis that cannot be reached leaves each instance its own window.
// Needs a Redis: AHORRO_TEST_REDIS=redis://127.0.0.1:PORT/0 (scripts/test.sh
// starts one); skipped without it, but for the last test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startFake, startGateway, freePort, waitFor, MASTER_KEY, fakeAlias, instanceConfig } from './lib/harness.mjs';

const REDIS = process.env.AHORRO_TEST_REDIS;
const skip = REDIS ? false : 'AHORRO_TEST_REDIS is not set (scripts/test.sh starts a Redis)';
const RPM = 30;
const INSTANCES = 3;
// Requests come in waves of WAVE, spread over the instances, PAUSE_MS apart:
// the sync (a new count sent within 50 ms, the others' read every 250 ms)
// shows each wave to the others before the next. Within a wave an instance
// does not see the others' new requests, so each may fill what it saw free:
// the total can pass the limit by at most (instances - 1) x the requests one
// instance takes in a wave.
const WAVE = Number(process.env.WAVE || 10);
const PAUSE_MS = 300;
const SLACK = (INSTANCES - 1) * Math.ceil(WAVE / INSTANCES);

let limited, spare;
before(async () => { [limited, spare] = await Promise.all([startFake(), startFake()]); });
after(async () => { await limited?.stop(); await spare?.stop(); });

const prefixOf = (name) => `ahorro-it-${process.pid}-${Date.now()}-${name}:`;
const calls = async (fake) => (await (await fetch(`${fake.url}/_fake/stats`)).json()).chat_completions;
const dep = (alias, fake, extra) => fakeAlias(alias, fake, { extra });

function config(dir, state, deps) {
  return instanceConfig(dir, deps, `  routing: { retries: 0 }
  state:
${state}
`);
}

async function startThree(state, deps) {
  const gws = [];
  try {
    for (let i = 0; i < INSTANCES; i++) gws.push(await startGateway({ config: (d) => config(d, state, deps) }));
  } catch (e) { await stopAll(gws); throw e; }
  return gws;
}
async function stopAll(gws) { for (const g of gws) { await g.stop(); g.cleanup(); } }

const clientOf = (gw) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0 });
const ask = (c, model) => c.chat.completions.create({
  model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 5,
});
// n requests to model in waves, round-robin over the instances.
async function waves(gws, model, n) {
  const clients = gws.map(clientOf), results = [];
  for (let i = 0; i < n; i += WAVE) {
    const wave = Array.from({ length: Math.min(WAVE, n - i) }, (_, k) => ask(clients[(i + k) % clients.length], model));
    results.push(...await Promise.allSettled(wave));
    await sleep(PAUSE_MS);
  }
  return results;
}
const sharedState = (name) => `    url: ${REDIS}\n    prefix: "${prefixOf(name)}"`;

test(`an rpm of ${RPM} holds across ${INSTANCES} instances; the alias's other deployment takes the rest`, { skip }, async () => {
  // weight: the limited deployment is preferred while it has room
  const deps = dep('pool', limited, `rpm: ${RPM}, weight: 1000`) + dep('pool', spare, '');
  const gws = await startThree(sharedState('pool'), deps);
  try {
    for (const g of gws) assert.match(g.logs(), /balance: rpm\/tpm of 1 deployment\(s\) counted across instances through Redis/);
    const [l0, s0] = [await calls(limited), await calls(spare)];
    const results = await waves(gws, 'pool', 3 * RPM);
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(failed.length, 0, String(failed[0]?.reason));
    const [l, s] = [await calls(limited) - l0, await calls(spare) - s0];
    console.log(`# limited deployment: ${l} requests (rpm ${RPM}, slack ${SLACK}); spare: ${s}`);
    assert.equal(l + s, 3 * RPM);
    assert.ok(l <= RPM + SLACK, `the limited deployment got ${l} > ${RPM} + ${SLACK}`);
    assert.ok(l >= RPM - 3, `the limited deployment got only ${l}`); // weight 1000:1
  } finally { await stopAll(gws); }
});

test(`alone, a deployment with rpm ${RPM} across ${INSTANCES} instances: the rest is refused with 429`, { skip }, async () => {
  const gws = await startThree(sharedState('solo'), dep('solo', limited, `rpm: ${RPM}`));
  try {
    const l0 = await calls(limited);
    const results = await waves(gws, 'solo', 3 * RPM);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results.filter((x) => x.status === 'rejected')) {
      assert.equal(r.reason.status, 429, String(r.reason));
      assert.match(r.reason.message, /Every deployment of model 'solo' is at its configured rate limit/);
      assert.ok(Number(r.reason.headers.get('retry-after')) >= 1);
    }
    const l = await calls(limited) - l0;
    console.log(`# solo: ${ok} of ${3 * RPM} passed (rpm ${RPM}, slack ${SLACK})`);
    assert.equal(l, ok);
    assert.ok(ok >= RPM && ok <= RPM + SLACK, `${ok} passed a limit of ${RPM} + ${SLACK}`);
    // every instance took part: the limit is shared, not split
    const per = await Promise.all(gws.map(async (g) =>
      (await (await fetch(`${g.url}/metrics`)).text()).match(/ahorro_deployment_attempts_total\{[^}]*result="ok"\} (\d+)/)?.[1]));
    assert.ok(per.every((x) => Number(x) > 0), `per instance: ${per}`);
  } finally { await stopAll(gws); }
});

test('Redis that cannot be reached: each instance keeps its own window, and says so', async () => {
  const port = await freePort(); // nothing listens there
  const state = `    url: redis://127.0.0.1:${port}/0\n    timeout_ms: 100\n    on_failure: open`;
  const gw = await startGateway({ config: (d) => config(d, state, dep('solo', limited, 'rpm: 3')) });
  try {
    const c = clientOf(gw);
    for (let i = 0; i < 3; i++) await ask(c, 'solo');
    const e = await ask(c, 'solo').then(() => null, (err) => err);
    assert.ok(e, 'the fourth request within the minute passed rpm 3');
    assert.equal(e.status, 429);
    assert.match(e.message, /at its configured rate limit/);
    assert.ok(await waitFor(() => /balance: Redis at 127\.0\.0\.1:\d+ cannot be reached .*counted by this instance only/.test(gw.logs()), 3000),
      gw.logs().slice(-2000));
  } finally { await gw.stop(); gw.cleanup(); }
});
