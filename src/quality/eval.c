/* eval.c - offline evaluation's pure parts (eval.h). */
#include "quality/eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_text.h"
#include "core/limits.h"

const char *const ah_eval_scorer_names[AH_EVAL_NSCORERS] = {
    "exact", "normalized", "f1", "choice", "regex", "json_schema", "judge", "pairwise",
};

int ah_eval_scorer_by_name(const char *s)
{
    for (int i = 0; i < AH_EVAL_NSCORERS; i++)
        if (strcmp(s, ah_eval_scorer_names[i]) == 0)
            return i;
    return -1;
}

static ah_err_t bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ah_err_t bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return AH_E_INVAL;
}

/* A tag key or value: 1..AH_MAX_TAG_BYTES bytes, no ',' '=' or control. */
static int tag_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AH_MAX_TAG_BYTES)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == ',' || s[i] == '=')
            return 0;
    return 1;
}

/* ---- rows ------------------------------------------------------------------------------- */

void ah_eval_row_free(ah_eval_row_t *r)
{
    ah_free(r->id);
    json_decref(r->messages);
    ah_free(r->question);
    ah_free(r->reference);
    ah_free(r->regex);
    ah_free(r->schema);
    json_decref(r->tags);
    memset(r, 0, sizeof *r);
}

static char *scalar_text(json_t *v)
{
    char tmp[64];
    if (json_is_string(v))
        return ah_strdup(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        return ah_strdup(tmp);
    }
    if (json_is_real(v)) {
        snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
        return ah_strdup(tmp);
    }
    if (json_is_boolean(v))
        return ah_strdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

ah_err_t ah_eval_row_parse(json_t *row, long line, ah_eval_row_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    ah_err_t rc = AH_E_INVAL;
    if (!json_is_object(row))
        return bad(err, errlen, "line %ld: a row must be a JSON object", line);
    json_t *id = json_object_get(row, "id");
    if (id && !(out->id = scalar_text(id))) {
        bad(err, errlen, "line %ld: \"id\" must be a string or a number", line);
        goto fail;
    }
    if (!out->id) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "#%ld", line);
        out->id = ah_strdup(tmp);
    }
    json_t *msgs = json_object_get(row, "messages"), *input = json_object_get(row, "input");
    if (msgs && input) {
        bad(err, errlen, "line %ld: give \"messages\" or \"input\", not both", line);
        goto fail;
    }
    if (input) {
        if (!json_is_string(input)) {
            bad(err, errlen, "line %ld: \"input\" must be a string", line);
            goto fail;
        }
        out->messages = json_pack("[{s:s,s:O}]", "role", "user", "content", input);
    } else if (json_is_array(msgs) && json_array_size(msgs) > 0) {
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m)
        {
            if (!json_is_object(m) || !json_is_string(json_object_get(m, "role"))) {
                bad(err, errlen, "line %ld: messages[%zu] needs a \"role\"", line, i);
                goto fail;
            }
        }
        out->messages = json_deep_copy(msgs);
    } else {
        bad(err, errlen,
            "line %ld: a row needs \"input\" (a string) or \"messages\" (a non-empty array)", line);
        goto fail;
    }
    for (size_t i = json_array_size(out->messages); i-- > 0;) {
        json_t *m = json_array_get(out->messages, i);
        if (strcmp(json_string_value(json_object_get(m, "role")), "user") == 0) {
            out->question = ah_json_join_text(json_object_get(m, "content"), "\n");
            break;
        }
    }
    if (!out->question || strlen(out->question) > AH_SCORE_MAX_TEXT) {
        bad(err, errlen, "line %ld: no user message with text, or one over %u bytes", line,
            AH_SCORE_MAX_TEXT);
        goto fail;
    }
    json_t *ref = json_object_get(row, "reference");
    if (ref && !json_is_null(ref) && !(out->reference = scalar_text(ref))) {
        bad(err, errlen, "line %ld: \"reference\" must be a string or a number", line);
        goto fail;
    }
    json_t *ch = json_object_get(row, "choices");
    if (ch) {
        if (!json_is_integer(ch) || json_integer_value(ch) < 2 ||
            json_integer_value(ch) > AH_SCORE_MAX_CHOICES) {
            bad(err, errlen, "line %ld: \"choices\" must be the number of options, 2..%d", line,
                AH_SCORE_MAX_CHOICES);
            goto fail;
        }
        out->choices = (int)json_integer_value(ch);
        char c = out->reference ? (char)(out->reference[0] & ~0x20) : 0;
        if (!out->reference || strlen(out->reference) != 1 || c < 'A' || c >= 'A' + out->choices) {
            bad(err, errlen,
                "line %ld: a multiple-choice row's \"reference\" must be one letter, A..%c", line,
                'A' + out->choices - 1);
            goto fail;
        }
    }
    json_t *re = json_object_get(row, "regex");
    if (re) {
        if (!json_is_string(re)) {
            bad(err, errlen, "line %ld: \"regex\" must be a string", line);
            goto fail;
        }
        out->regex = ah_strdup(json_string_value(re));
    }
    json_t *sc = json_object_get(row, "schema");
    if (sc) {
        if (!json_is_object(sc) && !json_is_boolean(sc)) {
            bad(err, errlen, "line %ld: \"schema\" must be a JSON Schema object", line);
            goto fail;
        }
        char *txt = json_dumps(sc, JSON_COMPACT | JSON_ENCODE_ANY);
        out->schema = ah_strdup(txt);
        free(txt);
    }
    json_t *tags = json_object_get(row, "tags");
    if (tags) {
        const char *k;
        json_t *v;
        if (!json_is_object(tags) || json_object_size(tags) > AH_MAX_TAGS - 4) {
            bad(err, errlen, "line %ld: \"tags\" must be an object of at most %d strings", line,
                AH_MAX_TAGS - 4);
            goto fail;
        }
        json_object_foreach(tags, k, v)
        {
            if (!json_is_string(v) || !tag_ok(k) || !tag_ok(json_string_value(v)) ||
                strcmp(k, "purpose") == 0 || strcmp(k, "eval_run") == 0 ||
                strcmp(k, "variant") == 0) {
                bad(err, errlen,
                    "line %ld: tag '%s': keys and values are non-empty strings without ',' or '=' "
                    "(purpose, eval_run and variant are set by the run)",
                    line, k);
                goto fail;
            }
        }
        out->tags = json_incref(tags);
    }
    return AH_E_OK;
fail:
    ah_eval_row_free(out);
    return rc;
}

/* ---- variants --------------------------------------------------------------------------- */

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AH_EVAL_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '@' || c == ':'))
            return 0;
    }
    return 1;
}

void ah_eval_variant_free(ah_eval_variant_t *v)
{
    json_decref(v->spec);
    v->spec = NULL;
}

static int number_in(json_t *v, double lo, double hi)
{
    return json_is_number(v) && json_number_value(v) >= lo && json_number_value(v) <= hi;
}

ah_err_t ah_eval_variant_parse(json_t *obj, const char *default_name, ah_eval_variant_t *out,
                               char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(obj))
        return bad(err, errlen, "a variant must be a mapping (name, model, temperature, ...)");
    static const char *const known[] = {"name",       "model",  "temperature", "top_p",
                                        "max_tokens", "system", "prompt",      "shape",
                                        "cache",      "tags",   "params"};
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(k, known[i]) != 0)
            i++;
        if (i == sizeof known / sizeof known[0])
            return bad(err, errlen,
                       "unknown variant key '%s' (name, model, temperature, top_p, max_tokens, "
                       "system, prompt, shape, cache, tags, params)",
                       k);
    }
    json_t *name = json_object_get(obj, "name");
    const char *nm = json_is_string(name) ? json_string_value(name) : default_name;
    if ((name && !json_is_string(name)) || !nm || !name_ok(nm))
        return bad(err, errlen,
                   "a variant's name must be 1-%d characters of letters, digits and -_.@:",
                   AH_EVAL_MAX_NAME);
    json_t *model = json_object_get(obj, "model");
    if (!json_is_string(model) || json_string_length(model) == 0 || json_string_length(model) > 256)
        return bad(err, errlen, "variant '%s' needs a \"model\" (a model name or alias)", nm);
    json_t *x;
    if ((x = json_object_get(obj, "temperature")) && !number_in(x, 0, 2))
        return bad(err, errlen, "variant '%s': temperature must be 0..2", nm);
    if ((x = json_object_get(obj, "top_p")) && !number_in(x, 0, 1))
        return bad(err, errlen, "variant '%s': top_p must be 0..1", nm);
    if ((x = json_object_get(obj, "max_tokens")) &&
        (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 10000000))
        return bad(err, errlen, "variant '%s': max_tokens must be a positive integer", nm);
    if ((x = json_object_get(obj, "system")) && !json_is_string(x))
        return bad(err, errlen, "variant '%s': system must be a string", nm);
    if ((x = json_object_get(obj, "prompt")) && (!json_is_string(x) || !json_string_length(x)))
        return bad(err, errlen, "variant '%s': prompt must be a template name (name@version)", nm);
    static const char *const objs[] = {"shape", "cache", "params", "tags"};
    for (size_t i = 0; i < 4; i++)
        if ((x = json_object_get(obj, objs[i])) && !json_is_object(x))
            return bad(err, errlen, "variant '%s': %s must be a mapping", nm, objs[i]);
    if ((x = json_object_get(obj, "tags"))) {
        json_object_foreach(x, k, v)
        {
            if (!json_is_string(v) || !tag_ok(k) || !tag_ok(json_string_value(v)))
                return bad(err, errlen,
                           "variant '%s': tag '%s' must be a string without ',' or '='", nm, k);
        }
    }
    snprintf(out->name, sizeof out->name, "%s", nm);
    out->spec = json_incref(obj);
    return AH_E_OK;
}

ah_err_t ah_eval_variant_inline(const char *text, ah_eval_variant_t *out, char *err, size_t errlen)
{
    if (!strchr(text, '=')) {
        json_t *o = json_pack("{s:s}", "model", text);
        ah_err_t rc = ah_eval_variant_parse(o, text, out, err, errlen);
        json_decref(o);
        return rc;
    }
    json_t *o = json_object();
    char *dup = ah_strdup(text), *save = NULL;
    ah_err_t rc = AH_E_OK;
    for (char *part = strtok_r(dup, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(part, '=');
        if (!eq) {
            rc = bad(err, errlen, "variant '%s': expected k=v,k=v", text);
            break;
        }
        *eq = '\0';
        const char *k = part, *val = eq + 1;
        if (strcmp(k, "temperature") == 0 || strcmp(k, "top_p") == 0) {
            char *end;
            double d = strtod(val, &end);
            if (*end || end == val) {
                rc = bad(err, errlen, "variant '%s': %s must be a number", text, k);
                break;
            }
            json_object_set_new(o, k, json_real(d));
        } else if (strcmp(k, "max_tokens") == 0) {
            char *end;
            long long n = strtoll(val, &end, 10);
            if (*end || end == val) {
                rc = bad(err, errlen, "variant '%s': max_tokens must be an integer", text);
                break;
            }
            json_object_set_new(o, k, json_integer(n));
        } else if (strcmp(k, "name") == 0 || strcmp(k, "model") == 0 || strcmp(k, "prompt") == 0 ||
                   strcmp(k, "system") == 0) {
            json_object_set_new(o, k, json_string(val));
        } else {
            rc = bad(err, errlen,
                     "variant '%s': '%s' cannot be set inline (name, model, temperature, top_p, "
                     "max_tokens, prompt, system); use a YAML file",
                     text, k);
            break;
        }
    }
    ah_free(dup);
    if (rc == AH_E_OK) {
        json_t *m = json_object_get(o, "model");
        rc = ah_eval_variant_parse(o, m && json_is_string(m) ? json_string_value(m) : "variant",
                                   out, err, errlen);
    }
    json_decref(o);
    return rc;
}

json_t *ah_eval_body(const ah_eval_variant_t *v, const ah_eval_row_t *r)
{
    json_t *s = v->spec, *x;
    json_t *body = json_object();
    json_t *params = json_object_get(s, "params");
    const char *k;
    json_t *val;
    json_object_foreach(params, k, val) json_object_set(body, k, val);
    json_object_set(body, "model", json_object_get(s, "model"));
    json_t *msgs = json_deep_copy(r->messages);
    if ((x = json_object_get(s, "system"))) {
        json_t *first = json_array_get(msgs, 0);
        const char *role = first ? json_string_value(json_object_get(first, "role")) : NULL;
        json_t *sys = json_pack("{s:s,s:O}", "role", "system", "content", x);
        if (role && (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0))
            json_array_set_new(msgs, 0, sys); /* the variant's replaces the row's */
        else
            json_array_insert_new(msgs, 0, sys);
    }
    json_object_set_new(body, "messages", msgs);
    static const char *const copied[] = {"temperature", "top_p", "max_tokens", "shape", "cache"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++)
        if ((x = json_object_get(s, copied[i])))
            json_object_set(body, copied[i], x);
    if ((x = json_object_get(s, "prompt")))
        json_object_set(body, "prompt_id", x);
    json_object_set_new(body, "stream", json_false());
    return body;
}

ah_err_t ah_eval_tags(const char *run, const char *variant, const ah_eval_row_t *r, ah_buf_t *out)
{
    ah_err_t rc = ah_buf_printf(out, "purpose=eval,eval_run=%s,variant=%s", run, variant);
    const char *k;
    json_t *v;
    json_object_foreach(r->tags, k, v)
    {
        if (rc == AH_E_OK)
            rc = ah_buf_printf(out, ",%s=%s", k, json_string_value(v));
    }
    return rc;
}

/* ---- scoring ---------------------------------------------------------------------------- */

static void set_error(json_t *scores, const char *scorer, const char *why)
{
    char key[64];
    snprintf(key, sizeof key, "%s_error", scorer);
    json_object_set_new(scores, key, json_string(why));
}

/* A text scorer's result: v < 0 means an input was too long. */
static void text_score(json_t *scores, const char *name, double v, int real)
{
    if (v < 0)
        set_error(scores, name, "answer or reference too long");
    else
        json_object_set_new(scores, name, real ? json_real(v) : json_integer((json_int_t)v));
}

void ah_eval_score(const ah_eval_row_t *r, const char *answer, unsigned mask, json_t *scores)
{
    const char *a = answer ? answer : "";
    char why[256];
    /* the text scorers compare with a free-text reference: a multiple-choice
     * row's reference is a letter, so they run there only when asked for */
    if (mask == AH_EVAL_AUTO && r->choices)
        mask &= ~((1u << AH_EVAL_EXACT) | (1u << AH_EVAL_NORMALIZED) | (1u << AH_EVAL_F1));
    if (r->reference) {
        if (mask & (1u << AH_EVAL_EXACT))
            text_score(scores, "exact", ah_score_exact(a, r->reference), 0);
        if (mask & (1u << AH_EVAL_NORMALIZED))
            text_score(scores, "normalized", ah_score_normalized(a, r->reference), 0);
        if (mask & (1u << AH_EVAL_F1))
            text_score(scores, "f1", ah_score_f1(a, r->reference), 1);
    }
    if (r->choices && (mask & (1u << AH_EVAL_CHOICE))) {
        char letter = 0;
        ah_score_choice(a, r->choices, &letter);
        json_object_set_new(scores, "choice",
                            json_integer((letter & ~0x20) == (r->reference[0] & ~0x20)));
        if (letter)
            json_object_set_new(scores, "choice_letter", json_stringn(&letter, 1));
    }
    if (r->regex && (mask & (1u << AH_EVAL_REGEX))) {
        int s = 0;
        why[0] = '\0';
        if (ah_score_regex(a, r->regex, &s, why, sizeof why) == AH_E_OK)
            json_object_set_new(scores, "regex", json_integer(s));
        else
            set_error(scores, "regex", why[0] ? why : "bad pattern");
    }
    if (r->schema && (mask & (1u << AH_EVAL_JSON_SCHEMA))) {
        int s = 0;
        why[0] = '\0';
        ah_err_t rc = ah_score_json_schema(a, r->schema, &s, why, sizeof why);
        if (rc == AH_E_OK) {
            json_object_set_new(scores, "json_schema", json_integer(s));
            if (!s && why[0])
                json_object_set_new(scores, "json_schema_why", json_string(why));
        } else {
            set_error(scores, "json_schema", why[0] ? why : "bad schema");
        }
    }
}

void ah_eval_judge_scores(const char *verdict, const char *const *criteria, int n, json_t *scores)
{
    int s[AH_JUDGE_MAX_CRITERIA];
    char reason[1024] = "";
    if (!criteria) {
        criteria = ah_judge_default_criteria;
        n = AH_JUDGE_DEFAULT_N;
    }
    if (!verdict || ah_judge_parse(verdict, criteria, n, s, reason, sizeof reason) != AH_E_OK) {
        set_error(scores, "judge", "the judge's answer is not a verdict with every criterion 1-10");
        return;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        char key[80];
        snprintf(key, sizeof key, "judge_%s", criteria[i]);
        json_object_set_new(scores, key, json_integer(s[i]));
        sum += (s[i] - AH_JUDGE_SCORE_MIN) / (double)(AH_JUDGE_SCORE_MAX - AH_JUDGE_SCORE_MIN);
    }
    json_object_set_new(scores, "judge", json_real(sum / n));
    if (reason[0])
        json_object_set_new(scores, "judge_reason", json_string(reason));
}

/* ---- the report ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n), n > 0. */
static double percentile(const double *v, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);
    return v[k ? k - 1 : 0];
}

static json_t *num_or_null(int known, double v)
{
    return known && isfinite(v) ? json_real(v) : json_null();
}

static json_t *stats_json(const ah_stats_t *s)
{
    double lo = 0, hi = 0;
    int ci = ah_stats_ci95(s, &lo, &hi) == 0;
    return json_pack("{s:I,s:o,s:o}", "n", (json_int_t)s->n, "mean", num_or_null(s->n > 0, s->mean),
                     "ci95", ci ? json_pack("[f,f]", lo, hi) : json_null());
}

/* The score of scorer name in scores, when it has one. */
static int score_of(json_t *scores, const char *name, double *out)
{
    json_t *v = json_object_get(scores, name);
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return 1;
}

static json_t *paired_json(const ah_stats_t *d, int n_a, int n_b)
{
    double t, p, lo = 0, hi = 0;
    int tested = ah_stats_paired(d, &t, &p) == 0;
    int ci = ah_stats_ci95(d, &lo, &hi) == 0;
    char verdict[160];
    if (!tested)
        snprintf(verdict, sizeof verdict, "not testable (n=%ld pairs)", d->n);
    else if (p < 0.05)
        snprintf(verdict, sizeof verdict, "significant (p=%.3g, n=%ld pairs)", p, d->n);
    else
        snprintf(verdict, sizeof verdict, "not significant (p=%.2g, n=%ld pairs)", p, d->n);
    (void)n_a;
    (void)n_b;
    return json_pack("{s:I,s:o,s:o,s:o,s:b,s:s}", "n", (json_int_t)d->n, "diff",
                     num_or_null(d->n > 0, d->mean), "ci95",
                     ci ? json_pack("[f,f]", lo, hi) : json_null(), "p", num_or_null(tested, p),
                     "significant", tested && p < 0.05, "verdict", verdict);
}

json_t *ah_eval_report(const char *run, const char *const *variants, int nvariants,
                       const ah_eval_result_t *res, size_t nres, const char *metric,
                       const char *const *criteria, int ncriteria)
{
    if (!criteria) {
        criteria = ah_judge_default_criteria;
        ncriteria = AH_JUDGE_DEFAULT_N;
    }
    long nrows = 0;
    for (size_t i = 0; i < nres; i++)
        if (res[i].row + 1 > nrows)
            nrows = res[i].row + 1;
    /* by[v][row]: the result of variant v for a row, or NULL */
    const ah_eval_result_t **by =
        ah_calloc((size_t)nvariants * (size_t)(nrows ? nrows : 1), sizeof *by);
    for (size_t i = 0; i < nres; i++)
        for (int v = 0; v < nvariants; v++)
            if (strcmp(res[i].variant, variants[v]) == 0 && res[i].row >= 0)
                by[(size_t)v * (size_t)nrows + (size_t)res[i].row] = &res[i];
    static const char *const order[] = {"judge", "choice", "json_schema", "regex", "f1"};
    if (!metric) {
        for (size_t o = 0; o < sizeof order / sizeof order[0] && !metric; o++)
            for (size_t i = 0; i < nres && !metric; i++) {
                double x;
                if (score_of(res[i].scores, order[o], &x))
                    metric = order[o];
            }
    }
    json_t *out = json_pack("{s:s,s:o,s:I,s:[]}", "run", run, "metric",
                            metric ? json_string(metric) : json_null(), "rows", (json_int_t)nrows,
                            "criteria");
    json_t *jcrit = json_object_get(out, "criteria");
    for (int c = 0; c < ncriteria; c++)
        json_array_append_new(jcrit, json_string(criteria[c]));
    json_t *jvars = json_array();
    json_object_set_new(out, "variants", jvars);
    double *lat = ah_calloc((size_t)(nrows ? nrows : 1), sizeof *lat);
    for (int v = 0; v < nvariants; v++) {
        const ah_eval_result_t **mine = by + (size_t)v * (size_t)nrows;
        long requests = 0, answered = 0, hits = 0, judge_failed = 0, judged = 0;
        ah_stats_t cost = {0}, quality = {0}, latency = {0};
        ah_stats_t sc[AH_EVAL_NSCORERS] = {{0}}, crit[AH_JUDGE_MAX_CRITERIA] = {{0}};
        double cost_total = 0, judge_cost = 0;
        int cost_known = 0;
        size_t nlat = 0;
        for (long r = 0; r < nrows; r++) {
            const ah_eval_result_t *x = mine[r];
            if (!x)
                continue;
            requests++;
            if (x->cost_usd >= 0) {
                ah_stats_add(&cost, x->cost_usd);
                cost_total += x->cost_usd;
                cost_known = 1;
            }
            double jc;
            if (score_of(x->scores, "judge_cost", &jc))
                judge_cost += jc;
            if (x->status != 200)
                continue;
            answered++;
            hits += x->cache_hit != 0;
            lat[nlat++] = x->latency_ms;
            ah_stats_add(&latency, x->latency_ms);
            double q;
            for (int s = 0; s < AH_EVAL_NSCORERS; s++)
                if (s != AH_EVAL_PAIRWISE && score_of(x->scores, ah_eval_scorer_names[s], &q))
                    ah_stats_add(&sc[s], q);
            if (metric && score_of(x->scores, metric, &q))
                ah_stats_add(&quality, q);
            if (json_object_get(x->scores, "judge_error"))
                judge_failed++;
            if (score_of(x->scores, "judge", &q))
                judged++;
            for (int c = 0; c < ncriteria; c++) {
                char key[80];
                snprintf(key, sizeof key, "judge_%s", criteria[c]);
                if (score_of(x->scores, key, &q))
                    ah_stats_add(&crit[c], q);
            }
        }
        qsort(lat, nlat, sizeof *lat, cmp_double);
        double cpq = cost.n ? cost.mean : 0;
        json_t *jv = json_pack(
            "{s:s,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:{},s:{},s:I,s:I,s:f}", "name",
            variants[v], "requests", (json_int_t)requests, "answered", (json_int_t)answered,
            "errors", (json_int_t)(requests - answered), "cache_hits", (json_int_t)hits,
            "cost_total_usd", num_or_null(cost_known, cost_total), "cost_per_query_usd",
            num_or_null(cost.n > 0, cpq), "latency_p50_ms",
            num_or_null(nlat > 0, nlat ? percentile(lat, nlat, 0.5) : 0), "latency_p95_ms",
            num_or_null(nlat > 0, nlat ? percentile(lat, nlat, 0.95) : 0), "latency_mean_ms",
            num_or_null(latency.n > 0, latency.mean), "quality", stats_json(&quality),
            "quality_per_usd",
            num_or_null(quality.n > 0 && cost.n > 0 && cpq > 0, quality.mean / cpq), "scores",
            "criteria", "judged", (json_int_t)judged, "judge_failed", (json_int_t)judge_failed,
            "judge_cost_usd", judge_cost);
        json_t *jsc = json_object_get(jv, "scores"), *jcr = json_object_get(jv, "criteria");
        for (int s = 0; s < AH_EVAL_NSCORERS; s++)
            if (sc[s].n)
                json_object_set_new(jsc, ah_eval_scorer_names[s], stats_json(&sc[s]));
        for (int c = 0; c < ncriteria; c++)
            if (crit[c].n)
                json_object_set_new(jcr, criteria[c], stats_json(&crit[c]));
        if (v > 0) {
            const ah_eval_result_t **ctl = by;
            ah_stats_t dq = {0}, dc = {0}, dl = {0};
            long wins = 0, ties = 0, losses = 0, pfail = 0;
            for (long r = 0; r < nrows; r++) {
                const ah_eval_result_t *a = ctl[r], *b = mine[r];
                if (!a || !b)
                    continue;
                double qa, qb, pw;
                if (a->status == 200 && b->status == 200) {
                    if (metric && score_of(a->scores, metric, &qa) &&
                        score_of(b->scores, metric, &qb))
                        ah_stats_add(&dq, qb - qa);
                    ah_stats_add(&dl, b->latency_ms - a->latency_ms);
                }
                if (a->cost_usd >= 0 && b->cost_usd >= 0)
                    ah_stats_add(&dc, b->cost_usd - a->cost_usd);
                if (score_of(b->scores, "pairwise", &pw))
                    pw > 0 ? wins++ : pw < 0 ? losses++ : ties++;
                else if (json_object_get(b->scores, "pairwise_error"))
                    pfail++;
            }
            json_t *vs = json_pack("{s:s,s:o,s:o,s:o}", "control", variants[0], "quality",
                                   paired_json(&dq, 0, 0), "cost", paired_json(&dc, 0, 0),
                                   "latency", paired_json(&dl, 0, 0));
            if (wins + ties + losses + pfail > 0) {
                double p = ah_stats_sign_test(wins, losses);
                char verdict[160];
                snprintf(verdict, sizeof verdict, "%s (sign test p=%.3g; %ld wins, %ld losses)",
                         p < 0.05 ? (wins > losses ? "better" : "worse")
                                  : "no significant difference",
                         p, wins, losses);
                json_object_set_new(vs, "pairwise",
                                    json_pack("{s:I,s:I,s:I,s:I,s:f,s:b,s:s}", "wins",
                                              (json_int_t)wins, "ties", (json_int_t)ties, "losses",
                                              (json_int_t)losses, "failed", (json_int_t)pfail, "p",
                                              p, "significant", p < 0.05, "verdict", verdict));
            }
            json_object_set_new(jv, "vs_control", vs);
        }
        json_array_append_new(jvars, jv);
    }
    ah_free(lat);
    ah_free(by);
    return out;
}

/* ---- rendering -------------------------------------------------------------------------- */

static double jnum(const json_t *o, const char *k, int *known)
{
    json_t *v = json_object_get(o, k);
    *known = json_is_number(v);
    return *known ? json_number_value(v) : 0;
}

static void fmt_num(char *out, size_t n, const json_t *o, const char *k, const char *fmt)
{
    int known;
    double v = jnum(o, k, &known);
    if (known)
        snprintf(out, n, fmt, v);
    else
        snprintf(out, n, "-");
}

static void fmt_stats(char *out, size_t n, const json_t *st, double scale)
{
    int known;
    double m = jnum(st, "mean", &known);
    json_t *ci = json_object_get(st, "ci95");
    if (!known)
        snprintf(out, n, "-");
    else if (json_is_array(ci))
        snprintf(
            out, n, "%.3f ±%.3f", m * scale,
            (json_number_value(json_array_get(ci, 1)) - json_number_value(json_array_get(ci, 0))) /
                2 * scale);
    else
        snprintf(out, n, "%.3f", m * scale);
}

/* A variant's summary figures as text, for the table and the page alike. */
typedef struct variant_cells {
    char q[48], cost[24], total[24], p50[24], p95[24], qpd[24];
} variant_cells_t;

static void variant_cells(const json_t *v, variant_cells_t *c)
{
    fmt_stats(c->q, sizeof c->q, json_object_get(v, "quality"), 1);
    fmt_num(c->cost, sizeof c->cost, v, "cost_per_query_usd", "%.6f");
    fmt_num(c->total, sizeof c->total, v, "cost_total_usd", "%.4f");
    fmt_num(c->p50, sizeof c->p50, v, "latency_p50_ms", "%.0f");
    fmt_num(c->p95, sizeof c->p95, v, "latency_p95_ms", "%.0f");
    fmt_num(c->qpd, sizeof c->qpd, v, "quality_per_usd", "%.1f");
}

ah_err_t ah_eval_render_table(const json_t *rep, ah_buf_t *out)
{
    ah_err_t rc = AH_E_OK;
    json_t *m = json_object_get(rep, "metric");
    rc |= ah_buf_printf(out, "eval run %s: %lld rows, quality = %s (mean, ±95%% CI)\n\n",
                        json_string_value(json_object_get(rep, "run")),
                        (long long)json_integer_value(json_object_get(rep, "rows")),
                        json_is_string(m) ? json_string_value(m) : "(no scorer applied)");
    rc |= ah_buf_printf(out, "%-20s %6s %6s %16s %12s %12s %9s %9s %10s\n", "variant", "n",
                        "errors", "quality", "$/query", "$ total", "p50 ms", "p95 ms", "quality/$");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        variant_cells_t c;
        variant_cells(v, &c);
        rc |= ah_buf_printf(out, "%-20s %6lld %6lld %16s %12s %12s %9s %9s %10s\n",
                            json_string_value(json_object_get(v, "name")),
                            (long long)json_integer_value(json_object_get(v, "requests")),
                            (long long)json_integer_value(json_object_get(v, "errors")), c.q,
                            c.cost, c.total, c.p50, c.p95, c.qpd);
    }
    rc |= ah_buf_appends(out, "\nscores (mean, ±95% CI; judge criteria 1-10)\n");
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        rc |= ah_buf_printf(out, "  %s:", json_string_value(json_object_get(v, "name")));
        const char *k;
        json_t *st;
        json_object_foreach(json_object_get(v, "scores"), k, st)
        {
            char s[48];
            fmt_stats(s, sizeof s, st, 1);
            rc |= ah_buf_printf(out, " %s %s (n=%lld);", k, s,
                                (long long)json_integer_value(json_object_get(st, "n")));
        }
        json_object_foreach(json_object_get(v, "criteria"), k, st)
        {
            char s[48];
            fmt_stats(s, sizeof s, st, 1);
            rc |= ah_buf_printf(out, " %s %s;", k, s);
        }
        long long jf = json_integer_value(json_object_get(v, "judge_failed"));
        if (jf || json_integer_value(json_object_get(v, "judged")))
            rc |= ah_buf_printf(out, " judged %lld, failed judgments %lld, judge cost $%.6f",
                                (long long)json_integer_value(json_object_get(v, "judged")), jf,
                                json_number_value(json_object_get(v, "judge_cost_usd")));
        rc |= ah_buf_appends(out, "\n");
    }
    int any = 0;
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        json_t *vs = json_object_get(v, "vs_control");
        if (!vs)
            continue;
        if (!any++)
            rc |= ah_buf_printf(out, "\nagainst %s (paired on the same rows: variant - control)\n",
                                json_string_value(json_object_get(vs, "control")));
        static const char *const what[] = {"quality", "cost", "latency"};
        static const char *const fmts[] = {"%+.4f", "%+.6f $", "%+.1f ms"};
        for (int w = 0; w < 3; w++) {
            json_t *d = json_object_get(vs, what[w]);
            char diff[48];
            fmt_num(diff, sizeof diff, d, "diff", fmts[w]);
            rc |= ah_buf_printf(out, "  %-20s %-8s %14s  %s\n",
                                json_string_value(json_object_get(v, "name")), what[w], diff,
                                json_string_value(json_object_get(d, "verdict")));
        }
        json_t *pw = json_object_get(vs, "pairwise");
        if (pw)
            rc |= ah_buf_printf(out, "  %-20s %-8s %lld/%lld/%lld  %s%s\n",
                                json_string_value(json_object_get(v, "name")), "pairwise",
                                (long long)json_integer_value(json_object_get(pw, "wins")),
                                (long long)json_integer_value(json_object_get(pw, "ties")),
                                (long long)json_integer_value(json_object_get(pw, "losses")),
                                json_string_value(json_object_get(pw, "verdict")),
                                json_integer_value(json_object_get(pw, "failed"))
                                    ? " (some judgments failed)"
                                    : "");
    }
    return rc ? AH_E_TOOBIG : AH_E_OK;
}

/* Append s escaped for HTML text and attributes. */
static ah_err_t html_text(ah_buf_t *out, const char *s)
{
    ah_err_t rc = AH_E_OK;
    for (; s && *s && rc == AH_E_OK; s++) {
        switch (*s) {
        case '&':
            rc = ah_buf_appends(out, "&amp;");
            break;
        case '<':
            rc = ah_buf_appends(out, "&lt;");
            break;
        case '>':
            rc = ah_buf_appends(out, "&gt;");
            break;
        case '"':
            rc = ah_buf_appends(out, "&quot;");
            break;
        case '\'':
            rc = ah_buf_appends(out, "&#39;");
            break;
        default:
            rc = ah_buf_append(out, s, 1);
        }
    }
    return rc;
}

static const char *const palette[] = {"#2563eb", "#dc2626", "#16a34a", "#9333ea",
                                      "#ea580c", "#0891b2", "#be185d", "#4d7c0f"};

/* Quality against cost per query: one dot per variant with its CI. */
static ah_err_t html_scatter(const json_t *rep, ah_buf_t *out)
{
    const double W = 560, H = 320, L = 70, R = 20, T = 20, B = 50;
    double xmax = 0, ymin = 1e300, ymax = -1e300;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        int k1, k2;
        double c = jnum(v, "cost_per_query_usd", &k1);
        double q = jnum(json_object_get(v, "quality"), "mean", &k2);
        if (!k1 || !k2)
            continue;
        json_t *ci = json_object_get(json_object_get(v, "quality"), "ci95");
        double lo = json_is_array(ci) ? json_number_value(json_array_get(ci, 0)) : q;
        double hi = json_is_array(ci) ? json_number_value(json_array_get(ci, 1)) : q;
        xmax = c > xmax ? c : xmax;
        ymin = lo < ymin ? lo : ymin;
        ymax = hi > ymax ? hi : ymax;
    }
    if (ymin > ymax)
        return ah_buf_appends(out, "<p>No variant has both a quality and a cost yet.</p>\n");
    if (xmax <= 0)
        xmax = 1e-9;
    xmax *= 1.15;
    double pad = (ymax - ymin) * 0.15 + 1e-3;
    ymin -= pad;
    ymax += pad;
    ah_err_t rc = ah_buf_printf(
        out,
        "<svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\" "
        "aria-label=\"quality against cost per query\">\n"
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#999\"/>\n"
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#999\"/>\n"
        "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">cost per query (USD)</text>\n"
        "<text x=\"15\" y=\"%.0f\" transform=\"rotate(-90 15 %.0f)\" "
        "text-anchor=\"middle\">quality</text>\n"
        "<text x=\"%.0f\" y=\"%.0f\" class=\"tick\">0</text>"
        "<text x=\"%.0f\" y=\"%.0f\" class=\"tick\" text-anchor=\"end\">%.3g</text>\n"
        "<text x=\"%.0f\" y=\"%.0f\" class=\"tick\" text-anchor=\"end\">%.3f</text>"
        "<text x=\"%.0f\" y=\"%.0f\" class=\"tick\" text-anchor=\"end\">%.3f</text>\n",
        W, H, W, H, L, H - B, W - R, H - B, L, T, L, H - B, (L + W - R) / 2, H - 12,
        (T + H - B) / 2, (T + H - B) / 2, L, H - B + 16, W - R, H - B + 16, xmax, L - 6, H - B,
        ymin, L - 6, T + 10, ymax);
    int idx = 0;
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        const char *col = palette[idx++ % 8];
        int k1, k2;
        double c = jnum(v, "cost_per_query_usd", &k1);
        double q = jnum(json_object_get(v, "quality"), "mean", &k2);
        if (!k1 || !k2)
            continue;
        json_t *ci = json_object_get(json_object_get(v, "quality"), "ci95");
        double x = L + c / xmax * (W - L - R);
        double y = T + (ymax - q) / (ymax - ymin) * (H - T - B);
        if (json_is_array(ci)) {
            double y1 =
                T + (ymax - json_number_value(json_array_get(ci, 0))) / (ymax - ymin) * (H - T - B);
            double y2 =
                T + (ymax - json_number_value(json_array_get(ci, 1))) / (ymax - ymin) * (H - T - B);
            rc |= ah_buf_printf(out,
                                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                                "stroke=\"%s\" stroke-width=\"2\"/>\n",
                                x, y1, x, y2, col);
        }
        /* labels alternate above and below their dot, so neighbours do not overlap */
        rc |= ah_buf_printf(out,
                            "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/>"
                            "<text x=\"%.1f\" y=\"%.1f\">",
                            x, y, col, x + 9, idx % 2 ? y - 8 : y + 18);
        rc |= html_text(out, json_string_value(json_object_get(v, "name")));
        rc |= ah_buf_appends(out, "</text>\n");
    }
    rc |= ah_buf_appends(out, "</svg>\n");
    return rc ? AH_E_TOOBIG : AH_E_OK;
}

/* The judge's criteria, 1..10, grouped by criterion, one bar per variant. */
static ah_err_t html_criteria(const json_t *rep, ah_buf_t *out)
{
    json_t *crit = json_object_get(rep, "criteria"), *vars = json_object_get(rep, "variants");
    size_t nc = json_array_size(crit), nv = json_array_size(vars);
    int any = 0;
    size_t i;
    json_t *v;
    json_array_foreach(vars, i, v) any |= json_object_size(json_object_get(v, "criteria")) > 0;
    if (!any || nc == 0 || nv == 0)
        return AH_E_OK;
    const double W = 560, H = 260, L = 40, B = 40, T = 10;
    double group = (W - L) / (double)nc, bar = group * 0.8 / (double)nv;
    ah_err_t rc =
        ah_buf_printf(out,
                      "<h2>Judge's criteria (1-10)</h2>\n<svg viewBox=\"0 0 %.0f %.0f\" "
                      "width=\"%.0f\" height=\"%.0f\" role=\"img\" aria-label=\"criteria\">\n"
                      "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#999\"/>\n"
                      "<text x=\"%.0f\" y=\"%.0f\" class=\"tick\" text-anchor=\"end\">10</text>\n",
                      W, H, W, H, L, H - B, W, H - B, L - 4, T + 10);
    for (size_t c = 0; c < nc; c++) {
        const char *cn = json_string_value(json_array_get(crit, c));
        double gx = L + group * (double)c + group * 0.1;
        json_array_foreach(vars, i, v)
        {
            json_t *st = json_object_get(json_object_get(v, "criteria"), cn);
            int known;
            double m = jnum(st, "mean", &known);
            if (!known)
                continue;
            double h = m / 10.0 * (H - B - T);
            rc |= ah_buf_printf(out,
                                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                                "fill=\"%s\"><title>",
                                gx + bar * (double)i, H - B - h, bar - 2, h, palette[i % 8]);
            rc |= html_text(out, json_string_value(json_object_get(v, "name")));
            rc |= ah_buf_printf(out, " %s: %.2f</title></rect>\n", cn, m);
        }
        rc |= ah_buf_printf(out, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">",
                            gx + group * 0.4, H - B + 18);
        rc |= html_text(out, cn);
        rc |= ah_buf_appends(out, "</text>\n");
    }
    rc |= ah_buf_appends(out, "</svg>\n<p>");
    json_array_foreach(vars, i, v)
    {
        rc |= ah_buf_printf(out, "<span class=\"key\" style=\"background:%s\"></span> ",
                            palette[i % 8]);
        rc |= html_text(out, json_string_value(json_object_get(v, "name")));
        rc |= ah_buf_appends(out, " &nbsp; ");
    }
    rc |= ah_buf_appends(out, "</p>\n");
    return rc ? AH_E_TOOBIG : AH_E_OK;
}

ah_err_t ah_eval_render_html(const json_t *rep, ah_buf_t *out)
{
    ah_err_t rc = ah_buf_appends(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>ahorro eval ");
    rc |= html_text(out, json_string_value(json_object_get(rep, "run")));
    rc |= ah_buf_appends(
        out, "</title>\n<style>body{font:14px system-ui,sans-serif;margin:2em;color:#111}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "th{background:#f3f4f6}.sig{color:#b91c1c;font-weight:600}.tick{font-size:11px;"
             "fill:#555}svg text{font-size:12px}.key{display:inline-block;width:10px;"
             "height:10px}</style>\n</head><body>\n<h1>Evaluation ");
    rc |= html_text(out, json_string_value(json_object_get(rep, "run")));
    json_t *m = json_object_get(rep, "metric");
    rc |= ah_buf_printf(out, "</h1>\n<p>%lld rows. Quality is <b>",
                        (long long)json_integer_value(json_object_get(rep, "rows")));
    rc |= html_text(out, json_is_string(m) ? json_string_value(m) : "not scored");
    rc |= ah_buf_appends(out, "</b> (mean with its 95% confidence interval).</p>\n"
                              "<table><tr><th>variant</th><th>requests</th><th>errors</th>"
                              "<th>quality</th><th>cost / query (USD)</th><th>total (USD)</th>"
                              "<th>p50 ms</th><th>p95 ms</th><th>quality per USD</th>"
                              "<th>cache hits</th></tr>\n");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        variant_cells_t c;
        variant_cells(v, &c);
        rc |= ah_buf_printf(out, "<tr><td><span class=\"key\" style=\"background:%s\"></span> ",
                            palette[i % 8]);
        rc |= html_text(out, json_string_value(json_object_get(v, "name")));
        rc |= ah_buf_printf(out,
                            "</td><td>%lld</td><td>%lld</td><td>%s</td><td>%s</td><td>%s</td>"
                            "<td>%s</td><td>%s</td><td>%s</td><td>%lld</td></tr>\n",
                            (long long)json_integer_value(json_object_get(v, "requests")),
                            (long long)json_integer_value(json_object_get(v, "errors")), c.q,
                            c.cost, c.total, c.p50, c.p95, c.qpd,
                            (long long)json_integer_value(json_object_get(v, "cache_hits")));
    }
    rc |= ah_buf_appends(out, "</table>\n<h2>Quality against cost</h2>\n");
    rc |= html_scatter(rep, out);
    rc |= ah_buf_appends(out, "<h2>Against the control (paired on the same rows)</h2>\n"
                              "<table><tr><th>variant</th><th>measure</th><th>difference</th>"
                              "<th>95% CI</th><th>verdict</th></tr>\n");
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        json_t *vs = json_object_get(v, "vs_control");
        if (!vs)
            continue;
        static const char *const what[] = {"quality", "cost", "latency"};
        for (int w = 0; w < 3; w++) {
            json_t *d = json_object_get(vs, what[w]);
            char diff[40], ci[64] = "-";
            fmt_num(diff, sizeof diff, d, "diff", "%+.6g");
            json_t *c = json_object_get(d, "ci95");
            if (json_is_array(c))
                snprintf(ci, sizeof ci, "%+.4g .. %+.4g", json_number_value(json_array_get(c, 0)),
                         json_number_value(json_array_get(c, 1)));
            rc |= ah_buf_appends(out, "<tr><td>");
            rc |= html_text(out, json_string_value(json_object_get(v, "name")));
            rc |= ah_buf_printf(
                out, "</td><td>%s</td><td>%s</td><td>%s</td><td%s>", what[w], diff, ci,
                json_is_true(json_object_get(d, "significant")) ? " class=\"sig\"" : "");
            rc |= html_text(out, json_string_value(json_object_get(d, "verdict")));
            rc |= ah_buf_appends(out, "</td></tr>\n");
        }
        json_t *pw = json_object_get(vs, "pairwise");
        if (pw) {
            rc |= ah_buf_appends(out, "<tr><td>");
            rc |= html_text(out, json_string_value(json_object_get(v, "name")));
            rc |= ah_buf_printf(out,
                                "</td><td>pairwise judge</td><td>%lld wins / %lld ties / %lld "
                                "losses</td><td>%lld failed</td><td%s>",
                                (long long)json_integer_value(json_object_get(pw, "wins")),
                                (long long)json_integer_value(json_object_get(pw, "ties")),
                                (long long)json_integer_value(json_object_get(pw, "losses")),
                                (long long)json_integer_value(json_object_get(pw, "failed")),
                                json_is_true(json_object_get(pw, "significant")) ? " class=\"sig\""
                                                                                 : "");
            rc |= html_text(out, json_string_value(json_object_get(pw, "verdict")));
            rc |= ah_buf_appends(out, "</td></tr>\n");
        }
    }
    rc |= ah_buf_appends(out, "</table>\n");
    rc |= html_criteria(rep, out);
    rc |= ah_buf_appends(out, "<h2>Every scorer</h2>\n<table><tr><th>variant</th><th>scorer</th>"
                              "<th>n</th><th>mean</th><th>95% CI</th></tr>\n");
    json_array_foreach(json_object_get(rep, "variants"), i, v)
    {
        const char *k;
        json_t *st;
        json_object_foreach(json_object_get(v, "scores"), k, st)
        {
            char mean[32], ci[64] = "-";
            fmt_num(mean, sizeof mean, st, "mean", "%.4f");
            json_t *c = json_object_get(st, "ci95");
            if (json_is_array(c))
                snprintf(ci, sizeof ci, "%.4f .. %.4f", json_number_value(json_array_get(c, 0)),
                         json_number_value(json_array_get(c, 1)));
            rc |= ah_buf_appends(out, "<tr><td>");
            rc |= html_text(out, json_string_value(json_object_get(v, "name")));
            rc |=
                ah_buf_printf(out, "</td><td>%s</td><td>%lld</td><td>%s</td><td>%s</td></tr>\n", k,
                              (long long)json_integer_value(json_object_get(st, "n")), mean, ci);
        }
    }
    rc |= ah_buf_appends(out, "</table>\n<p>Written by <code>ahorro eval</code>. Failed requests "
                              "are not scored; failed judgments are counted, not scored.</p>\n"
                              "</body></html>\n");
    return rc ? AH_E_TOOBIG : AH_E_OK;
}
