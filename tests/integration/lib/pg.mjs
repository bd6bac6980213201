// PostgreSQL for the tests of a shared ledger: the server scripts/test.sh starts
// (AHORRO_TEST_POSTGRES), and a database of each test's own.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export const PG = process.env.AHORRO_TEST_POSTGRES;
export const PGDATA = process.env.AHORRO_TEST_PGDATA;
export const skipPg = PG ? false : 'AHORRO_TEST_POSTGRES is not set (scripts/test.sh starts a PostgreSQL)';

// Run sql on url with psql; its output, trimmed.
export function psql(url, sql) {
  return execFileSync('psql', [url, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', maxBuffer: 256 << 20 }).trim();
}

// A database of the test's own, so that tests and runs never meet; its URL.
let dbs = 0;
export function freshDb() {
  const name = `ahorro_it_${process.pid}_${Date.now()}_${dbs++}`;
  psql(PG, `CREATE DATABASE ${name}`);
  const u = new URL(PG);
  u.pathname = `/${name}`;
  return u.toString();
}

// pg_ctl on the test cluster (as the postgres user when root), e.g. pgCtl('stop', '-D', PGDATA).
export function pgCtl(...args) {
  const bin = join(process.env.AHORRO_TEST_PG_BIN || '/usr/lib/postgresql/15/bin', 'pg_ctl');
  const cmd = process.getuid() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  execFileSync(cmd[0], cmd[1], { stdio: 'ignore' });
}
