/* common.c - what every provider adapter shares. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "provider/provider.h"

const ah_provider_ops_t *ah_provider_for(const ah_deployment_t *d)
{
    return d->kind == AH_PROVIDER_ANTHROPIC ? &ah_provider_anthropic : &ah_provider_openai;
}

void ah_provider_req_free(ah_provider_req_t *p)
{
    ah_free(p->url);
    curl_slist_free_all(p->headers);
    free(p->body); /* from json_dumps */
    memset(p, 0, sizeof *p);
}

struct curl_slist *ah_provider_header(struct curl_slist *l, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *h = ah_malloc(n);
    snprintf(h, n, "%s: %s", name, value);
    struct curl_slist *r = curl_slist_append(l, h);
    ah_free(h);
    return r ? r : l;
}

void ah_provider_error_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (!m)
        m = json_string_value(json_object_get(j, "message"));
    if (m)
        snprintf(msg, msglen, "%s", m);
    else
        snprintf(msg, msglen, "%.*s", (int)(len > 200 ? 200 : len), body ? body : "");
    json_decref(j);
}

json_t *ah_provider_span_json(ah_json_span_t span)
{
    return span.p ? json_loadb(span.p, span.n, JSON_DECODE_ANY, NULL) : NULL;
}

const char *ah_provider_span_string(ah_request_t *r, ah_json_span_t span)
{
    if (!span.p || span.n < 2 || span.p[0] != '"')
        return NULL;
    if (!memchr(span.p, '\\', span.n)) /* no escapes: the bytes are the string */
        return ah_arena_strndup(&r->arena, span.p + 1, span.n - 2);
    json_t *j = ah_provider_span_json(span);
    const char *s = json_is_string(j) ? ah_arena_strdup(&r->arena, json_string_value(j)) : NULL;
    json_decref(j);
    return s;
}
