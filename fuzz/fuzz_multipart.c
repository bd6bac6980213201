/* fuzz_multipart.c - libFuzzer driver for the Files API's multipart/form-data
 * parser (batch/multipart.h): an upload's body and its Content-Type header
 * are the client's, untrusted bytes.
 *
 * The input is split at its first newline: the Content-Type header, then
 * the body. Checked: no crash or leak, every part inside the body and
 * within the part count, names NUL-terminated within their limits, and a
 * boundary that is one by RFC 2046's rules. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t hl = nl ? (size_t)(nl - s) : size;
    char *ct = malloc(hl + 1);
    memcpy(ct, s, hl);
    ct[hl] = '\0';
    char boundary[AH_MULTIPART_MAX_BOUNDARY + 1];
    if (ah_multipart_boundary(ct, boundary) != AH_E_OK)
        memcpy(boundary, "b", 2);
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > AH_MULTIPART_MAX_BOUNDARY)
        abort();
    /* the body in its own allocation, so that ASan sees any read past it */
    size_t blen = nl ? size - hl - 1 : 0;
    char *body = malloc(blen ? blen : 1);
    if (blen)
        memcpy(body, nl + 1, blen);
    ah_multipart_part_t parts[AH_MULTIPART_MAX_PARTS];
    int n = -1;
    char err[200];
    ah_err_t rc = ah_multipart_parse(body, blen, boundary, parts, AH_MULTIPART_MAX_PARTS, &n, err,
                                     sizeof err);
    if (n < 0 || n > AH_MULTIPART_MAX_PARTS)
        abort();
    for (int i = 0; rc == AH_E_OK && i < n; i++) {
        const ah_multipart_part_t *p = &parts[i];
        if (p->data < body || p->data + p->len > body + blen)
            abort();
        if (strlen(p->name) > AH_MULTIPART_MAX_NAME || !p->name[0] ||
            strlen(p->filename) > AH_MULTIPART_MAX_NAME ||
            strlen(p->content_type) > AH_MULTIPART_MAX_TYPE)
            abort();
    }
    free(body);
    free(ct);
    return 0;
}
