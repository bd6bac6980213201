/* chat.c - prompt tokens of an OpenAI chat body, by OpenAI's counting rules.
 *
 * The message and tool rules are those of openai-cookbook's "How to count
 * tokens with tiktoken" (num_tokens_from_messages, num_tokens_for_tools),
 * the image rules those of OpenAI's vision guide ("Calculating costs").
 * Where the body holds something those rules do not cover (content parts,
 * tool calls), the choice made is commented at the spot and listed in
 * docs/tokenizer.md. */
#include "tokenize/chat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

/* Cookbook constants. */
#define TOKENS_PER_MESSAGE 3
#define TOKENS_PER_NAME 1
#define REPLY_PRIMING 3
/* Per tool definition (num_tokens_for_tools); FUNC_INIT is 7 for o200k
 * models (gpt-4o) and 10 for cl100k ones (gpt-4, gpt-3.5-turbo). */
#define TOOL_FUNC_INIT_O200K 7
#define TOOL_FUNC_INIT_CL100K 10
#define TOOL_PROP_INIT 3
#define TOOL_PROP_KEY 3
#define TOOL_ENUM_INIT (-3)
#define TOOL_ENUM_ITEM 3
#define TOOL_FUNC_END 12
/* An assistant tool call: its name and arguments plus this many (ahorro's
 * estimate; the cookbook has no rule for them). */
#define TOOL_CALL_OVERHEAD 3
/* Images: tiles of 512 px after fitting in 2048 and a short side of 768;
 * patches of 32 px, at most 1536. */
#define IMG_FIT 2048.0
#define IMG_SHORT 768.0
#define IMG_TILE 512.0
#define IMG_PATCH 32.0
#define IMG_MAX_PATCHES 1536.0

static const struct {
    const char *prefix;
    const char *encoding;
} MODEL_ENCODINGS[] = {
    /* Longest prefixes first where one is a prefix of another. */
    {"gpt-4o", "o200k_base"},
    {"gpt-4.1", "o200k_base"},
    {"gpt-4.5", "o200k_base"},
    {"gpt-5", "o200k_base"},
    {"gpt-oss", "o200k_base"},
    {"chatgpt-4o", "o200k_base"},
    {"codex-", "o200k_base"},
    {"o1", "o200k_base"},
    {"o3", "o200k_base"},
    {"o4", "o200k_base"},
    {"gpt-4", "cl100k_base"},
    {"gpt-3.5", "cl100k_base"},
    {"gpt-35", "cl100k_base"},
    {"text-embedding-3-", "cl100k_base"},
    {"text-embedding-ada-002", "cl100k_base"},
};

/* Anthropic's tool-use system prompt, in Claude tokens (tool_choice auto or
 * none / any or a named tool). Claude 3 Opus, Sonnet and Haiku: Anthropic's
 * tool-use pricing page; 3.5 Haiku as 3 Haiku, which its billed counts agree
 * with. Claude 3.7 Sonnet, Sonnet 4 and Opus 4.0 / 4.1: the same page's later
 * figures, which the billed counts of Sonnet 4 agree with (docs/tokenizer.md);
 * 3.5 Sonnet is taken as 3.7's (no billed counts of it here). Later models:
 * fitted on billed counts of Sonnet 4.5, Sonnet 4.6 and Opus 4.6, and checked
 * on other projects' recordings; also the default for a Claude model this
 * table does not know. Longest prefixes first. */
#define CLAUDE_LATER_TOOL_PROMPT_AUTO 500
#define CLAUDE_LATER_TOOL_PROMPT_FORCED 600
static const struct {
    const char *prefix;
    int tool_auto, tool_forced;
} CLAUDE_TOOL_PROMPTS[] = {
    {"claude-3-opus", 530, 281},     {"claude-3-sonnet", 159, 235},
    {"claude-3-haiku", 264, 340},    {"claude-3-5-haiku", 264, 340},
    {"claude-3-5-sonnet", 346, 313}, {"claude-3-7-sonnet", 346, 313},
    {"claude-opus-4-1", 346, 313},
};

/* Claude Sonnet 4 or Opus 4 (4.0): "claude-sonnet-4" alone, or followed by
 * "-0" or a date ("-20250514"), not by a later minor version ("-5"). */
static bool claude_4_0(const char *model)
{
    const char *rest = NULL;
    if (strncmp(model, "claude-sonnet-4", 15) == 0)
        rest = model + 15;
    else if (strncmp(model, "claude-opus-4", 13) == 0)
        rest = model + 13;
    if (!rest)
        return false;
    if (rest[0] == 0 || rest[0] == '@' || rest[0] == ':')
        return true;
    if (rest[0] != '-')
        return false;
    if (rest[1] == '0' && (rest[2] == 0 || rest[2] == '-' || rest[2] == '@' || rest[2] == ':'))
        return true;
    size_t digits = strspn(rest + 1, "0123456789");
    return digits == 8;
}

static void claude_tool_prompt(const char *model, ah_chat_model_t *out)
{
    out->tool_prompt_auto = CLAUDE_LATER_TOOL_PROMPT_AUTO;
    out->tool_prompt_forced = CLAUDE_LATER_TOOL_PROMPT_FORCED;
    if (claude_4_0(model)) {
        out->tool_prompt_auto = 346;
        out->tool_prompt_forced = 313;
        return;
    }
    for (size_t i = 0; i < sizeof CLAUDE_TOOL_PROMPTS / sizeof CLAUDE_TOOL_PROMPTS[0]; i++)
        if (strncmp(model, CLAUDE_TOOL_PROMPTS[i].prefix, strlen(CLAUDE_TOOL_PROMPTS[i].prefix)) ==
            0) {
            out->tool_prompt_auto = CLAUDE_TOOL_PROMPTS[i].tool_auto;
            out->tool_prompt_forced = CLAUDE_TOOL_PROMPTS[i].tool_forced;
            return;
        }
}

ah_err_t ah_chat_model(const char *model, ah_chat_model_t *out)
{
    *out = (ah_chat_model_t){.encoding = "o200k_base", .factor = 1.0, .estimate = true};
    if (!model)
        return AH_E_NOTFOUND;
    const char *slash = strrchr(model, '/');
    if (slash)
        model = slash + 1;
    /* claude-..., and Bedrock's anthropic.claude-... with or without a
     * cross-region prefix (us.anthropic.claude-...) */
    const char *dot = strstr(model, "anthropic.claude");
    if (strncmp(model, "claude", 6) == 0 || (dot && (dot == model || dot[-1] == '.'))) {
        out->factor = AH_CHAT_ANTHROPIC_FACTOR;
        claude_tool_prompt(dot ? dot + strlen("anthropic.") : model, out);
        return AH_E_OK;
    }
    for (size_t i = 0; i < sizeof MODEL_ENCODINGS / sizeof MODEL_ENCODINGS[0]; i++) {
        size_t n = strlen(MODEL_ENCODINGS[i].prefix);
        if (strncmp(model, MODEL_ENCODINGS[i].prefix, n) == 0) {
            out->encoding = MODEL_ENCODINGS[i].encoding;
            out->estimate = false;
            return AH_E_OK;
        }
    }
    return AH_E_NOTFOUND;
}

/* ---- images ------------------------------------------------------------- */

static const struct {
    const char *prefix;
    int base, tile;    /* tile models */
    double multiplier; /* patch models (base = tile = 0) */
} IMAGE_RULES[] = {
    /* Longest prefixes first. */
    {"gpt-4o-mini", 2833, 5667, 0}, {"gpt-4.1-mini", 0, 0, 1.62}, {"gpt-4.1-nano", 0, 0, 2.46},
    {"gpt-5-mini", 0, 0, 1.62},     {"gpt-5-nano", 0, 0, 2.46},   {"o4-mini", 0, 0, 1.72},
    {"gpt-5", 70, 140, 0},          {"o1", 75, 150, 0},           {"o3", 75, 150, 0},
    {"computer-use", 65, 129, 0},   {"gpt-4o", 85, 170, 0},       {"gpt-4.1", 85, 170, 0},
    {"gpt-4.5", 85, 170, 0},
};

int64_t ah_chat_image_tokens(const char *model, const char *detail, int64_t width, int64_t height)
{
    int base = 85, tile = 170;
    double mult = 0;
    if (model) {
        const char *slash = strrchr(model, '/');
        if (slash)
            model = slash + 1;
        for (size_t i = 0; i < sizeof IMAGE_RULES / sizeof IMAGE_RULES[0]; i++) {
            if (strncmp(model, IMAGE_RULES[i].prefix, strlen(IMAGE_RULES[i].prefix)) == 0) {
                base = IMAGE_RULES[i].base;
                tile = IMAGE_RULES[i].tile;
                mult = IMAGE_RULES[i].multiplier;
                break;
            }
        }
    }
    double w = (double)width, h = (double)height;
    if (width <= 0 || height <= 0)
        w = h = AH_CHAT_DEFAULT_IMAGE_SIDE;
    if (mult > 0) {
        double patches = ceil(w / IMG_PATCH) * ceil(h / IMG_PATCH);
        if (patches > IMG_MAX_PATCHES) {
            double r = sqrt(IMG_PATCH * IMG_PATCH * IMG_MAX_PATCHES / (w * h));
            double rw = w * r, rh = h * r;
            double aw = floor(rw / IMG_PATCH) / (rw / IMG_PATCH);
            double ah = floor(rh / IMG_PATCH) / (rh / IMG_PATCH);
            double adj = aw < ah ? aw : ah;
            patches = ceil(rw * adj / IMG_PATCH) * ceil(rh * adj / IMG_PATCH);
            if (patches > IMG_MAX_PATCHES)
                patches = IMG_MAX_PATCHES;
        }
        return (int64_t)llround(patches * mult);
    }
    if (detail && strcmp(detail, "low") == 0)
        return base;
    /* "high", and "auto" taken as high: the model may choose low for small
     * images, which this overestimates (a safe side for budgets). */
    if (w > IMG_FIT || h > IMG_FIT) {
        double s = IMG_FIT / (w > h ? w : h);
        w *= s;
        h *= s;
    }
    double shortest = w < h ? w : h;
    if (shortest > IMG_SHORT) {
        double s = IMG_SHORT / shortest;
        w *= s;
        h *= s;
    }
    return base + (int64_t)tile * (int64_t)(ceil(w / IMG_TILE) * ceil(h / IMG_TILE));
}

static int b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decode the first up to max bytes of base64 text s into out; bytes written. */
static size_t b64_head(const char *s, unsigned char *out, size_t max)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && n < max; s++) {
        int v = b64v((unsigned char)*s);
        if (v < 0)
            break;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

/* Width and height from the start of a PNG, GIF or JPEG; 0 if unknown. */
static int image_size(const unsigned char *b, size_t n, int64_t *w, int64_t *h)
{
    if (n >= 24 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0) {
        *w = (int64_t)b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
        *h = (int64_t)b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
        return 1;
    }
    if (n >= 10 && memcmp(b, "GIF8", 4) == 0) {
        *w = b[6] | b[7] << 8;
        *h = b[8] | b[9] << 8;
        return 1;
    }
    if (n >= 4 && b[0] == 0xFF && b[1] == 0xD8) {
        /* Walk the segments to the first start-of-frame marker. */
        for (size_t i = 2; i + 9 < n;) {
            if (b[i] != 0xFF)
                return 0;
            unsigned m = b[i + 1];
            size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                *h = b[i + 5] << 8 | b[i + 6];
                *w = b[i + 7] << 8 | b[i + 8];
                return 1;
            }
            i += 2 + seg;
        }
    }
    return 0;
}

/* Bytes of a data: URL decoded to find an image's size (a JPEG's frame
 * header usually comes within the first few KB). */
#define IMAGE_HEAD_BYTES (64u * 1024)

static int64_t image_part_tokens(const char *model, const json_t *part)
{
    const json_t *iu = json_object_get(part, "image_url");
    const char *detail = NULL, *url = NULL;
    int64_t w = 0, h = 0;
    if (json_is_object(iu)) {
        detail = json_string_value(json_object_get(iu, "detail"));
        url = json_string_value(json_object_get(iu, "url"));
        /* Not OpenAI's: a client may state the size it knows. */
        w = json_integer_value(json_object_get(iu, "width"));
        h = json_integer_value(json_object_get(iu, "height"));
    } else if (json_is_string(iu)) {
        url = json_string_value(iu);
    }
    if ((w <= 0 || h <= 0) && url && strncmp(url, "data:", 5) == 0) {
        const char *comma = strstr(url, ";base64,");
        if (comma) {
            unsigned char *head = ah_malloc(IMAGE_HEAD_BYTES);
            size_t n = b64_head(comma + 8, head, IMAGE_HEAD_BYTES);
            if (!image_size(head, n, &w, &h))
                w = h = 0;
            ah_free(head);
        }
    }
    return ah_chat_image_tokens(model, detail, w, h);
}

/* ---- messages and tools ------------------------------------------------ */

static ah_err_t count_str(const ah_bpe_t *enc, const char *s, size_t len, int64_t *acc)
{
    size_t n = 0;
    ah_err_t rc = ah_bpe_count(enc, s, len, 0, &n);
    if (!rc)
        *acc += (int64_t)n;
    return rc;
}

static ah_err_t count_json_str(const ah_bpe_t *enc, const json_t *v, int64_t *acc)
{
    if (!json_is_string(v))
        return AH_E_OK;
    return count_str(enc, json_string_value(v), json_string_length(v), acc);
}

/* "name:description" with one trailing period dropped, as the cookbook does. */
static ah_err_t count_line(const ah_bpe_t *enc, const char *a, const char *b, const char *c,
                           int64_t *acc)
{
    ah_buf_t line;
    ah_buf_init(&line, AH_BPE_MAX_TEXT_BYTES);
    const char *last = c ? c : b;
    size_t lastlen = strlen(last);
    if (lastlen && last[lastlen - 1] == '.')
        lastlen--;
    ah_err_t rc = ah_buf_appends(&line, a);
    if (!rc && c)
        rc = ah_buf_printf(&line, ":%s", b);
    if (!rc)
        rc = ah_buf_appends(&line, ":");
    if (!rc)
        rc = ah_buf_append(&line, last, lastlen);
    if (!rc)
        rc = count_str(enc, line.data, line.len, acc);
    ah_buf_free(&line);
    return rc;
}

static const char *str_or_empty(const json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}

static ah_err_t count_tools(const ah_bpe_t *enc, const json_t *tools, int64_t *acc)
{
    ah_err_t rc = AH_E_OK;
    size_t i;
    const json_t *t;
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return AH_E_OK;
    int func_init =
        strcmp(ah_bpe_name(enc), "cl100k_base") == 0 ? TOOL_FUNC_INIT_CL100K : TOOL_FUNC_INIT_O200K;
    json_array_foreach(tools, i, t)
    {
        /* tools: [{type, function: {...}}]; legacy functions: [{...}]. */
        const json_t *f = json_object_get(t, "function");
        if (!json_is_object(f))
            f = t;
        *acc += func_init;
        rc = count_line(enc, str_or_empty(json_object_get(f, "name")),
                        str_or_empty(json_object_get(f, "description")), NULL, acc);
        if (rc)
            return rc;
        const json_t *props = json_object_get(json_object_get(f, "parameters"), "properties");
        if (!json_is_object(props) || json_object_size(props) == 0)
            continue;
        *acc += TOOL_PROP_INIT;
        const char *key;
        const json_t *p;
        json_object_foreach((json_t *)props, key, p)
        {
            *acc += TOOL_PROP_KEY;
            const json_t *en = json_object_get(p, "enum");
            if (json_is_array(en)) {
                size_t k;
                const json_t *item;
                *acc += TOOL_ENUM_INIT;
                json_array_foreach(en, k, item)
                {
                    *acc += TOOL_ENUM_ITEM;
                    if ((rc = count_json_str(enc, item, acc)))
                        return rc;
                }
            }
            rc = count_line(enc, key, str_or_empty(json_object_get(p, "type")),
                            str_or_empty(json_object_get(p, "description")), acc);
            if (rc)
                return rc;
        }
    }
    *acc += TOOL_FUNC_END;
    return AH_E_OK;
}

/* Content parts: text parts by their text, image parts by the image rule;
 * audio and file parts are not counted (their tokens are not text). */
static ah_err_t count_parts(const ah_bpe_t *enc, const char *model, const json_t *parts,
                            ah_chat_count_t *out, int64_t *acc)
{
    size_t i;
    const json_t *p;
    json_array_foreach(parts, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type && (strcmp(type, "image_url") == 0 || strcmp(type, "input_image") == 0)) {
            int64_t t = image_part_tokens(model, p);
            out->images += t;
            out->n_images++;
        } else {
            ah_err_t rc = count_json_str(enc, json_object_get(p, "text"), acc);
            if (rc)
                return rc;
        }
    }
    return AH_E_OK;
}

/* One call {name, arguments}. */
static ah_err_t count_call(const ah_bpe_t *enc, const json_t *f, int64_t *acc)
{
    *acc += TOOL_CALL_OVERHEAD;
    ah_err_t rc = count_json_str(enc, json_object_get(f, "name"), acc);
    if (!rc)
        rc = count_json_str(enc, json_object_get(f, "arguments"), acc);
    return rc;
}

static ah_err_t count_tool_calls(const ah_bpe_t *enc, const json_t *calls, int64_t *acc)
{
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c)
    {
        ah_err_t rc = count_call(enc, json_object_get(c, "function"), acc);
        if (rc)
            return rc;
    }
    return AH_E_OK;
}

ah_err_t ah_chat_tokens(const ah_bpe_t *enc, const json_t *body, ah_chat_count_t *out)
{
    ah_err_t rc = AH_E_OK;
    const json_t *msgs = json_object_get(body, "messages");
    const char *model = json_string_value(json_object_get(body, "model"));
    *out = (ah_chat_count_t){0};
    if (!enc || !json_is_array(msgs))
        return AH_E_PARSE;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *key;
        const json_t *v;
        out->messages += TOKENS_PER_MESSAGE;
        out->n_messages++;
        json_object_foreach((json_t *)m, key, v)
        {
            /* The cookbook encodes every string field (role, content, name...). */
            if (json_is_string(v))
                rc = count_json_str(enc, v, &out->messages);
            else if (strcmp(key, "content") == 0 && json_is_array(v))
                rc = count_parts(enc, model, v, out, &out->messages);
            else if (strcmp(key, "tool_calls") == 0 && json_is_array(v))
                rc = count_tool_calls(enc, v, &out->messages);
            else if (strcmp(key, "function_call") == 0 && json_is_object(v))
                rc = count_call(enc, v, &out->messages);
            if (rc)
                return rc;
            if (strcmp(key, "name") == 0)
                out->messages += TOKENS_PER_NAME;
        }
    }
    out->messages += REPLY_PRIMING;
    const json_t *tools = json_object_get(body, "tools");
    if (!json_is_array(tools))
        tools = json_object_get(body, "functions");
    if ((rc = count_tools(enc, tools, &out->tools)))
        return rc;
    out->total = out->messages + out->tools + out->images;
    return AH_E_OK;
}

/* Anthropic's forced tool choices: "required" (its "any") or a named tool. */
static bool tool_choice_forced(const json_t *tc)
{
    const char *s = json_string_value(tc);
    return s ? strcmp(s, "required") == 0 : json_is_object(tc);
}

/* A Claude request's tools as Anthropic bills them, in Claude tokens. */
static ah_err_t claude_tools(const ah_bpe_t *enc, const json_t *body, const json_t *tools,
                             const ah_chat_model_t *cm, int64_t *out)
{
    int64_t json_tokens = 0;
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const json_t *f = json_object_get(t, "function");
        char *s = json_dumps(json_is_object(f) ? f : t, JSON_COMPACT);
        if (!s)
            return AH_E_NOMEM;
        size_t n = 0;
        ah_err_t rc = ah_bpe_count(enc, s, strlen(s), 0, &n);
        free(s);
        if (rc)
            return rc;
        json_tokens += (int64_t)n;
    }
    *out = (int64_t)ceil((double)json_tokens * AH_CHAT_ANTHROPIC_TOOL_JSON_FACTOR) +
           (tool_choice_forced(json_object_get(body, "tool_choice")) ? cm->tool_prompt_forced
                                                                     : cm->tool_prompt_auto);
    return AH_E_OK;
}

ah_err_t ah_chat_estimate(const ah_bpe_t *enc, const json_t *body, const ah_chat_model_t *cm,
                          int64_t *tokens, ah_chat_count_t *out)
{
    ah_chat_count_t c;
    ah_err_t rc = ah_chat_tokens(enc, body, &c);
    if (out)
        *out = c;
    if (rc)
        return rc;
    double factor = cm && cm->factor > 0 ? cm->factor : 1.0;
    const json_t *tools = json_object_get(body, "tools");
    if (!cm || !cm->tool_prompt_auto || !json_array_size(tools)) {
        *tokens = factor == 1.0 ? c.total : (int64_t)ceil((double)c.total * factor);
        return AH_E_OK;
    }
    int64_t tool_tokens;
    if ((rc = claude_tools(enc, body, tools, cm, &tool_tokens)))
        return rc;
    *tokens = (int64_t)ceil((double)(c.messages + c.images) * factor) + tool_tokens;
    return AH_E_OK;
}
