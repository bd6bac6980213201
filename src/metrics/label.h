/* label.h - bounded sets of label values for the metrics (internal to
 * src/metrics/).
 *
 * Every label value a series carries is interned once into the set of its
 * label (models, providers, routes, one set per configured tag...). A set
 * holds at most `cap` distinct values; past that every new value is the
 * shared "other" value, so a client inventing model names or tag values
 * cannot grow the series past a bound. Interned values are never freed
 * (they live as long as the process, like the series that point at them),
 * so series compare and hash labels by pointer.
 *
 * Lock-free: lookups read atomically published slots; an insert claims an
 * empty slot with a compare-and-swap. Safe from any thread. */
#ifndef AH_METRICS_LABEL_H
#define AH_METRICS_LABEL_H

#include <stdatomic.h>
#include <stddef.h>

#include "core/buf.h"

/* Longest value kept; longer ones are cut at a UTF-8 boundary. */
#define AH_LABEL_MAX_VALUE_BYTES 64
/* Slots of a set: twice the largest cap, so probes stay short. */
#define AH_LABEL_SET_SLOTS 2048

typedef struct ah_label_value {
    const char *raw; /* as given (cut), NUL-terminated */
    const char *esc; /* escaped for the text exposition: \\, \" and \n */
} ah_label_value_t;

typedef struct ah_label_set {
    _Atomic(ah_label_value_t *) slot[AH_LABEL_SET_SLOTS];
    atomic_int n; /* values interned (claims included) */
} ah_label_set_t;

/* The shared values: "other" (a set is full) and "" (no value). */
extern const ah_label_value_t ah_label_other, ah_label_empty;

/* The interned value of v in s; "other" once s holds cap values (cap at
 * most AH_LABEL_SET_SLOTS / 2); "" for NULL or "". The literal value
 * "other" is the shared one, so that it can never name two series. */
const ah_label_value_t *ah_label_intern(ah_label_set_t *s, const char *v, int cap);
/* Append v escaped per the text exposition format. */
void ah_label_escape(ah_buf_t *out, const char *v);

#endif
