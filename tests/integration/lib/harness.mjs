// harness.mjs - start the real ahorro binary and the fake provider on loopback,
// and read the ledger the gateway wrote, for the integration tests.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

// (import.meta.dirname needs Node 20.11; Debian 12 ships Node 18.)
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const AHORRO_BIN = process.env.AHORRO_BIN || join(ROOT, 'build/ahorro');
export const FAKE_BIN = process.env.AHORRO_FAKE_BIN || join(ROOT, 'build/ahorro-fake');
export const MASTER_KEY = 'sk-master-test-0123456789';
export const PROVIDER_KEY = 'sk-provider-secret-key-do-not-leak';
// The test config reads one key from the environment (os.environ/...), as LiteLLM's do;
// offline commands (ahorro keys, ahorro report) load the same config.
process.env.TEST_ANTHROPIC_KEY = PROVIDER_KEY;

export async function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

// Spawn a program and resolve once it prints a line matching `ready`.
function startProcess(bin, args, env, ready, name) {
  return new Promise((res, rej) => {
    const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    const timer = setTimeout(() => rej(new Error(`${name} did not start: ${out}\n${err}`)), 10000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(ready);
      if (m) { clearTimeout(timer); res({ proc, match: m, logs: () => err }); }
    });
    proc.stderr.on('data', (d) => { err += d; if (err.length > 1e6) err = err.slice(-5e5); });
    // 'close', not 'exit': the last of stderr may arrive after the exit, and a
    // refused start must carry its message (a race seen under load in CI)
    proc.on('close', (code) => { clearTimeout(timer); rej(new Error(`${name} exited ${code}: ${err}`)); });
  });
}

export async function startFake(extraArgs = [], { port: fixedPort } = {}) {
  const port = fixedPort || await freePort();
  const { proc } = await startProcess(FAKE_BIN,
    ['--listen', `127.0.0.1:${port}`, '--require-key', PROVIDER_KEY, ...extraArgs], {},
    /listening/, 'ahorro-fake');
  const url = `http://127.0.0.1:${port}`;
  return {
    port, url, proc,
    async last() { return (await fetch(`${url}/_fake/last`)).json(); },
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

// A LiteLLM-style config: every alias the tests use, all on the fake.
// Prices that give every answer a cost, for the tests that sum spend.
export const TEST_PRICE = 'input_cost_per_token: 0.000001, output_cost_per_token: 0.000002';
// One model_list entry: alias served by the fake as openai/<model>; extra are
// more litellm_params ("rpm: 3, weight: 10").
export function fakeAlias(alias, fake, { model = 'gpt-4o-mini', extra = '' } = {}) {
  return `  - model_name: ${alias}
    litellm_params: { model: openai/${model}, api_base: "http://127.0.0.1:${fake.port}/v1", api_key: "${PROVIDER_KEY}"${extra ? `, ${extra}` : ''} }
`;
}
// An instance's config for the shared-backend tests: the aliases (fakeAlias
// lines), the master key, the instance's own database, two threads, and more of
// the ahorro: section (lines indented two spaces).
export function instanceConfig(dir, aliases, ahorro = '') {
  return `model_list:
${aliases}general_settings:
  master_key: ${MASTER_KEY}
ahorro:
  db: ${join(dir, 'ahorro.db')}
  threads: 2
${ahorro}`;
}

export function testConfig(fake, dir, extra = '') {
  const o = `http://127.0.0.1:${fake.port}/v1`, a = `http://127.0.0.1:${fake.port}`;
  return `# written by tests/integration/lib/harness.mjs
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "${PROVIDER_KEY}" }
  - model_name: claude-3-5-haiku-latest
    litellm_params: { model: anthropic/claude-3-5-haiku-latest, api_base: "${a}", api_key: os.environ/TEST_ANTHROPIC_KEY }
  - model_name: gpt-on-claude
    litellm_params: { model: anthropic/claude-3-5-haiku-latest, api_base: "${a}", api_key: "${PROVIDER_KEY}" }
  - model_name: claude-on-gpt
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "${PROVIDER_KEY}" }
  - model_name: tiny
    litellm_params: { model: openai/fake-tiny, api_base: "${o}", api_key: "${PROVIDER_KEY}" }
  - model_name: slow
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "${PROVIDER_KEY}", timeout: 1.5, stream_timeout: 1 }
  - model_name: slow-claude
    litellm_params: { model: anthropic/claude-3-5-haiku-latest, api_base: "${a}", api_key: "${PROVIDER_KEY}", timeout: 1.5, stream_timeout: 1 }
  - model_name: text-embedding-3-small
    litellm_params: { model: openai/text-embedding-3-small, api_base: "${o}", api_key: "${PROVIDER_KEY}" }
  - model_name: priced-by-config
    litellm_params: { model: hosted_vllm/my-llama, api_base: "${o}", api_key: "${PROVIDER_KEY}", input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 }
  - model_name: azure-gpt
    litellm_params: { model: azure/my-deployment, api_base: "${a}", api_key: "${PROVIDER_KEY}", api_version: "2024-10-21" }
  - model_name: wrong-key
    litellm_params: { model: openai/gpt-4o-mini, api_base: "${o}", api_key: "sk-wrong-provider-key-123" }
general_settings:
  master_key: ${MASTER_KEY}
ahorro:
  db: ${join(dir, 'ahorro.db')}
  threads: 2
  limits: { max_body_bytes: 1048576 }
${extra}`;
}

// config: the YAML text, or a function of the folder that gets it; dir: reuse a folder
// (its database) from an earlier gateway, as a restart does.
export async function startGateway({ fake, config, env = {}, args = [], dir } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), 'ahorro-it-'));
  const cfgPath = join(dir, 'ahorro.yaml');
  const text = typeof config === 'function' ? config(dir) : config;
  writeFileSync(cfgPath, text ?? testConfig(fake, dir));
  const port = await freePort();
  const { proc, logs } = await startProcess(AHORRO_BIN,
    ['serve', '--config', cfgPath, '--listen', `127.0.0.1:${port}`, ...args],
    { TEST_ANTHROPIC_KEY: PROVIDER_KEY, AHORRO_MASTER_KEY: '', ...env },
    /listening on (http:\/\/\S+)/, 'ahorro');
  const url = `http://127.0.0.1:${port}`;
  const db = join(dir, 'ahorro.db');
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  return {
    url, port, proc, dir, db, cfgPath, logs,
    exited: () => exited,
    // Stop with SIGTERM; a clean drain exits 0 (under ASan, also: no leak at exit).
    async stop(signal = 'SIGTERM') {
      if (!exited) { proc.kill(signal); await new Promise((r) => proc.once('exit', r)); }
      if (signal === 'SIGTERM' && exited.code !== 0)
        throw new Error(`ahorro exited with ${JSON.stringify(exited)}: ${logs().slice(-4000)}`);
      return exited;
    },
    cleanup() { rmSync(dir, { recursive: true, force: true }); },
  };
}

// Rows of the ledger, read with the sqlite3 command line tool.
export function ledger(db, where = '1=1') {
  const out = execFileSync('sqlite3', ['-json', db, `SELECT * FROM ledger WHERE ${where} ORDER BY id`],
    { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}

// The ledger row of a request id; waits for the asynchronous writer.
export async function ledgerRow(db, requestId, timeoutMs = 5000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const rows = ledger(db, `request_id = '${requestId.replace(/'/g, "''")}'`);
    if (rows.length || Date.now() > until) {
      if (rows.length > 1) throw new Error(`request ${requestId} has ${rows.length} ledger rows`);
      return rows[0];
    }
    await sleep(25);
  }
}

export async function waitFor(pred, timeoutMs = 5000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v || Date.now() > until) return v;
    await sleep(25);
  }
}

// A private redis-server on a free loopback port, for killing and restarting
// (the tests' shared Redis, AHORRO_TEST_REDIS, is never stopped).
export async function startRedis(port) {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  const up = await waitFor(() => /Ready to accept connections/.test(out) || proc.exitCode !== null, 5000);
  if (!up || proc.exitCode !== null) throw new Error(`redis-server did not start: ${out}`);
  return {
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}
