#!/usr/bin/env node
// build-mmlu.mjs - an MMLU evaluation data set, and the recorded answers that make
// ahorro-fake answer it as GPT-4 and Mixtral did.
//
// ## Usage
//
//   node bench/eval/build-mmlu.mjs --data ../shared/data/routing/mmlu \
//       --out-dataset mmlu.jsonl --out-answers mmlu-answers.jsonl \
//       [--subjects anatomy,astronomy,...] [--limit N] \
//       [--gpt4-model gpt-4-1106-preview] [--mixtral-model open-mixtral-8x7b]
//   build/ahorro-fake --answers mmlu-answers.jsonl
//
// Plain node >= 18, no npm packages. --data defaults to ../shared/data/routing/mmlu beside
// the repository. --subjects takes the CSV names without `mmlu_` and `.csv` (default: all
// 57, in file-name order); --limit N keeps the first N prompts of each subject in file
// order, counted after the contaminated prompts are removed. A summary goes to stderr.
//
// ## Input
//
// `mmlu_<subject>.csv`: `prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview`,
// the prompt a quoted multi-line field ending in "Answer:", each model column True or
// False (whether that model answered right). `contaminated_prompts.jsonl`: prompts whose
// `eval_prompt` text equals a CSV prompt exactly are left out (5 of 14,042).
//
// ## Output
//
// The data set, one row a prompt, for `ahorro eval`:
//
//   {"id":"anatomy/0","input":PROMPT,"reference":"C","choices":4,
//    "tags":{"subject":"anatomy"},"recorded":{"gpt4":true,"mixtral":false}}
//
// `id` is the subject and the prompt's 0-based row in its CSV (contaminated rows keep
// their numbers, so ids do not move when the list changes); `recorded` is the data's
// verdict on each model.
//
// The answers, for `ahorro-fake --answers` (docs/fake-provider.md, "Recorded answers"):
// one line a prompt and model, `{"model":M,"prompt":PROMPT,"answer":"The answer is X."}`,
// with X the reference when the data says the model was right, else a wrong letter.
//
// ## The answer key is synthetic
//
// The data records only whether each model was right, not which letter is correct. A
// stand-in key is derived from the prompt alone: with h the FNV-1a 32-bit hash of the
// prompt's UTF-8 bytes, the reference is 'A' + h % 4 and a wrong answer is
// 'A' + (h % 4 + 1 + h % 3) % 4, never the reference. Scoring the fake's answers against
// this key reproduces each model's recorded accuracy (GPT-4 80.6%, Mixtral 68.1% on the
// 14,037 prompts); the letters themselves say nothing about MMLU's real answers.
//
// 105 prompts appear in two subjects (clinical_knowledge and college_medicine share
// questions), 4 of them with records that disagree. The fake keys answers by model and
// prompt only, so the answers file holds one line per model and distinct prompt, from its
// first occurrence; a replay through the fake then scores those 4 rows by the first
// record. The summary prints both the recorded and the replayed accuracy.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEFAULT_DATA = resolve(ROOT, '../shared/data/routing/mmlu');
const COL_MIXTRAL = 'mistralai/Mixtral-8x7B-Instruct-v0.1';
const COL_GPT4 = 'gpt-4-1106-preview';
const CHOICES = 4;

function usage(msg) {
  if (msg) process.stderr.write(`build-mmlu: ${msg}\n`);
  process.stderr.write(
    'usage: node bench/eval/build-mmlu.mjs [--data DIR] --out-dataset FILE --out-answers FILE\n' +
    '         [--subjects a,b,...] [--limit N] [--gpt4-model NAME] [--mixtral-model NAME]\n');
  process.exit(2);
}

class DataError extends Error {}

// FNV-1a, 32 bits, over the UTF-8 bytes of s.
function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const letter = (i) => String.fromCharCode(65 + i);
const referenceIndex = (h) => h % CHOICES;
const wrongIndex = (h) => (referenceIndex(h) + 1 + (h % 3)) % CHOICES;

// RFC 4180 records of text: quoted fields may span lines and escape '"' as '""'. Yields
// { fields, line } with the line the record starts on; blank lines are skipped.
function* csvRecords(text, file) {
  let i = 0, line = 1;
  const n = text.length;
  const countLines = (a, b) => { for (let k = a; k < b; k++) if (text.charCodeAt(k) === 10) line++; };
  while (i < n) {
    const start = line, fields = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          const q = text.indexOf('"', i);
          if (q < 0) throw new DataError(`${file}:${start}: a quoted field is not closed`);
          field += text.slice(i, q);
          countLines(i, q);
          if (text[q + 1] === '"') { field += '"'; i = q + 2; continue; }
          i = q + 1;
          break;
        }
      } else {
        let j = i;
        while (j < n && text[j] !== ',' && text[j] !== '\n' && text[j] !== '\r') j++;
        field = text.slice(i, j);
        if (field.includes('"')) throw new DataError(`${file}:${line}: a quote inside an unquoted field`);
        i = j;
      }
      fields.push(field);
      if (text[i] === ',') { i++; continue; }
      if (text[i] === '\r' && text[i + 1] === '\n') i += 2;
      else if (text[i] === '\n') i++;
      else if (i < n) throw new DataError(`${file}:${line}: text after a closing quote`);
      line++;
      break;
    }
    if (fields.length === 1 && fields[0] === '') continue;
    yield { fields, line: start };
  }
}

function verdict(v, file, line, col) {
  if (v === 'True' || v === 'true') return true;
  if (v === 'False' || v === 'false') return false;
  throw new DataError(`${file}:${line}: ${col} is '${v}', not True or False`);
}

// The prompts of one subject's CSV, in file order: { index, prompt, gpt4, mixtral, line }.
function readSubject(file) {
  let text = readFileSync(file, 'utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows = [];
  let cols = null;
  for (const { fields, line } of csvRecords(text, file)) {
    if (!cols) {
      cols = { prompt: fields.indexOf('prompt'), mixtral: fields.indexOf(COL_MIXTRAL), gpt4: fields.indexOf(COL_GPT4) };
      for (const [k, v] of Object.entries(cols))
        if (v < 0) throw new DataError(`${file}:${line}: no '${k === 'prompt' ? 'prompt' : k === 'gpt4' ? COL_GPT4 : COL_MIXTRAL}' column`);
      cols.width = fields.length;
      continue;
    }
    if (fields.length !== cols.width)
      throw new DataError(`${file}:${line}: ${fields.length} fields, the header has ${cols.width}`);
    rows.push({
      index: rows.length,
      prompt: fields[cols.prompt],
      gpt4: verdict(fields[cols.gpt4], file, line, COL_GPT4),
      mixtral: verdict(fields[cols.mixtral], file, line, COL_MIXTRAL),
      line,
    });
  }
  return rows;
}

function readContaminated(file) {
  const out = new Set();
  let text;
  try { text = readFileSync(file, 'utf8'); } catch (e) {
    if (e.code === 'ENOENT') return out;
    throw e;
  }
  text.split('\n').forEach((l, k) => {
    if (!l.trim()) return;
    let o;
    try { o = JSON.parse(l); } catch { throw new DataError(`${file}:${k + 1}: not JSON`); }
    if (typeof o?.eval_prompt !== 'string') throw new DataError(`${file}:${k + 1}: no "eval_prompt" string`);
    out.add(o.eval_prompt);
  });
  return out;
}

const pct = (k, n) => (n ? (100 * k / n).toFixed(1) : '0.0') + '%';

function main() {
  let args;
  try {
    args = parseArgs({
      options: {
        data: { type: 'string', default: DEFAULT_DATA },
        'out-dataset': { type: 'string' },
        'out-answers': { type: 'string' },
        subjects: { type: 'string' },
        limit: { type: 'string' },
        'gpt4-model': { type: 'string', default: 'gpt-4-1106-preview' },
        'mixtral-model': { type: 'string', default: 'open-mixtral-8x7b' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    usage(e.message);
  }
  if (args.help) usage();
  if (!args['out-dataset'] || !args['out-answers']) usage('--out-dataset and --out-answers are required');
  let limit = Infinity;
  if (args.limit !== undefined) {
    if (!/^[1-9][0-9]*$/.test(args.limit)) usage(`--limit wants a positive integer, got '${args.limit}'`);
    limit = Number(args.limit);
  }
  const models = { gpt4: args['gpt4-model'], mixtral: args['mixtral-model'] };
  if (!models.gpt4 || !models.mixtral || models.gpt4 === models.mixtral)
    usage('--gpt4-model and --mixtral-model must be two different, non-empty names');

  let files;
  try {
    files = readdirSync(args.data).filter((f) => /^mmlu_.+\.csv$/.test(f)).sort();
  } catch (e) {
    usage(`--data ${args.data}: ${e.message}`);
  }
  const available = files.map((f) => f.slice(5, -4));
  if (!available.length) usage(`--data ${args.data}: no mmlu_*.csv files`);
  let subjects = available;
  if (args.subjects !== undefined) {
    subjects = args.subjects.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = subjects.filter((s) => !available.includes(s));
    if (!subjects.length || unknown.length)
      usage(`unknown subject(s) ${unknown.join(', ') || '(none given)'}; the data has: ${available.join(', ')}`);
    subjects = [...new Set(subjects)];
  }

  const contaminated = readContaminated(join(args.data, 'contaminated_prompts.jsonl'));
  const dataset = [], answers = [];
  const first = new Map(); // prompt -> the row that wrote its answers
  let read = 0, excluded = 0, duplicates = 0, conflicts = 0;
  const right = { gpt4: 0, mixtral: 0 }, replayRight = { gpt4: 0, mixtral: 0 };
  let either = 0, both = 0;
  const refCount = [0, 0, 0, 0];

  for (const subject of subjects) {
    const rows = readSubject(join(args.data, `mmlu_${subject}.csv`));
    read += rows.length;
    let kept = 0;
    for (const r of rows) {
      if (contaminated.has(r.prompt)) { excluded++; continue; }
      if (kept >= limit) continue;
      kept++;
      const h = fnv1a32(r.prompt);
      const ref = letter(referenceIndex(h));
      refCount[referenceIndex(h)]++;
      dataset.push(JSON.stringify({
        id: `${subject}/${r.index}`, input: r.prompt, reference: ref, choices: CHOICES,
        tags: { subject }, recorded: { gpt4: r.gpt4, mixtral: r.mixtral },
      }));
      right.gpt4 += r.gpt4; right.mixtral += r.mixtral;
      either += r.gpt4 || r.mixtral; both += r.gpt4 && r.mixtral;
      const prev = first.get(r.prompt);
      if (prev) {
        duplicates++;
        if (prev.gpt4 !== r.gpt4 || prev.mixtral !== r.mixtral) conflicts++;
      } else {
        first.set(r.prompt, r);
        for (const key of ['gpt4', 'mixtral']) {
          const x = letter(r[key] ? referenceIndex(h) : wrongIndex(h));
          answers.push(JSON.stringify({ model: models[key], prompt: r.prompt, answer: `The answer is ${x}.` }));
        }
      }
      const rec = first.get(r.prompt);
      replayRight.gpt4 += rec.gpt4; replayRight.mixtral += rec.mixtral;
    }
  }

  const n = dataset.length;
  writeFileSync(args['out-dataset'], n ? dataset.join('\n') + '\n' : '');
  writeFileSync(args['out-answers'], answers.length ? answers.join('\n') + '\n' : '');

  const e = (s) => process.stderr.write(s + '\n');
  e(`build-mmlu: ${subjects.length} subjects, ${read} prompts read, ${excluded} contaminated excluded` +
    `${limit < Infinity ? `, at most ${limit} a subject` : ''}: ${n} prompts`);
  e(`  GPT-4   (${models.gpt4}): ${right.gpt4} right, ${pct(right.gpt4, n)}`);
  e(`  Mixtral (${models.mixtral}): ${right.mixtral} right, ${pct(right.mixtral, n)}`);
  e(`  either right ${pct(either, n)} (a perfect router), both right ${pct(both, n)}`);
  e(`  synthetic references: ${refCount.map((c, k) => `${letter(k)} ${c}`).join(', ')}`);
  if (duplicates)
    e(`  ${duplicates} rows repeat an earlier prompt (${conflicts} with a different record); ` +
      `replayed through ahorro-fake: GPT-4 ${pct(replayRight.gpt4, n)}, Mixtral ${pct(replayRight.mixtral, n)}`);
  e(`  wrote ${args['out-dataset']} (${n} rows) and ${args['out-answers']} (${answers.length} answers)`);
}

try {
  main();
} catch (err) {
  if (!(err instanceof DataError) && !err.code) throw err;
  process.stderr.write(`build-mmlu: ${err.message}\n`);
  process.exit(1);
}
