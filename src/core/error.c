/* error.c - messages for ah_err_t, generated from AH_ERR_MAP. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[] = {
#define AH_ERR_MSG(name, msg) msg,
    AH_ERR_MAP(AH_ERR_MSG)
#undef AH_ERR_MSG
};

const char *ah_strerror(ah_err_t err)
{
    if ((unsigned)err >= AH_E__COUNT)
        return "unknown error";
    return messages[err];
}

void ah_err_printf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
