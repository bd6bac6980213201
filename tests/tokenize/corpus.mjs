// corpus.mjs - the mixed corpus the tokenizer is checked (compare.mjs) and
// timed (bench/tokenize/run.sh) on. Deterministic: the same repository tree
// gives the same texts. Four parts:
//   repo      every text file of this repository (C, shell, JS, Markdown, JSON,
//             YAML): code, English prose, long digit runs (the Unicode table)
//   prose     hand-written sentences in 30 languages and 20 scripts
//   synthetic seeded random texts aimed at the pre-tokenizer's edges: every
//             script, case mixes, contractions (also U+017F), emoji with ZWJ,
//             skin tones, flags and keycaps, combining marks, Unicode 16 letters,
//             random code points from all planes, long runs of whitespace (all
//             White_Space characters), digits, punctuation, one letter, CJK
//   locale    translated messages from the machine's gettext catalogues
//             (/usr/share/locale/*/LC_MESSAGES/*.mo), when there are any
// No lone surrogates: tiktoken takes Rust strings.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TEXT_EXT = new Set(['.c', '.h', '.sh', '.mjs', '.js', '.md', '.json', '.yaml', '.yml', '.lua', '.txt', '.py']);
const SKIP_DIRS = new Set(['node_modules', '.git', '.tmp']);
const MAX_FILE_BYTES = 512 * 1024;

function mulberry32(seed) {
  return function () {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function repoTexts() {
  const out = [];
  const walk = (dir) => {
    for (const name of fs.readdirSync(dir).sort()) {
      if (SKIP_DIRS.has(name) || name.startsWith('build')) continue;
      const p = path.join(dir, name);
      const st = fs.statSync(p);
      if (st.isDirectory()) walk(p);
      else if (TEXT_EXT.has(path.extname(name)) && st.size <= MAX_FILE_BYTES) {
        const t = fs.readFileSync(p, 'utf8');
        if (!t.includes('\ufffd')) out.push({ file: path.relative(ROOT, p), text: t });
      }
    }
  };
  for (const d of ['src', 'docs', 'scripts', 'tests', 'bench', 'fake', 'fuzz', 'tools', 'examples', 'data']) {
    const p = path.join(ROOT, d);
    if (fs.existsSync(p)) walk(p);
  }
  for (const f of ['README.md', 'Makefile']) {
    const p = path.join(ROOT, f);
    if (fs.existsSync(p)) out.push({ file: f, text: fs.readFileSync(p, 'utf8') });
  }
  return out;
}

const PROSE = [
  "The quick brown fox jumps over the lazy dog. It's 5 o'clock, and we'LL see; they'RE done, I'd say.",
  "Don't panic! She's said what's what: you've GOT to read the manual — twice.",
  'Le cœur a ses raisons que la raison ne connaît point. Où est l’hôtel ? À bientôt, ça va très bien.',
  'Über allen Gipfeln ist Ruh. Die Straße heißt „Große Allee“, Größe: 12×34 cm.',
  'El niño comió paella en la playa; ¿qué tal? ¡Olé! Año 2024, señor Núñez.',
  'A ação e a reação são iguais; não há coração sem emoção. Informações: São Paulo.',
  'Nel mezzo del cammin di nostra vita mi ritrovai per una selva oscura.',
  'Zażółć gęślą jaźń. Chrząszcz brzmi w trzcinie w Szczebrzeszynie.',
  'Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul’da ılık bir gün.',
  'Tiếng Việt có dấu: Người ta thường nói rằng học, học nữa, học mãi.',
  'Съешь же ещё этих мягких французских булок, да выпей чаю. Ёжик в тумане.',
  'Жовтий птах співає над рікою; ґанок, їжак, єнот.',
  'Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η Ελλάδα είναι όμορφη.',
  'الخط العربي جميل جدا، وهذه جملة للاختبار ١٢٣٤٥٦٧٨٩٠ مع أرقام.',
  'עברית נכתבת מימין לשמאל, וגם מספרים כמו 2024 משולבים בה.',
  'این یک جملهٔ فارسی است با اعداد ۱۲۳۴۵ و نیم‌فاصله.',
  'हिन्दी में यह एक परीक्षण वाक्य है। संख्या: १२३४५।',
  'বাংলা ভাষায় একটি বাক্য; সংখ্যা ১২৩।',
  'தமிழ் ஒரு பழமையான மொழி ஆகும்.',
  'ภาษาไทยไม่มีการเว้นวรรคระหว่างคำแต่ใช้เว้นวรรคระหว่างประโยค',
  '我们今天去公园散步，天气非常好！你呢？中华人民共和国成立于一九四九年。',
  '吾輩は猫である。名前はまだ無い。カタカナとひらがなと漢字が混ざっています。',
  '다람쥐 헌 쳇바퀴에 타고파. 한국어 문장입니다; 숫자 123과 함께.',
  'ქართული ენა ძალიან ლამაზია.',
  'Հայերենը հնդեվրոպական լեզու է։',
  'ሰላም ለዓለም፤ አማርኛ ቋንቋ ነው።',
  'Ελληνικά και English mixed: naïve café résumé coöperate façade.',
  'ǅemal ǈubović ǋegoš: titlecase digraphs; ʰmodifier ʲletters ˤhere.',
  'Ⅻ Roman numerals Ⅷ and ½ ¾ ² ³ superscripts; ① ② ③ circled.',
  'Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　１２３，ｗｉｔｈ　ｉｄｅｏｇｒａｐｈｉｃ　ｓｐａｃｅ。',
];

// Code point ranges per script, for random words.
const SCRIPTS = [
  [0x61, 0x7a], [0x41, 0x5a], [0xc0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x531, 0x58f],
  [0x5d0, 0x5ea], [0x620, 0x64a], [0x660, 0x669], [0x900, 0x97f], [0x980, 0x9ff], [0xb80, 0xbff],
  [0xe00, 0xe7f], [0x10a0, 0x10ff], [0x1100, 0x11ff], [0x1200, 0x137f], [0x1e00, 0x1eff],
  [0x3040, 0x309f], [0x30a0, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xff01, 0xff5e],
  [0x1d400, 0x1d7ff], [0x20000, 0x2a6df], [0x31350, 0x323af], [0x2ebf0, 0x2ee5d],
  [0x11f00, 0x11f59], [0x1e4d0, 0x1e4f9], [0x1e5d0, 0x1e5fa], [0x16d40, 0x16d79], [0x10d40, 0x10d8f],
  [0x1f600, 0x1f64f], [0x2000, 0x206f], [0x300, 0x36f], [0x1ab0, 0x1aff], [0x20d0, 0x20ff],
];
const WHITESPACE = [' ', ' ', ' ', '\t', '\n', '\r\n', '\r', '\v', '\f', '\u0085', '\u00a0', '\u1680',
  '\u2000', '\u2007', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\u200b', '\ufeff'];
const PUNCT = ['.', ',', '!', '?', ';', ':', '-', '—', '(', ')', '[', ']', '{', '}', '"', "'", '/', '\\',
  '#', '$', '%', '&', '*', '+', '=', '<', '>', '|', '~', '`', '^', '_', '@', '«', '»', '…', '•', '€', '™'];
const CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'VE", "'m", "'M", "'ll",
  "'LL", "'lL", "'d", "'D", "'ſ", "'x", "'", "’s"];
const EMOJI = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇪🇸', '🇯🇵', '1️⃣', '#️⃣', '❤️', '✨', '🧑🏿‍💻', '🫠',
  '👩‍⚕️', '☺️', '🐈‍⬛', '🤌🏻'];

function cp(n) {
  if (n >= 0xd800 && n <= 0xdfff) n += 0x800;
  return String.fromCodePoint(n);
}

function synthetic(rnd, count) {
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  const word = () => {
    const [lo, hi] = pick(SCRIPTS);
    let w = '';
    const len = int(1, 12);
    for (let i = 0; i < len; i++) w += cp(int(lo, hi));
    const r = rnd();
    if (r < 0.1) w = w.toUpperCase();
    else if (r < 0.2) w = w[0].toUpperCase() + w.slice(1);
    if (rnd() < 0.1) w += pick(CONTRACTIONS);
    if (rnd() < 0.1) w += cp(int(0x300, 0x36f)) + (rnd() < 0.5 ? cp(int(0x300, 0x36f)) : '');
    return w;
  };
  const texts = [];
  for (let t = 0; t < count; t++) {
    let s = '';
    const parts = int(5, 120);
    for (let i = 0; i < parts; i++) {
      const r = rnd();
      if (r < 0.45) s += word();
      else if (r < 0.55) s += pick(PUNCT).repeat(int(1, 4));
      else if (r < 0.63) {
        let d = '';
        const len = int(1, 14);
        for (let k = 0; k < len; k++) d += rnd() < 0.9 ? String(int(0, 9)) : cp(pick([0x661, 0x967, 0xff11, 0x2460, 0xbd, 0x2163]));
        s += d;
      } else if (r < 0.7) s += pick(EMOJI);
      else if (r < 0.75) s += cp(int(0x80, 0x10ffff));
      else if (r < 0.8) {
        let w = '';
        const len = int(1, 6);
        for (let k = 0; k < len; k++) w += pick(WHITESPACE);
        s += w;
      } else if (r < 0.82) s += pick(CONTRACTIONS);
      else s += ' ';
    }
    texts.push(s);
  }
  // Long runs: the merge's heap path, the whitespace and digit rules.
  const runs = [
    ' '.repeat(10000), ' '.repeat(9999) + 'x', '\n'.repeat(5000), ' \n'.repeat(3000) + ' a',
    '\t'.repeat(300) + '\r\n'.repeat(300) + '  end', '\u3000'.repeat(2000) + '字',
    '1234567890'.repeat(1000), '٣'.repeat(999), 'a'.repeat(6000), 'ab'.repeat(3000),
    'A'.repeat(4000) + 'bcd', '!'.repeat(5000), '-'.repeat(3000) + '\n' + '='.repeat(3000),
    'é'.repeat(2000), 'e\u0301'.repeat(2000), '🙂'.repeat(1500), '中'.repeat(3000),
    'ภาษาไทย'.repeat(500), 'Ü'.repeat(100) + 'ber'.repeat(100),
  ];
  for (const r of runs) texts.push(r);
  // Random base64 and hex: long letter pieces with real merges.
  let b64 = '', hex = '';
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 20000; i++) b64 += B64[int(0, 63)];
  for (let i = 0; i < 20000; i++) hex += '0123456789abcdef'[int(0, 15)];
  texts.push(b64, hex);
  // Marks after every kind of character (o200k: a mark is both prefix and letter).
  for (const pre of ['', ' ', '!', '\n', 'A', 'a', 'ǅ', 'ʰ', '字', '1', "'"]) {
    for (const mark of ['\u0301', '\u0301\u0308', '\u20dd', '\u0903']) {
      texts.push(pre + mark + 'ABC def' + mark + "'s x" + mark + 'DEF' + mark + 'ghi');
    }
  }
  return texts;
}

// Strings of a GNU gettext .mo file (its translations), or [].
function moStrings(file) {
  const b = fs.readFileSync(file);
  if (b.length < 28) return [];
  const magic = b.readUInt32LE(0);
  const rd = magic === 0x950412de ? (o) => b.readUInt32LE(o) : magic === 0xde120495 ? (o) => b.readUInt32BE(o) : null;
  if (!rd) return [];
  const n = rd(8), trans = rd(16), out = [];
  for (let i = 0; i < n; i++) {
    const len = rd(trans + i * 8), off = rd(trans + i * 8 + 4);
    if (off + len > b.length) return [];
    const s = b.subarray(off, off + len).toString('utf8');
    if (s && !s.includes('\ufffd')) out.push(s.replace(/\0/g, '\n'));
  }
  return out;
}

function localeTexts(maxBytes) {
  const base = '/usr/share/locale';
  if (!fs.existsSync(base)) return [];
  const out = [];
  let bytes = 0;
  for (const lang of fs.readdirSync(base).sort()) {
    const dir = path.join(base, lang, 'LC_MESSAGES');
    if (!fs.existsSync(dir)) continue;
    let langBytes = 0;
    for (const f of fs.readdirSync(dir).sort()) {
      if (!f.endsWith('.mo')) continue;
      let chunk = '';
      for (const s of moStrings(path.join(dir, f))) {
        chunk += s + '\n';
        if (chunk.length > 4000) { out.push(chunk); langBytes += chunk.length; chunk = ''; }
      }
      if (chunk) { out.push(chunk); langBytes += chunk.length; }
      if (langBytes > maxBytes / 40) break;
    }
    bytes += langBytes;
    if (bytes > maxBytes) break;
  }
  return out;
}

// The corpus: [{source, text}] (repository texts also carry `file`, relative).
export function buildCorpus({ seed = 20240611, synthetic: nSyn = 3000, localeBytes = 2_000_000 } = {}) {
  const rnd = mulberry32(seed);
  const corpus = [];
  for (const { file, text } of repoTexts()) corpus.push({ source: 'repo', file, text });
  for (const text of PROSE) corpus.push({ source: 'prose', text });
  corpus.push({ source: 'prose', text: PROSE.join('\n\n') });
  for (const text of synthetic(rnd, nSyn)) corpus.push({ source: 'synthetic', text });
  for (const text of localeTexts(localeBytes)) corpus.push({ source: 'locale', text });
  return corpus;
}
