/* fake_answers.c - recorded answers: ahorro-fake --answers FILE.
 *
 * Benchmarks of routers and cascades need a provider that is right or wrong the way a
 * real model was on a data set, without paying for that model. The file is a recording:
 * JSONL entries {"model", "prompt", "answer", "delay_ms"}, where an absent model or prompt
 * matches any. A chat or messages request whose model and last user message match an
 * entry gets the entry's answer in place of the simulated text; counting, cutting and
 * streaming stay those of the simulated model (fake_sim.c).
 *
 * The file is loaded once, before the loops start, into an open-addressing table keyed by
 * FNV-1a over model "\0" prompt; after that the table is read-only and the loops share it
 * without locks. A bad line stops the start: a recording that silently lost entries would
 * make a benchmark measure the simulator instead. */
#include "fake.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "core/log.h"
#include "fake_sim.h"

#define FAKE_ANSWERS_READ_BLOCK (64u * 1024) /* bytes read from the file at a time */
#define FAKE_ANSWERS_MIN_SLOTS 1024          /* initial table size (a power of two) */
#define FAKE_ANSWERS_MAX_REASON 320          /* a load error's reason */

/* One entry: model\0 prompt\0 answer\0 laid out back to back in data[]. */
typedef struct entry {
    uint64_t hash;
    fake_answer_t answer; /* text points into data[] */
    size_t model_len;
    size_t prompt_len;
    unsigned char has_model;
    unsigned char has_prompt;
    char data[];
} entry_t;

static entry_t **slots; /* FAKE_ANSWERS_MIN_SLOTS << k pointers, NULL when empty */
static size_t nslots;
static size_t nentries;
static atomic_ullong hits;

static uint64_t key_hash(const char *model, size_t mlen, const char *prompt, size_t plen)
{
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, model, mlen);
    h = ah_fnv1a(h, "", 1);
    return ah_fnv1a(h, prompt, plen);
}

static const char *entry_model(const entry_t *e)
{
    return e->data;
}

static const char *entry_prompt(const entry_t *e)
{
    return e->data + e->model_len + 1;
}

/* The slot of the entry with this key, or the empty slot where it would go. */
static entry_t **probe(uint64_t h, int has_model, const char *model, size_t mlen, int has_prompt,
                       const char *prompt, size_t plen)
{
    size_t mask = nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        entry_t *e = slots[i];
        if (!e)
            return &slots[i];
        if (e->hash == h && e->has_model == has_model && e->has_prompt == has_prompt &&
            e->model_len == mlen && e->prompt_len == plen &&
            memcmp(entry_model(e), model, mlen) == 0 && memcmp(entry_prompt(e), prompt, plen) == 0)
            return &slots[i];
    }
}

/* Doubles the table (or makes the first one). */
static void grow(void)
{
    size_t old_n = nslots;
    entry_t **old = slots;
    nslots = old_n ? old_n * 2 : FAKE_ANSWERS_MIN_SLOTS;
    slots = ah_calloc(nslots, sizeof *slots);
    for (size_t i = 0; i < old_n; i++) {
        entry_t *e = old[i];
        if (!e)
            continue;
        size_t j = (size_t)e->hash & (nslots - 1);
        while (slots[j])
            j = (j + 1) & (nslots - 1);
        slots[j] = e;
    }
    ah_free(old);
}

void fake_answers_free(void)
{
    for (size_t i = 0; i < nslots; i++)
        ah_free(slots[i]);
    ah_free(slots);
    slots = NULL;
    nslots = 0;
    nentries = 0;
}

/* ---- loading -------------------------------------------------------------------------- */

/* The file read in blocks, handed out a line at a time. */
typedef struct reader {
    FILE *f;
    char *block;
    size_t pos;
    size_t len;
    unsigned long long total; /* bytes consumed so far */
} reader_t;

/* Reads the next line, without its "\n", into line (emptied first). 1 when a line was
 * read, 0 at the end of the file, -1 with the reason in why on a read error or a limit. */
static int next_line(reader_t *rd, ah_buf_t *line, char *why, size_t whylen)
{
    ah_buf_reset(line);
    int got = 0;
    for (;;) {
        if (rd->pos == rd->len) {
            rd->len = fread(rd->block, 1, FAKE_ANSWERS_READ_BLOCK, rd->f);
            rd->pos = 0;
            if (rd->len == 0) {
                if (ferror(rd->f)) {
                    snprintf(why, whylen, "%s", strerror(errno ? errno : EIO));
                    return -1;
                }
                return got;
            }
        }
        got = 1;
        const char *start = rd->block + rd->pos;
        const char *nl = memchr(start, '\n', rd->len - rd->pos);
        size_t n = nl ? (size_t)(nl - start) : rd->len - rd->pos;
        rd->pos += n + (nl ? 1 : 0);
        rd->total += n + (nl ? 1 : 0);
        if (rd->total > FAKE_MAX_ANSWERS_FILE_BYTES) {
            snprintf(why, whylen, "the file is larger than %llu MiB",
                     FAKE_MAX_ANSWERS_FILE_BYTES >> 20);
            return -1;
        }
        if (ah_buf_append(line, start, n)) {
            snprintf(why, whylen, "the line is longer than %u MiB",
                     FAKE_MAX_ANSWERS_LINE_BYTES >> 20);
            return -1;
        }
        if (nl)
            return 1;
    }
}

static int only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* An optional string member: 0 with *s NULL when absent or null, -1 when of another type. */
static int opt_string(const json_t *obj, const char *key, const json_t **s)
{
    const json_t *v = json_object_get(obj, key);
    *s = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    *s = v;
    return 0;
}

/* Adds the entry on one line; 0, or -1 with the reason in why. A key already present
 * keeps its first entry (*dup set). */
static int add_line(const char *s, size_t n, char *why, size_t whylen, int *dup)
{
    int rc = -1;
    json_error_t jerr;
    const json_t *model, *prompt;
    long delay = 0;
    json_t *v = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    *dup = 0;
    if (!v) {
        snprintf(why, whylen, "not JSON: %s (column %d)", jerr.text, jerr.column);
        goto out;
    }
    if (!json_is_object(v)) {
        snprintf(why, whylen, "not a JSON object");
        goto out;
    }
    const json_t *answer = json_object_get(v, "answer");
    if (!json_is_string(answer)) {
        snprintf(why, whylen, "\"answer\" is %s", answer ? "not a string" : "missing");
        goto out;
    }
    if (opt_string(v, "model", &model)) {
        snprintf(why, whylen, "\"model\" is not a string");
        goto out;
    }
    if (opt_string(v, "prompt", &prompt)) {
        snprintf(why, whylen, "\"prompt\" is not a string");
        goto out;
    }
    if (fake_sim_get_long(v, "delay_ms", 0, &delay) || delay > FAKE_MAX_DELAY_MS) {
        snprintf(why, whylen, "\"delay_ms\" is not an integer in 0..%ld", FAKE_MAX_DELAY_MS);
        goto out;
    }

    const char *ms = model ? json_string_value(model) : "";
    size_t mlen = model ? json_string_length(model) : 0;
    const char *ps = prompt ? json_string_value(prompt) : "";
    size_t plen = prompt ? json_string_length(prompt) : 0;
    size_t alen = json_string_length(answer);
    uint64_t h = key_hash(ms, mlen, ps, plen);
    if ((nentries + 1) * 2 > nslots)
        grow();
    entry_t **slot = probe(h, model != NULL, ms, mlen, prompt != NULL, ps, plen);
    if (*slot) {
        *dup = 1;
        rc = 0;
        goto out;
    }
    if (nentries >= FAKE_MAX_ANSWERS) {
        snprintf(why, whylen, "more than %u entries", FAKE_MAX_ANSWERS);
        goto out;
    }
    /* Each length is below the line's, so the sum cannot overflow. */
    entry_t *e = ah_malloc(sizeof *e + mlen + plen + alen + 3);
    e->hash = h;
    e->has_model = model != NULL;
    e->has_prompt = prompt != NULL;
    e->model_len = mlen;
    e->prompt_len = plen;
    memcpy(e->data, ms, mlen + 1);
    memcpy(e->data + mlen + 1, ps, plen + 1);
    char *text = e->data + mlen + plen + 2;
    memcpy(text, json_string_value(answer), alen + 1);
    e->answer.text = text;
    e->answer.len = alen;
    e->answer.delay_ms = delay;
    *slot = e;
    nentries++;
    rc = 0;
out:
    json_decref(v);
    return rc;
}

int fake_answers_load(const char *path)
{
    int rc = -1;
    unsigned long line_no = 0, dups = 0;
    char why[FAKE_ANSWERS_MAX_REASON];
    ah_buf_t line;
    reader_t rd = {.f = fopen(path, "rb")};
    struct stat st;

    ah_buf_init(&line, FAKE_MAX_ANSWERS_LINE_BYTES);
    if (!rd.f) {
        fprintf(stderr, "ahorro-fake: --answers %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (fstat(fileno(rd.f), &st) == 0 && S_ISREG(st.st_mode) &&
        (unsigned long long)st.st_size > FAKE_MAX_ANSWERS_FILE_BYTES) {
        fprintf(stderr, "ahorro-fake: --answers %s: the file is larger than %llu MiB\n", path,
                FAKE_MAX_ANSWERS_FILE_BYTES >> 20);
        goto out;
    }
    rd.block = ah_malloc(FAKE_ANSWERS_READ_BLOCK);
    for (;;) {
        int got = next_line(&rd, &line, why, sizeof why);
        if (got == 0)
            break;
        line_no++;
        if (got < 0) {
            fprintf(stderr, "ahorro-fake: %s:%lu: %s\n", path, line_no, why);
            goto out;
        }
        if (only_space(line.data, line.len))
            continue;
        int dup;
        if (add_line(line.data, line.len, why, sizeof why, &dup)) {
            fake_utf8_scrub(why);
            fprintf(stderr, "ahorro-fake: %s:%lu: %s\n", path, line_no, why);
            goto out;
        }
        dups += (unsigned long)dup;
    }
    ah_info("ahorro-fake: %zu recorded answers from %s (%lu lines, %lu duplicates ignored)",
            nentries, path, line_no, dups);
    rc = 0;
out:
    if (rc)
        fake_answers_free();
    if (rd.f)
        fclose(rd.f);
    ah_free(rd.block);
    ah_buf_free(&line);
    return rc;
}

/* ---- lookup --------------------------------------------------------------------------- */

static const fake_answer_t *find(const char *model, size_t mlen, int has_model, const char *prompt,
                                 size_t plen, int has_prompt)
{
    if (!has_model)
        mlen = 0;
    if (!has_prompt)
        plen = 0;
    const char *m = has_model ? model : "";
    const char *p = has_prompt ? prompt : "";
    entry_t *e = *probe(key_hash(m, mlen, p, plen), has_model, m, mlen, has_prompt, p, plen);
    return e ? &e->answer : NULL;
}

/* The text pieces of a message joined by "\n". */
typedef struct joined {
    fake_out_t out;
    size_t pieces;
} joined_t;

static void join_text(const char *s, size_t n, void *arg)
{
    joined_t *j = arg;
    if (j->pieces++)
        fake_out_raw(&j->out, "\n", 1);
    fake_out_raw(&j->out, s, n);
}

const fake_answer_t *fake_answers_find(const char *model, const json_t *last_user)
{
    const fake_answer_t *a = NULL;
    joined_t j = {.pieces = 0};
    const char *prompt = NULL;
    size_t plen = 0;
    size_t mlen = strlen(model);

    if (nentries == 0)
        return NULL;
    fake_out_init(&j.out, FAKE_MAX_BODY_BYTES);
    if (json_is_string(last_user)) {
        prompt = json_string_value(last_user);
        plen = json_string_length(last_user);
    } else if (last_user) {
        /* An array of parts; with no text in it the prompt is the empty text. */
        fake_sim_foreach_text(last_user, join_text, &j);
        if (!j.out.err) { /* else longer than any line: only prompt-less entries can match */
            prompt = j.out.buf.data ? j.out.buf.data : "";
            plen = j.out.buf.len;
        }
    }
    if (prompt) {
        a = find(model, mlen, 1, prompt, plen, 1);
        if (!a)
            a = find(model, mlen, 0, prompt, plen, 1);
    }
    if (!a)
        a = find(model, mlen, 1, NULL, 0, 0);
    if (!a)
        a = find(model, mlen, 0, NULL, 0, 0);
    if (a)
        atomic_fetch_add(&hits, 1);
    fake_out_free(&j.out);
    return a;
}

unsigned long long fake_answers_hits(void)
{
    return atomic_load(&hits);
}

void fake_answers_reset_hits(void)
{
    atomic_store(&hits, 0);
}
