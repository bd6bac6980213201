/* curl_util.h - small pieces the command-line clients (ahorro eval, the
 * batch engine) share around a libcurl easy handle. */
#ifndef AH_CURL_UTIL_H
#define AH_CURL_UTIL_H

#include <stddef.h>

/* CURLOPT_WRITEFUNCTION appending to the ah_buf_t given as CURLOPT_WRITEDATA:
 * past the buffer's max the transfer fails (CURLE_WRITE_ERROR). */
size_t ah_curl_to_buf(char *ptr, size_t size, size_t n, void *buf);

/* When the header line (as CURLOPT_HEADERFUNCTION sees it) is `name: value`
 * (name case-insensitive), copy the trimmed value into out (truncated to
 * outlen - 1, NUL-terminated); otherwise leave out as it is. */
void ah_curl_header_value(const char *line, size_t n, const char *name, char *out, size_t outlen);

#endif
