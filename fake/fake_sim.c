/* fake_sim.c - the simulated model: counting, directives, answers, tool calls.
 *
 * The rules are deliberately simple so that a test can compute the expected usage by
 * hand: a token is a whitespace-separated word, a prompt costs (words + 4) per message
 * plus 3, and an answer is a fixed prefix, the user's words, then lorem ipsum. */
#include "fake_sim.h"

#include <string.h>

#include "core/alloc.h"

/* Directives longer than this between the brackets are ignored, as plain text. */
#define FAKE_MAX_DIRECTIVE_BYTES 128
/* Per-message and per-prompt overheads of the counting rule (OpenAI's cookbook values). */
#define FAKE_TOKENS_PER_MESSAGE 4
#define FAKE_TOKENS_PER_PROMPT 3

static const char *const lorem[] = {
    "lorem",  "ipsum", "dolor",  "sit",     "amet",   "consectetur", "adipiscing",
    "elit",   "sed",   "do",     "eiusmod", "tempor", "incididunt",  "ut",
    "labore", "et",    "dolore", "magna",   "aliqua",
};
#define FAKE_LOREM_WORDS (sizeof lorem / sizeof lorem[0])

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int span_is(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

/* Decimal digits only; clamped to max; -1 when not a number. */
static long parse_count(const char *s, size_t n, long max)
{
    if (n == 0)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v <= max)
            v = v * 10 + (s[i] - '0');
    }
    return v > max ? max : v;
}

fake_fault_t fake_fault_parse(const char *s, size_t n)
{
    static const struct {
        const char *name;
        fake_fault_t fault;
    } kinds[] = {
        {"429", FAKE_FAULT_429},
        {"500", FAKE_FAULT_500},
        {"529", FAKE_FAULT_529},
        {"timeout", FAKE_FAULT_TIMEOUT},
        {"reset", FAKE_FAULT_RESET},
        {"stall", FAKE_FAULT_STALL},
        {"reset-early", FAKE_FAULT_RESET_EARLY},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (span_is(s, n, kinds[i].name))
            return kinds[i].fault;
    return FAKE_FAULT_NONE;
}

static void apply_directive(fake_directives_t *d, const char *name, size_t nlen, const char *arg,
                            size_t alen, int only_global)
{
    long v;
    if (span_is(name, nlen, "tokens")) {
        if (arg && (v = parse_count(arg, alen, FAKE_MAX_COMPLETION_TOKENS)) >= 0)
            d->tokens = v;
    } else if (span_is(name, nlen, "cached")) {
        if (arg && (v = parse_count(arg, alen, FAKE_MAX_COMPLETION_TOKENS * 1000)) >= 0)
            d->cached = v;
    } else if (span_is(name, nlen, "cache_write")) {
        if (arg && (v = parse_count(arg, alen, FAKE_MAX_COMPLETION_TOKENS * 1000)) >= 0)
            d->cache_write = v;
    } else if (only_global) {
        return;
    } else if (span_is(name, nlen, "tool")) {
        d->tool = 1;
        d->tool_name = arg && alen ? arg : NULL;
        d->tool_name_len = arg ? alen : 0;
    } else if (span_is(name, nlen, "fault")) {
        fake_fault_t f = arg ? fake_fault_parse(arg, alen) : FAKE_FAULT_NONE;
        if (f != FAKE_FAULT_NONE)
            d->fault = f;
    } else if (span_is(name, nlen, "delay")) {
        if (arg && (v = parse_count(arg, alen, FAKE_MAX_DELAY_MS)) >= 0)
            d->delay_ms = v;
    }
}

void fake_sim_directives(fake_directives_t *d, const char *s, size_t n, int only_global)
{
    const char *end = s + n;
    const char *p = s;
    while (p < end && (p = memmem(p, (size_t)(end - p), "[[", 2)) != NULL) {
        const char *name = p + 2;
        const char *close = memmem(name, (size_t)(end - name), "]]", 2);
        if (!close)
            break;
        size_t inner = (size_t)(close - name);
        if (inner > FAKE_MAX_DIRECTIVE_BYTES) {
            p = name;
            continue;
        }
        const char *colon = memchr(name, ':', inner);
        size_t nlen = colon ? (size_t)(colon - name) : inner;
        const char *arg = colon ? colon + 1 : NULL;
        size_t alen = colon ? (size_t)(close - arg) : 0;
        apply_directive(d, name, nlen, arg, alen, only_global);
        p = close + 2;
    }
}

long fake_sim_words(const char *s, size_t n)
{
    long words = 0;
    int in_word = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = is_space((unsigned char)s[i]);
        if (!sp && !in_word)
            words++;
        in_word = !sp;
    }
    return words;
}

static void foreach_text(const json_t *content, void (*fn)(const char *, size_t, void *), void *arg,
                         int depth)
{
    if (json_is_string(content)) {
        fn(json_string_value(content), json_string_length(content), arg);
        return;
    }
    if (!json_is_array(content))
        return;
    for (size_t i = 0; i < json_array_size(content); i++) {
        const json_t *part = json_array_get(content, i);
        const json_t *text = json_object_get(part, "text");
        if (json_is_string(text))
            fn(json_string_value(text), json_string_length(text), arg);
        else if (depth == 0) /* Anthropic tool_result blocks carry their own content */
            foreach_text(json_object_get(part, "content"), fn, arg, 1);
    }
}

void fake_sim_foreach_text(const json_t *content, void (*fn)(const char *, size_t, void *),
                           void *arg)
{
    foreach_text(content, fn, arg, 0);
}

typedef struct prompt_walk {
    long words;
    fake_directives_t *dir;
    int only_global;
} prompt_walk_t;

static void walk_text(const char *s, size_t n, void *arg)
{
    prompt_walk_t *w = arg;
    w->words += fake_sim_words(s, n);
    if (memmem(s, n, "[[", 2))
        fake_sim_directives(w->dir, s, n, w->only_global);
}

void fake_sim_prompt(fake_prompt_t *p, const json_t *system, const json_t *messages)
{
    memset(p, 0, sizeof *p);
    p->dir.tokens = -1;
    p->tokens = FAKE_TOKENS_PER_PROMPT;

    size_t n = json_array_size(messages);
    size_t last_user = n;
    for (size_t i = 0; i < n; i++) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
        if (role && strcmp(role, "user") == 0)
            last_user = i;
    }

    prompt_walk_t w = {.dir = &p->dir, .only_global = 1};
    if (system && !json_is_null(system)) {
        w.words = 0;
        fake_sim_foreach_text(system, walk_text, &w);
        p->tokens += w.words + FAKE_TOKENS_PER_MESSAGE;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *content = json_object_get(json_array_get(messages, i), "content");
        w.words = 0;
        w.only_global = i != last_user;
        fake_sim_foreach_text(content, walk_text, &w);
        p->tokens += w.words + FAKE_TOKENS_PER_MESSAGE;
        if (i == last_user)
            p->last_user = content;
    }
}

long fake_sim_context_window(const char *model)
{
    if (strstr(model, "fake-tiny"))
        return 64;
    if (strstr(model, "claude"))
        return 200000;
    if (strstr(model, "gpt-4o") || strstr(model, "gpt-4.1"))
        return 128000;
    return 32768;
}

/* ---- answers ------------------------------------------------------------------------ */

typedef struct answer_gen {
    fake_out_t *out;
    long need;
    long done;
    int skip_directives;
} answer_gen_t;

static void gen_word(answer_gen_t *g, const char *w, size_t n)
{
    if (g->done >= g->need)
        return;
    if (g->done)
        fake_out_raw(g->out, " ", 1);
    fake_out_raw(g->out, w, n);
    g->done++;
}

static void gen_words(const char *s, size_t n, void *arg)
{
    answer_gen_t *g = arg;
    size_t i = 0;
    while (i < n && g->done < g->need) {
        while (i < n && is_space((unsigned char)s[i]))
            i++;
        size_t start = i;
        while (i < n && !is_space((unsigned char)s[i]))
            i++;
        size_t len = i - start;
        if (len == 0)
            break;
        if (g->skip_directives && len >= 4 && memcmp(s + start, "[[", 2) == 0 &&
            memcmp(s + i - 2, "]]", 2) == 0)
            continue;
        gen_word(g, s + start, len);
    }
}

void fake_sim_answer(fake_out_t *out, const char *model, const fake_prompt_t *p)
{
    static const char prefix[] = "[simulated] ahorro-fake answer from";
    answer_gen_t g = {
        .out = out,
        .need = p->dir.tokens >= 0 ? p->dir.tokens : FAKE_DEFAULT_ANSWER_TOKENS,
    };
    gen_words(prefix, sizeof prefix - 1, &g);

    /* "<model>:", the model cut on a UTF-8 character boundary */
    char word[FAKE_MAX_MODEL_BYTES + 2];
    size_t mlen = strlen(model);
    if (mlen > FAKE_MAX_MODEL_BYTES) {
        mlen = FAKE_MAX_MODEL_BYTES;
        while (mlen > 0 && ((unsigned char)model[mlen] & 0xC0) == 0x80)
            mlen--;
    }
    memcpy(word, model, mlen);
    word[mlen] = ':';
    gen_words(word, mlen + 1, &g);

    g.skip_directives = 1;
    if (p->last_user)
        fake_sim_foreach_text(p->last_user, gen_words, &g);
    for (size_t k = 0; g.done < g.need && !out->err; k++)
        gen_word(&g, lorem[k % FAKE_LOREM_WORDS], strlen(lorem[k % FAKE_LOREM_WORDS]));
}

/* Earliest occurrence of stop in text[0..n), or n + 1 when absent. */
static size_t find_stop(const char *text, size_t n, const json_t *stop)
{
    size_t slen = json_string_length(stop);
    if (!json_is_string(stop) || slen == 0)
        return n + 1;
    const char *at = memmem(text, n, json_string_value(stop), slen);
    return at ? (size_t)(at - text) : n + 1;
}

fake_finish_t fake_sim_cut(const char *text, size_t *len, long max_words, const json_t *stops,
                           const char **hit)
{
    fake_finish_t finish = FAKE_FINISH_STOP;
    size_t n = *len;
    *hit = NULL;

    if (max_words >= 0) {
        long words = 0;
        size_t i = 0, word_end = 0;
        while (i < n) {
            while (i < n && is_space((unsigned char)text[i]))
                i++;
            if (i == n)
                break;
            if (words == max_words) {
                n = word_end;
                finish = FAKE_FINISH_LENGTH;
                break;
            }
            while (i < n && !is_space((unsigned char)text[i]))
                i++;
            words++;
            word_end = i;
        }
    }

    size_t best = n + 1;
    const json_t *best_stop = NULL;
    if (json_is_string(stops)) {
        best = find_stop(text, n, stops);
        best_stop = stops;
    } else if (json_is_array(stops)) {
        for (size_t i = 0; i < json_array_size(stops); i++) {
            size_t at = find_stop(text, n, json_array_get(stops, i));
            if (at < best) {
                best = at;
                best_stop = json_array_get(stops, i);
            }
        }
    }
    if (best <= n) {
        n = best;
        finish = FAKE_FINISH_STOP_SEQUENCE;
        *hit = json_string_value(best_stop);
    }
    *len = n;
    return finish;
}

size_t fake_sim_chunk(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_space((unsigned char)s[i]))
        i++;
    while (i < n && !is_space((unsigned char)s[i]))
        i++;
    size_t j = i;
    while (j < n && is_space((unsigned char)s[j]))
        j++;
    return j == n ? n : i;
}

/* ---- tool calls ----------------------------------------------------------------------- */

/* The made-up value of one schema property. */
static const char *fake_value(const json_t *prop)
{
    const json_t *type = json_object_get(prop, "type");
    const char *t = json_string_value(type);
    for (size_t i = 0; !t && i < json_array_size(type); i++) {
        const char *alt = json_string_value(json_array_get(type, i));
        if (alt && strcmp(alt, "null") != 0)
            t = alt;
    }
    if (!t)
        return "null";
    if (strcmp(t, "string") == 0)
        return "\"fake\"";
    if (strcmp(t, "number") == 0 || strcmp(t, "integer") == 0)
        return "1";
    if (strcmp(t, "boolean") == 0)
        return "true";
    return "null";
}

void fake_sim_tool_call(fake_tool_call_t *tc, const char *name, const json_t *schema)
{
    const json_t *props = json_object_get(schema, "properties");
    size_t nprops = json_is_object(props) ? json_object_size(props) : 0;
    tc->name = name;
    fake_out_init(&tc->args, FAKE_MAX_REPLY_BYTES);
    tc->frags = ah_calloc(nprops + 1, sizeof *tc->frags);
    tc->nfrags = 0;

    /* One fragment per property: {"a":"fake" | ,"b":1 | ,"c":true} */
    fake_out_raw(&tc->args, "{", 1);
    size_t k = 0;
    for (void *it = nprops ? json_object_iter((json_t *)props) : NULL; it;
         it = json_object_iter_next((json_t *)props, it), k++) {
        if (k > 0) {
            tc->frags[tc->nfrags++] = tc->args.buf.len;
            fake_out_raw(&tc->args, ",", 1);
        }
        fake_out_jstr(&tc->args, json_object_iter_key(it), json_object_iter_key_len(it));
        fake_out_raw(&tc->args, ":", 1);
        fake_out_cstr(&tc->args, fake_value(json_object_iter_value(it)));
    }
    fake_out_raw(&tc->args, "}", 1);
    tc->frags[tc->nfrags++] = tc->args.buf.len;
}

void fake_sim_tool_free(fake_tool_call_t *tc)
{
    fake_out_free(&tc->args);
    ah_free(tc->frags);
    tc->frags = NULL;
    tc->nfrags = 0;
}

int fake_sim_get_long(const json_t *obj, const char *key, long min, long *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return -1;
    *out = (long)json_integer_value(v);
    return 0;
}
