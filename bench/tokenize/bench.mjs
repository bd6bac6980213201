// bench.mjs - tokens per second of the npm `tiktoken` (WASM of OpenAI's Rust
// tiktoken) or `js-tiktoken` (pure JS) on a corpus of JSON strings, one a
// line. Run by bench/tokenize/run.sh:
//
//   node bench.mjs tiktoken|js-tiktoken CORPUS.jsonl ENCODING ROUNDS
//
// Prints one line a round: "tokens seconds". Both encode ordinary text (special
// tokens as plain text), as ahorro's C tokenizer does by default.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../tests/tokenize/package.json'));
const [lib, corpusFile, encoding, roundsArg] = process.argv.slice(2);
const texts = fs.readFileSync(corpusFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

let encode;
if (lib === 'tiktoken') {
  const enc = require('tiktoken').get_encoding(encoding);
  encode = (t) => enc.encode_ordinary(t);
} else if (lib === 'js-tiktoken') {
  const enc = require('js-tiktoken').getEncoding(encoding);
  encode = (t) => enc.encode(t, [], []);
} else {
  console.error('usage: node bench.mjs tiktoken|js-tiktoken CORPUS.jsonl ENCODING ROUNDS');
  process.exit(2);
}
for (let r = 0; r < Number(roundsArg); r++) {
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (const t of texts) tokens += encode(t).length;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${tokens} ${dt.toFixed(6)}`);
}
