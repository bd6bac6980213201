// compare.mjs - ahorro's C tokenizer against OpenAI's tiktoken (the npm
// `tiktoken` package: the WASM build of the Rust tiktoken), token id for token
// id, on the corpus of corpus.mjs, for o200k_base and cl100k_base; ordinary
// text, then with special tokens allowed on texts that hold them.
// Exits 1 on any mismatch. Run after scripts/build-tokenizers.sh and a build:
//
//   cd tests/tokenize && npm ci && node compare.mjs [--bin ../../build/ahorro]
//       [--data-dir ../../build/data] [--corpus-out FILE.jsonl] [--quick]
//
// The binary is run once per encoding as `ahorro tokens --jsonl --ids`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { get_encoding } from 'tiktoken';
import { buildCorpus } from './corpus.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const BIN = path.resolve(opt('--bin', process.env.AHORRO_BIN || path.join(HERE, '../../build/ahorro')));
const DATA = path.resolve(opt('--data-dir', path.join(HERE, '../../build/data')));
const quick = args.includes('--quick');
const SPECIALS = ['<|endoftext|>', '<|endofprompt|>', '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>'];

const corpus = buildCorpus(quick ? { synthetic: 300, localeBytes: 200_000 } : {});
// Texts with special tokens, for the --special run.
const special = [
  '<|endoftext|>', 'a<|endoftext|>b', 'Hello <|endofprompt|> world', '<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>',
  '<|endoftext|><|endoftext|>', '<|endoftext', '<|not_special|> <|endoftext|>\n\n', ' <|endoftext|> ',
];
for (let i = 0; i < 200 && i < corpus.length; i += 7) {
  const t = corpus[i].text.slice(0, 2000);
  const cut = Math.floor(t.length / 2);
  if (!/[\ud800-\udfff]/.test(t[cut]) && !/[\ud800-\udfff]/.test(t[cut - 1] || '')) special.push(t.slice(0, cut) + SPECIALS[i % SPECIALS.length] + t.slice(cut));
}

const corpusOut = opt('--corpus-out');
if (corpusOut) fs.writeFileSync(corpusOut, corpus.map((c) => JSON.stringify(c.text)).join('\n') + '\n');

if (!fs.existsSync(BIN)) {
  console.error(`compare.mjs: no binary at ${BIN} (build first, or give --bin)`);
  process.exit(2);
}

function runAhorro(encoding, texts, withSpecial) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ahorro-tok-'));
  const file = path.join(tmp, 'in.jsonl');
  fs.writeFileSync(file, texts.map((t) => JSON.stringify(t)).join('\n') + '\n');
  const argv = ['tokens', '--encoding', encoding, '--jsonl', '--ids', '--data-dir', DATA, file];
  if (withSpecial) argv.push('--special');
  const r = spawnSync(BIN, argv, { maxBuffer: 1 << 30, encoding: 'utf8', env: { ...process.env, AHORRO_LOG: 'error' } });
  fs.rmSync(tmp, { recursive: true, force: true });
  if (r.status !== 0) {
    console.error(`ahorro tokens failed (${r.status}): ${r.stderr}`);
    process.exit(1);
  }
  const lines = r.stdout.trimEnd().split('\n');
  if (lines.length !== texts.length) {
    console.error(`ahorro tokens: ${lines.length} results for ${texts.length} texts`);
    process.exit(1);
  }
  return lines.map((l) => JSON.parse(l).ids);
}

function show(text, i) {
  const s = JSON.stringify(text.slice(Math.max(0, i - 20), i + 40));
  return s.length > 200 ? s.slice(0, 200) + '...' : s;
}

let failures = 0;
const summary = [];
for (const encoding of ['o200k_base', 'cl100k_base']) {
  const enc = get_encoding(encoding);
  for (const withSpecial of [false, true]) {
    const texts = withSpecial ? special : corpus.map((c) => c.text);
    const ours = runAhorro(encoding, texts, withSpecial);
    let tokens = 0, bytes = 0, mismatches = 0;
    const bySource = {};
    for (let i = 0; i < texts.length; i++) {
      const want = Array.from(withSpecial ? enc.encode(texts[i], 'all') : enc.encode_ordinary(texts[i]));
      const got = ours[i];
      tokens += want.length;
      bytes += Buffer.byteLength(texts[i]);
      const src = withSpecial ? 'special' : corpus[i].source;
      bySource[src] = bySource[src] || { texts: 0, tokens: 0, mismatches: 0 };
      bySource[src].texts++;
      bySource[src].tokens += want.length;
      let k = 0;
      while (k < want.length && k < got.length && want[k] === got[k]) k++;
      if (k === want.length && k === got.length) continue;
      mismatches++;
      bySource[src].mismatches++;
      if (failures + mismatches <= 10) {
        // Where in the text: the bytes of the matching prefix.
        const prefix = Buffer.from(enc.decode(new Uint32Array(want.slice(0, k)))).toString('utf8').length;
        console.error(`MISMATCH ${encoding}${withSpecial ? ' (special)' : ''} text ${i} (${src}) at token ${k}: ` +
          `tiktoken ${JSON.stringify(want.slice(k, k + 6))} ahorro ${JSON.stringify(got.slice(k, k + 6))} near ${show(texts[i], prefix)}`);
      }
    }
    failures += mismatches;
    const line = `${encoding}${withSpecial ? ' +special' : ''}: ${texts.length} texts, ${bytes} bytes, ${tokens} tokens, ${mismatches} mismatching texts`;
    summary.push(line);
    for (const [src, s] of Object.entries(bySource)) summary.push(`    ${src}: ${s.texts} texts, ${s.tokens} tokens, ${s.mismatches} mismatches`);
  }
  enc.free();
}
console.log(summary.join('\n'));
console.log(failures ? `tokenizer compare: ${failures} mismatching texts` : 'tokenizer compare: ids identical to tiktoken');
process.exit(failures ? 1 : 0);
