/* json_out.h - JSON text written straight into a buffer, for hot paths
 * where building a jansson tree per record costs more than the record
 * (the ledger's spool lines: store/ledger_pg.c). */
#ifndef AH_JSON_OUT_H
#define AH_JSON_OUT_H

#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

/* Append s as a quoted JSON string: '"' and '\' escaped, control
 * characters as \uXXXX, bytes that are not UTF-8 (or are overlong forms or
 * surrogates) replaced by U+FFFD, so that any JSON parser takes it back.
 * AH_E_TOOBIG when b's limit is reached. */
ah_err_t ah_json_out_string(ah_buf_t *b, const char *s);

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
size_t ah_utf8_seq_len(const unsigned char *p, size_t n);

#endif
