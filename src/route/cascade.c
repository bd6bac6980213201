/* cascade.c - checks of a cheap model's answer (see cascade.h). */
#include "route/cascade.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* How far into an answer a refusal or an admission of ignorance counts:
 * a model that refuses says so first; later the same words are content. */
#define OPENING_BYTES 160

static const char *const refusals[] = {
    "i can't help",
    "i cannot help",
    "i can't assist",
    "i cannot assist",
    "i'm sorry, but i can",
    "i am sorry, but i can",
    "i'm unable to",
    "i am unable to",
    "as an ai",
    "i won't be able",
    NULL,
};
static const char *const uncertain[] = {
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "i'm not certain",
    "i am not certain",
    "i don't have enough information",
    "i do not have enough information",
    NULL,
};

/* Whether the first OPENING_BYTES of text contain one of the phrases,
 * case-insensitively, with typographic apostrophes read as plain ones. */
static int opens_with(const char *text, const char *const *phrases)
{
    char low[OPENING_BYTES + 1];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && n < OPENING_BYTES; p++) {
        if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0x98 || p[2] == 0x99)) {
            low[n++] = '\'';
            p += 2;
        } else {
            low[n++] = (char)tolower(*p);
        }
    }
    low[n] = 0;
    for (int i = 0; phrases[i]; i++)
        if (strstr(low, phrases[i]))
            return 1;
    return 0;
}

static int is_json_object_text(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    int ok = json_is_object(v) || json_is_array(v);
    json_decref(v);
    return ok;
}

const char *ah_cascade_check(const json_t *request, const json_t *answer)
{
    json_t *choices = json_object_get(answer, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0)
        return "empty";
    const char *rf =
        json_string_value(json_object_get(json_object_get(request, "response_format"), "type"));
    int json_mode = rf && (strcmp(rf, "json_object") == 0 || strcmp(rf, "json_schema") == 0);
    int capped =
        json_object_get(request, "max_tokens") || json_object_get(request, "max_completion_tokens");
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c)
    {
        json_t *msg = json_object_get(c, "message");
        const char *text = json_string_value(json_object_get(msg, "content"));
        json_t *calls = json_object_get(msg, "tool_calls");
        const char *finish = json_string_value(json_object_get(c, "finish_reason"));
        if (json_is_string(json_object_get(msg, "refusal")))
            return "refusal";
        size_t k;
        json_t *call;
        json_array_foreach(calls, k, call)
        {
            const char *args =
                json_string_value(json_object_get(json_object_get(call, "function"), "arguments"));
            if (!args || !is_json_object_text(args))
                return "invalid-tool-arguments";
        }
        int has_text = text && text[strspn(text, " \t\r\n")];
        if (!has_text && json_array_size(calls) == 0)
            return "empty";
        if (finish && strcmp(finish, "length") == 0 && !capped)
            return "truncated";
        if (has_text) {
            if (json_mode && !is_json_object_text(text))
                return "invalid-json";
            if (opens_with(text, refusals))
                return "refusal";
            if (opens_with(text, uncertain))
                return "uncertain";
        }
    }
    return NULL;
}
