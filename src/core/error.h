/* error.h - the one error type of ahorro.
 *
 * Every fallible function returns ah_err_t; 0 is success. Codes and their
 * messages live together in AH_ERR_MAP so that they can never drift apart
 * (the shape of libuv's UV_ERRNO_MAP). */
#ifndef AH_ERROR_H
#define AH_ERROR_H

#include <stddef.h>

#define AH_ERR_MAP(X)                                                                              \
    X(OK, "success")                                                                               \
    X(NOMEM, "out of memory")                                                                      \
    X(TOOBIG, "input exceeds a size limit")                                                        \
    X(INVAL, "invalid argument")                                                                   \
    X(PARSE, "malformed input")                                                                    \
    X(NOTFOUND, "not found")                                                                       \
    X(IO, "input/output error")                                                                    \
    X(DB, "database error")                                                                        \
    X(CONFIG, "invalid configuration")                                                             \
    X(AUTH, "authentication failed")                                                               \
    X(UPSTREAM, "upstream error")                                                                  \
    X(TIMEOUT, "timed out")                                                                        \
    X(CLOSED, "connection closed")                                                                 \
    X(UNSUPPORTED, "not supported")                                                                \
    X(CANCELLED, "cancelled")

typedef enum {
#define AH_ERR_ENUM(name, msg) AH_E_##name,
    AH_ERR_MAP(AH_ERR_ENUM)
#undef AH_ERR_ENUM
        AH_E__COUNT
} ah_err_t;

/* Returns a static string describing err; never NULL, never to be freed. */
const char *ah_strerror(ah_err_t err);

/* Write a printf-formatted message into a caller's error buffer (err may be
 * NULL or errlen 0: nothing is written). For functions that report why they
 * failed into `char *err, size_t errlen`. */
void ah_err_printf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
