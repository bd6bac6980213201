/* label.c - bounded, lock-free sets of interned label values. */
#include "metrics/label.h"

#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"

const ah_label_value_t ah_label_other = {"other", "other"};
const ah_label_value_t ah_label_empty = {"", ""};

void ah_label_escape(ah_buf_t *out, const char *v)
{
    const char *run = v;
    for (; *v; v++) {
        const char *rep = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        if (!rep)
            continue;
        ah_buf_append(out, run, (size_t)(v - run));
        ah_buf_appends(out, rep);
        run = v + 1;
    }
    ah_buf_append(out, run, (size_t)(v - run));
}

/* Bytes of v kept: at most AH_LABEL_MAX_VALUE_BYTES, not splitting a UTF-8
 * sequence (a cut one would make the exposition invalid UTF-8). */
static size_t kept_len(const char *v)
{
    size_t n = strnlen(v, AH_LABEL_MAX_VALUE_BYTES + 1);
    if (n <= AH_LABEL_MAX_VALUE_BYTES)
        return n;
    n = AH_LABEL_MAX_VALUE_BYTES;
    while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* A new value: raw and escaped text in one allocation, never freed. */
static ah_label_value_t *value_new(const char *v, size_t n)
{
    ah_buf_t esc;
    ah_buf_init(&esc, 4 * AH_LABEL_MAX_VALUE_BYTES);
    char raw[AH_LABEL_MAX_VALUE_BYTES + 1];
    memcpy(raw, v, n);
    raw[n] = '\0';
    ah_label_escape(&esc, raw);
    ah_label_value_t *lv = ah_malloc(sizeof *lv + n + 1 + esc.len + 1);
    char *p = (char *)(lv + 1);
    memcpy(p, raw, n + 1);
    memcpy(p + n + 1, esc.data ? esc.data : "", esc.len + 1);
    lv->raw = p;
    lv->esc = p + n + 1;
    ah_buf_free(&esc);
    return lv;
}

const ah_label_value_t *ah_label_intern(ah_label_set_t *s, const char *v, int cap)
{
    if (!v || !*v)
        return &ah_label_empty;
    size_t n = kept_len(v);
    if (n == 5 && memcmp(v, "other", 5) == 0)
        return &ah_label_other;
    const size_t mask = AH_LABEL_SET_SLOTS - 1;
    ah_label_value_t *mine = NULL;
    for (size_t i = ah_fnv1a(AH_FNV_OFFSET, v, n) & mask, probes = 0; probes <= mask;
         i = (i + 1) & mask, probes++) {
        ah_label_value_t *cur = atomic_load_explicit(&s->slot[i], memory_order_acquire);
        if (!cur) {
            /* Claim a place under the cap first, so that racing inserts
             * cannot overshoot it. */
            if (!mine) {
                if (atomic_fetch_add_explicit(&s->n, 1, memory_order_relaxed) >= cap) {
                    atomic_fetch_sub_explicit(&s->n, 1, memory_order_relaxed);
                    return &ah_label_other;
                }
                mine = value_new(v, n);
            }
            if (atomic_compare_exchange_strong_explicit(&s->slot[i], &cur, mine,
                                                        memory_order_acq_rel, memory_order_acquire))
                return mine;
            /* another thread filled the slot first: cur is its value */
        }
        if (strncmp(cur->raw, v, n) == 0 && cur->raw[n] == '\0') {
            if (mine) { /* the same value won the race elsewhere */
                atomic_fetch_sub_explicit(&s->n, 1, memory_order_relaxed);
                ah_free(mine);
            }
            return cur;
        }
    }
    if (mine) { /* unreachable while cap <= slots / 2 */
        atomic_fetch_sub_explicit(&s->n, 1, memory_order_relaxed);
        ah_free(mine);
    }
    return &ah_label_other;
}
