/* attribute.c - stage 2: whose spend is this.
 *
 * Tags come, later ones overriding earlier ones, from the virtual key, the
 * body's `metadata` (string values), and the `x-ahorro-tags` header (also
 * LiteLLM's `x-litellm-tags`): "k=v,k=v". The OpenAI `user` field (or
 * Anthropic's metadata.user_id) is the user. Tag keys and values are
 * bounded in count and size; malformed tags are a 400, not a silent drop. */
#include <string.h>

#include "core/limits.h"
#include "pipeline/pipeline.h"

static int valid_tag_part(const char *s, size_t n)
{
    if (n == 0 || n > AH_MAX_TAG_BYTES)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '=' || s[i] == ',')
            return 0;
    return 1;
}

static int add_header_tags(ah_request_t *r, const char *h)
{
    while (*h) {
        while (*h == ' ' || *h == ',')
            h++;
        if (!*h)
            break;
        const char *end = strchr(h, ',');
        size_t n = end ? (size_t)(end - h) : strlen(h);
        const char *eq = memchr(h, '=', n);
        const char *k = h, *v = eq ? eq + 1 : NULL;
        size_t kl = eq ? (size_t)(eq - h) : n, vl = eq ? n - kl - 1 : 0;
        while (kl && k[kl - 1] == ' ')
            kl--;
        while (vl && *v == ' ')
            v++, vl--;
        while (vl && v[vl - 1] == ' ')
            vl--;
        if (!eq || !valid_tag_part(k, kl) || !valid_tag_part(v, vl))
            return ah_request_fail(r, 400, "invalid_request_error", "invalid_tags", "x-ahorro-tags",
                                   "Malformed x-ahorro-tags: expected 'key=value,key=value' with "
                                   "non-empty keys and values of at most %d bytes",
                                   AH_MAX_TAG_BYTES);
        char key[AH_MAX_TAG_BYTES + 1];
        memcpy(key, k, kl);
        key[kl] = '\0';
        json_object_set_new(r->tags, key, json_stringn(v, vl));
        if (json_object_size(r->tags) > AH_MAX_TAGS)
            return ah_request_fail(r, 400, "invalid_request_error", "invalid_tags", "x-ahorro-tags",
                                   "Too many tags (at most %d)", AH_MAX_TAGS);
        h += n;
    }
    return 0;
}

int ah_stage_attribute(ah_worker_t *w, ah_request_t *r)
{
    if (!r->tags)
        r->tags = json_object();
    json_t *meta = json_object_get(r->raw, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v)
    {
        if (!json_is_string(v))
            continue;
        if (!valid_tag_part(k, strlen(k)) ||
            !valid_tag_part(json_string_value(v), json_string_length(v)))
            return ah_request_fail(r, 400, "invalid_request_error", "invalid_tags", "metadata",
                                   "metadata keys and string values must be non-empty, at most "
                                   "%d bytes, without ',' or '='",
                                   AH_MAX_TAG_BYTES);
        if (strcmp(k, "user_id") == 0 && !r->user)
            r->user = ah_arena_strdup(&r->arena, json_string_value(v));
        else if (strcmp(k, "user_id") != 0)
            json_object_set(r->tags, k, v);
        if (json_object_size(r->tags) > AH_MAX_TAGS)
            return ah_request_fail(r, 400, "invalid_request_error", "invalid_tags", "metadata",
                                   "Too many tags (at most %d)", AH_MAX_TAGS);
    }
    if (r->header_tags && add_header_tags(r, r->header_tags))
        return r->fail.status;
    return 0;
}
