/* json_skim.c - one pass over a JSON object's text: strings (with escapes),
 * nesting by counting brackets outside strings, scalars up to a delimiter. */
#include "core/json_skim.h"

#include <string.h>

static size_t skip_ws(const char *s, size_t i, size_t len)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"': index just past the closing quote, or len when unterminated. */
static size_t skip_string(const char *s, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len + 1;
}

/* Index just past the value starting at s[i], or > len when cut short. */
static size_t skip_value(const char *s, size_t i, size_t len)
{
    if (i >= len)
        return len + 1;
    if (s[i] == '"')
        return skip_string(s, i, len);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, i, len);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return len + 1;
    }
    while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' &&
           s[i] != '\r' && s[i] != '\t')
        i++;
    return i;
}

/* Keys whose lengths are computed once per call; more are measured as met. */
#define SKIM_MAX_KEYS 16

ah_err_t ah_json_skim(const char *s, size_t len, const char *const *keys, int n,
                      ah_json_span_t *out)
{
    /* The keys' lengths once, not once per member of the object (a
     * stream chunk has about ten members: strlen was 3% of a stream). */
    size_t klens[SKIM_MAX_KEYS];
    for (int k = 0; k < n; k++) {
        out[k] = (ah_json_span_t){NULL, 0};
        if (k < SKIM_MAX_KEYS)
            klens[k] = strlen(keys[k]);
    }
    size_t i = skip_ws(s, 0, len);
    if (i >= len || s[i] != '{')
        return AH_E_PARSE;
    i = skip_ws(s, i + 1, len);
    if (i < len && s[i] == '}')
        return AH_E_OK;
    for (;;) {
        if (i >= len || s[i] != '"')
            return AH_E_PARSE;
        size_t kstart = i + 1, kend = skip_string(s, i, len);
        if (kend > len)
            return AH_E_PARSE;
        size_t klen = kend - 1 - kstart;
        i = skip_ws(s, kend, len);
        if (i >= len || s[i] != ':')
            return AH_E_PARSE;
        i = skip_ws(s, i + 1, len);
        size_t vstart = i, vend = skip_value(s, i, len);
        if (vend > len || vend == vstart)
            return AH_E_PARSE;
        for (int k = 0; k < n; k++)
            if (!out[k].p && (k < SKIM_MAX_KEYS ? klens[k] : strlen(keys[k])) == klen &&
                memcmp(keys[k], s + kstart, klen) == 0)
                out[k] = (ah_json_span_t){s + vstart, vend - vstart};
        i = skip_ws(s, vend, len);
        if (i < len && s[i] == ',') {
            i = skip_ws(s, i + 1, len);
            continue;
        }
        if (i < len && s[i] == '}')
            return AH_E_OK;
        return AH_E_PARSE;
    }
}

int ah_json_span_is(ah_json_span_t span, const char *lit)
{
    if (!span.p)
        return 0;
    size_t l = strlen(lit), j = 0;
    for (size_t i = 0; i < span.n; i++) {
        char c = span.p[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (j >= l || c != lit[j++])
            return 0;
    }
    return j == l;
}
