/* labels.h - labelled routing outcomes: for each prompt, whether the cheap and
 * the strong model answered it well. The training and evaluation data of the
 * learned router (`ahorro router train|eval`, bench/router/).
 *
 * Two formats, by file name:
 *   *.csv    header `prompt,<cheap model>,<strong model>` (RouteLLM's MMLU
 *            files), values True/False (or true/false, 1/0); fields may be
 *            quoted, span lines, and double their quotes (RFC 4180).
 *   *.jsonl  one object a line: {"prompt": "...", "cheap_ok": bool,
 *            "strong_ok": bool} (or "messages": [...] instead of "prompt";
 *            optional "group" or "subject").
 * Each row belongs to a group: the JSONL's group/subject, else the file's
 * base name without extension (an MMLU subject), so that evaluations can
 * split by subject. Files are untrusted input: every size is bounded. */
#ifndef AH_ROUTE_LABELS_H
#define AH_ROUTE_LABELS_H

#include <stddef.h>

#include "core/error.h"

#define AH_LABELS_MAX_FILE (512u * 1024 * 1024)
#define AH_LABELS_MAX_FIELD (1u << 20)
#define AH_LABELS_MAX_FIELDS 64
#define AH_LABELS_MAX_ROWS 10000000u
#define AH_LABELS_MAX_GROUPS 100000u

typedef struct ah_label_row {
    char *prompt; /* owned, NUL-terminated */
    size_t len;
    unsigned char cheap_ok, strong_ok;
    unsigned group; /* index into groups */
} ah_label_row_t;

typedef struct ah_labels {
    ah_label_row_t *rows;
    size_t n, cap;
    char **groups; /* owned names */
    size_t ngroups;
    char *cheap_name, *strong_name; /* column names of the first CSV read, or NULL */
} ah_labels_t;

/* An empty set; no allocation. Free with ah_labels_free. */
void ah_labels_init(ah_labels_t *l);
/* Append the rows of one file (format by extension: .csv, else JSONL).
 * cheap_col / strong_col name the CSV columns (NULL: the 2nd and 3rd).
 * On error nothing of this file is kept and err says file:line: why. */
ah_err_t ah_labels_load(ah_labels_t *l, const char *path, const char *cheap_col,
                        const char *strong_col, char *err, size_t errlen);
/* Drop the rows whose prompt equals a prompt of the JSONL file path (its
 * objects' "eval_prompt", else "prompt": RouteLLM's contaminated_prompts.jsonl).
 * *removed (may be NULL) gets how many rows went. */
ah_err_t ah_labels_exclude(ah_labels_t *l, const char *path, size_t *removed, char *err,
                           size_t errlen);
void ah_labels_free(ah_labels_t *l);

/* One CSV record of p[0..n) from *pos: fields[i] / lens[i] point into scratch
 * (quotes removed, "" made "), which must hold n bytes. Advances *pos past the
 * record's line end; *line (may be NULL) counts newlines consumed. Returns
 * AH_E_NOTFOUND at the end, AH_E_PARSE on a malformed record (stray quote,
 * unterminated quoted field), AH_E_TOOBIG past maxfields or
 * AH_LABELS_MAX_FIELD. */
ah_err_t ah_csv_record(const char *p, size_t n, size_t *pos, char *scratch, const char **fields,
                       size_t *lens, size_t maxfields, size_t *nfields, size_t *line);
/* The next record that is not a blank line, as ah_csv_record with at most
 * AH_LABELS_MAX_FIELDS fields; *at gets the line it starts on. A malformed
 * record writes "path:line: why" into err. */
ah_err_t ah_csv_next(const char *p, size_t n, size_t *pos, char *scratch, const char **fields,
                     size_t *lens, size_t *nfields, size_t *line, size_t *at, const char *path,
                     char *err, size_t errlen);

#endif
