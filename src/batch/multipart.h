/* multipart.h - a bounded parser of multipart/form-data bodies (RFC 7578,
 * RFC 2046 section 5.1), for the Files API's uploads (docs/batch.md "Files").
 *
 * The whole body is in memory (evhttp hands a handler the complete body):
 * the parser never copies part data, it points into the body. What it
 * copies (names, file names, content types) is bounded by the limits below,
 * and a body that breaks one is refused, never truncated. Untrusted input:
 * fuzzed by fuzz/fuzz_multipart.c. */
#ifndef AH_BATCH_MULTIPART_H
#define AH_BATCH_MULTIPART_H

#include <stddef.h>

#include "core/error.h"

#define AH_MULTIPART_MAX_PARTS 16
#define AH_MULTIPART_MAX_BOUNDARY 70       /* RFC 2046: 1 to 70 characters */
#define AH_MULTIPART_MAX_HEADER_BLOCK 8192 /* bytes of one part's headers */
#define AH_MULTIPART_MAX_NAME 255          /* a field name or a file name */
#define AH_MULTIPART_MAX_TYPE 127          /* a part's Content-Type */

typedef struct ah_multipart_part {
    char name[AH_MULTIPART_MAX_NAME + 1];     /* Content-Disposition's name */
    char filename[AH_MULTIPART_MAX_NAME + 1]; /* its filename, or "" */
    int has_filename;                         /* a file field (filename present) */
    char content_type[AH_MULTIPART_MAX_TYPE + 1];
    const char *data; /* the part's bytes, inside the parsed body (not owned) */
    size_t len;
} ah_multipart_part_t;

/* The boundary parameter of a multipart/form-data Content-Type header into
 * out (NUL-terminated). AH_E_INVAL when content_type is not
 * multipart/form-data or has no valid boundary. */
ah_err_t ah_multipart_boundary(const char *content_type, char out[AH_MULTIPART_MAX_BOUNDARY + 1]);

/* Parse body (len bytes) into at most max parts (at most
 * AH_MULTIPART_MAX_PARTS are ever accepted); *n is their count. Parts point
 * into body, which must outlive them. AH_E_PARSE (err says why) for a body
 * that is not well-formed, AH_E_TOOBIG for one over a limit. */
ah_err_t ah_multipart_parse(const char *body, size_t len, const char *boundary,
                            ah_multipart_part_t *parts, int max, int *n, char *err, size_t errlen);

/* The first part named name, or NULL. */
const ah_multipart_part_t *ah_multipart_find(const ah_multipart_part_t *parts, int n,
                                             const char *name);

#endif
