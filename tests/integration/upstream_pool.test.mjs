// The upstream connection pool through the real gateway: curl's sockets stay
// registered with the event loop between transfers (src/upstream/http.c), so a
// pooled connection that the provider closes while it waits must neither hang
// nor break the next request, and no socket or descriptor may leak however
// often the provider goes away and comes back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import OpenAI from 'openai';
import { startFake, startGateway, testConfig, MASTER_KEY } from './lib/harness.mjs';

const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('pooled upstream connections the provider closes are replaced, and nothing leaks', async () => {
  let fake = await startFake();
  const port = fake.port;
  const gw = await startGateway({ config: (d) => testConfig(fake, d), args: ['--threads', '1'] });
  try {
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 10000 });
    const ask = () => c.chat.completions.create({
      model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'pool' }],
    });
    // Warm the pool with parallel requests (several connections), then settle.
    await Promise.all(Array.from({ length: 8 }, ask));
    for (let i = 0; i < 5; i++) await ask();
    const base = fds(gw.proc.pid);
    for (let round = 0; round < 4; round++) {
      // The provider dies with pooled connections open: each parked socket turns
      // readable (EOF) while no transfer uses it.
      fake.proc.kill('SIGKILL');
      await new Promise((r) => fake.proc.once('exit', r));
      await sleep(100);
      // Down: requests fail cleanly and fast, not hang.
      await assert.rejects(ask(), (e) => e.status >= 500);
      fake = await startFake([], { port });
      // Back: every request is answered, on new connections.
      await Promise.all(Array.from({ length: 8 }, ask));
      for (let i = 0; i < 5; i++) {
        const r = await ask();
        assert.match(r.choices[0].message.content, /simulated/);
      }
    }
    await sleep(200);
    const after = fds(gw.proc.pid);
    assert.ok(after <= base + 2, `descriptors grew from ${base} to ${after}`);
  } finally { await gw.stop(); gw.cleanup(); await fake.stop(); }
});
