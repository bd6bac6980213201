/* curl_util.c - see curl_util.h. */
#include "upstream/curl_util.h"

#include <string.h>
#include <strings.h>

#include "core/buf.h"

size_t ah_curl_to_buf(char *ptr, size_t size, size_t n, void *buf)
{
    return ah_buf_append(buf, ptr, size * n) == AH_E_OK ? size * n : 0;
}

void ah_curl_header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (outlen == 0 || n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t len = (size_t)(e - v) < outlen - 1 ? (size_t)(e - v) : outlen - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}
