/* fake_server.c - routing, authentication, request capture and the small endpoints.
 *
 * Every loop thread runs one evhttp whose single callback lands in dispatch(). Requests
 * to the API paths are counted and captured (tests read the last one back from
 * /_fake/last to check what the gateway forwarded), authenticated when --require-key is
 * set, parsed once, and handed to the API handler that fills a fake_reply_t. The /_fake/
 * control paths and /health are neither counted nor captured, so that polling them does
 * not hide the request a test wants to see. */
#include "fake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "core/alloc.h"
#include "core/log.h"

#define FAKE_MODELS_CREATED 1700000000L /* `created` of the listed models */

struct fake_server {
    struct event_base *base;
    struct evhttp *http;
};

/* The endpoints, also the index of their counters in /_fake/stats. */
typedef enum {
    EP_CHAT,
    EP_MESSAGES,
    EP_EMBEDDINGS,
    EP_MODELS,
    EP_BATCH_API,
    EP_MESSAGE_BATCHES,
    EP_OTHER,
    EP__COUNT,
} endpoint_t;

static const char *const endpoint_names[EP__COUNT] = {
    "chat_completions", "messages",          "embeddings", "models",
    "batch_api",        "message_batch_api", "other",
};

static const char *const model_ids[] = {
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-5",
    "fake-tiny",
    "text-embedding-3-small",
};

static atomic_ullong request_seq;
static atomic_ullong requests_total;
static atomic_ullong requests_by_endpoint[EP__COUNT];

/* ---- capture of the last request ------------------------------------------------------ */

/* One request as received: strings laid out back to back in data[] as
 * path\0 query\0 (name\0 value\0)* body. */
typedef struct capture {
    const char *method;
    int has_query;
    int body_dropped; /* the body did not fit FAKE_MAX_CAPTURE_BYTES */
    size_t nheaders;
    size_t body_off;
    size_t body_len;
    char data[];
} capture_t;

static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;
static capture_t *capture_last; /* guarded by capture_lock */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "OTHER";
    }
}

static char *put_str(char *at, const char *s)
{
    size_t n = strlen(s) + 1;
    memcpy(at, s, n);
    return at + n;
}

static void capture_swap(capture_t *c)
{
    pthread_mutex_lock(&capture_lock);
    capture_t *old = capture_last;
    capture_last = c;
    pthread_mutex_unlock(&capture_lock);
    ah_free(old);
}

static void capture_request(struct evhttp_request *req, const char *path, const char *query,
                            const char *body, size_t body_len)
{
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    size_t size = strlen(path) + 1 + (query ? strlen(query) : 0) + 1;
    TAILQ_FOREACH(kv, hdrs, next)
    {
        size += strlen(kv->key) + 1 + strlen(kv->value) + 1;
    }
    int drop_body = size > FAKE_MAX_CAPTURE_BYTES || body_len > FAKE_MAX_CAPTURE_BYTES - size;
    if (!drop_body)
        size += body_len;

    capture_t *c = ah_malloc(sizeof *c + size);
    c->method = method_name(evhttp_request_get_command(req));
    c->has_query = query != NULL;
    c->body_dropped = drop_body;
    c->nheaders = 0;
    char *at = put_str(c->data, path);
    at = put_str(at, query ? query : "");
    TAILQ_FOREACH(kv, hdrs, next)
    {
        char *name = at;
        at = put_str(at, kv->key);
        for (char *p = name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        at = put_str(at, kv->value);
        c->nheaders++;
    }
    c->body_off = (size_t)(at - c->data);
    c->body_len = drop_body ? 0 : body_len;
    if (c->body_len)
        memcpy(at, body, body_len);
    capture_swap(c);
}

/* A JSON string of s; bytes that are not UTF-8 become '?' (headers and paths are raw). */
static json_t *jstr_lossy(const char *s)
{
    json_t *v = json_string(s);
    if (!v) {
        char *copy = ah_strdup(s);
        fake_utf8_scrub(copy);
        v = json_string(copy);
        ah_free(copy);
    }
    return v;
}

/* {method, path, query, query_params, headers, body, body_bytes} of the last request. */
static json_t *capture_json(const capture_t *c)
{
    json_t *o = json_object();
    const char *path = c->data;
    const char *query = path + strlen(path) + 1;
    const char *at = query + strlen(query) + 1;
    json_object_set_new(o, "method", json_string(c->method));
    json_object_set_new(o, "path", jstr_lossy(path));
    json_object_set_new(o, "query", c->has_query ? jstr_lossy(query) : json_null());

    json_t *params = json_object();
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (c->has_query && evhttp_parse_query_str(query, &q) == 0) {
        struct evkeyval *kv;
        TAILQ_FOREACH(kv, &q, next)
        {
            json_object_set_new(params, kv->key, jstr_lossy(kv->value));
        }
    }
    evhttp_clear_headers(&q);
    json_object_set_new(o, "query_params", params);

    json_t *headers = json_object();
    for (size_t i = 0; i < c->nheaders; i++) {
        const char *name = at;
        const char *value = name + strlen(name) + 1;
        at = value + strlen(value) + 1;
        const char *prev = json_string_value(json_object_get(headers, name));
        if (prev) {
            size_t n = strlen(prev) + 2 + strlen(value) + 1;
            char *joined = ah_malloc(n);
            snprintf(joined, n, "%s, %s", prev, value);
            json_object_set_new(headers, name, jstr_lossy(joined));
            ah_free(joined);
        } else {
            json_object_set_new(headers, name, jstr_lossy(value));
        }
    }
    json_object_set_new(o, "headers", headers);

    json_t *body = NULL;
    if (c->body_len) {
        const char *b = c->data + c->body_off;
        body = json_loadb(b, c->body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!body)
            body = json_stringn(b, c->body_len); /* NULL when not UTF-8 */
    }
    json_object_set_new(o, "body", body ? body : json_null());
    json_object_set_new(o, "body_bytes", json_integer((json_int_t)c->body_len));
    if (c->body_dropped)
        json_object_set_new(o, "body_dropped", json_true());
    return o;
}

void fake_server_cleanup(void)
{
    capture_swap(NULL);
}

/* ---- small replies -------------------------------------------------------------------- */

static void send_json_value(struct evhttp_request *req, struct event_base *base, int status,
                            json_t *v)
{
    fake_reply_t r;
    fake_reply_init(&r);
    fake_reply_json(&r, status);
    fake_out_json(&r.body, v);
    json_decref(v);
    fake_reply_send(req, base, &r);
}

static void serve_control(fake_server_t *s, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (strcmp(path, "/_fake/last") == 0 && cmd == EVHTTP_REQ_GET) {
        pthread_mutex_lock(&capture_lock);
        json_t *v = capture_last ? capture_json(capture_last) : json_null();
        pthread_mutex_unlock(&capture_lock);
        send_json_value(req, s->base, 200, v);
    } else if (strcmp(path, "/_fake/stats") == 0 && cmd == EVHTTP_REQ_GET) {
        json_t *v = json_object();
        json_object_set_new(v, "requests", json_integer((json_int_t)atomic_load(&requests_total)));
        for (int i = 0; i < EP__COUNT; i++)
            json_object_set_new(v, endpoint_names[i],
                                json_integer((json_int_t)atomic_load(&requests_by_endpoint[i])));
        json_object_set_new(v, "held", json_integer(fake_reply_held()));
        json_object_set_new(v, "recorded", json_integer((json_int_t)fake_answers_hits()));
        json_object_set_new(v, "rate_limited", json_integer((json_int_t)fake_limits_refused()));
        json_object_set_new(v, "batches", json_integer((json_int_t)fake_batch_count()));
        json_object_set_new(v, "batch_lines", json_integer((json_int_t)fake_batch_lines()));
        json_object_set_new(v, "azure_batches", json_integer((json_int_t)fake_azure_batch_count()));
        json_object_set_new(v, "message_batches",
                            json_integer((json_int_t)fake_message_batch_count()));
        json_object_set_new(v, "message_batch_lines",
                            json_integer((json_int_t)fake_message_batch_lines()));
        send_json_value(req, s->base, 200, v);
    } else if (strcmp(path, "/_fake/fault") == 0 && cmd == EVHTTP_REQ_POST) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        char spec[FAKE_MAX_FAULT_SPEC];
        size_t n = evbuffer_copyout(in, spec, sizeof spec - 1) > 0 ? evbuffer_get_length(in) : 0;
        if (n >= sizeof spec) {
            send_json_value(req, s->base, 400, json_pack("{s:s}", "error", "fault spec too long"));
            return;
        }
        while (n && (spec[n - 1] == '\n' || spec[n - 1] == ' '))
            n--;
        fake_set_standing_fault(spec, n);
        spec[n] = 0;
        send_json_value(req, s->base, 200, json_pack("{s:s}", "fault", spec));
    } else if (strcmp(path, "/_fake/reset") == 0 && cmd == EVHTTP_REQ_POST) {
        capture_swap(NULL);
        atomic_store(&requests_total, 0);
        for (int i = 0; i < EP__COUNT; i++)
            atomic_store(&requests_by_endpoint[i], 0);
        fake_answers_reset_hits();
        fake_limits_reset();
        fake_limits_reset_refused();
        fake_batch_reset();
        send_json_value(req, s->base, 200, json_pack("{s:b}", "ok", 1));
    } else {
        send_json_value(req, s->base, 404,
                        json_pack("{s:s}", "error", "unknown control path or method"));
    }
}

static void serve_health(fake_server_t *s, struct evhttp_request *req)
{
    fake_reply_t r;
    fake_reply_init(&r);
    r.content_type = "text/plain";
    fake_out_cstr(&r.body, "ok");
    fake_reply_send(req, s->base, &r);
}

static void print_model(fake_out_t *o, const char *id)
{
    fake_out_cstr(o, "{\"id\":");
    fake_out_jcstr(o, id);
    fake_out_printf(o, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"ahorro-fake\"}",
                    FAKE_MODELS_CREATED);
}

/* GET /v1/models, or /v1/models/{id} (any id exists: the fake accepts every model). */
static void render_models(fake_reply_t *r, const char *path)
{
    static const char one[] = "/v1/models/";
    if (strncmp(path, one, sizeof one - 1) == 0) {
        print_model(&r->body, path + sizeof one - 1);
        return;
    }
    fake_out_cstr(&r->body, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < sizeof model_ids / sizeof model_ids[0]; i++) {
        if (i)
            fake_out_raw(&r->body, ",", 1);
        print_model(&r->body, model_ids[i]);
    }
    fake_out_cstr(&r->body, "]}");
}

/* ---- routing ------------------------------------------------------------------------ */

/* /openai/deployments/{dep}/{rest}: copies dep into buf and returns 1 when rest matches. */
static int azure_path(const char *path, const char *rest, char *buf, size_t bufsize)
{
    static const char prefix[] = "/openai/deployments/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *dep = path + sizeof prefix - 1;
    const char *slash = strchr(dep, '/');
    if (!slash || slash == dep || (size_t)(slash - dep) >= bufsize || strcmp(slash + 1, rest))
        return 0;
    memcpy(buf, dep, (size_t)(slash - dep));
    buf[slash - dep] = '\0';
    return 1;
}

static endpoint_t route(const char *path, char *dep, size_t depsize, int *has_dep)
{
    *has_dep = 0;
    if (strcmp(path, "/v1/chat/completions") == 0)
        return EP_CHAT;
    if (strcmp(path, "/v1/messages") == 0)
        return EP_MESSAGES;
    if (fake_message_batch_path(path))
        return EP_MESSAGE_BATCHES;
    if (strcmp(path, "/v1/embeddings") == 0)
        return EP_EMBEDDINGS;
    if (strcmp(path, "/v1/models") == 0 || strncmp(path, "/v1/models/", 11) == 0)
        return EP_MODELS;
    if (fake_batch_path(path))
        return EP_BATCH_API;
    if (azure_path(path, "chat/completions", dep, depsize)) {
        *has_dep = 1;
        return EP_CHAT;
    }
    if (azure_path(path, "embeddings", dep, depsize)) {
        *has_dep = 1;
        return EP_EMBEDDINGS;
    }
    return EP_OTHER;
}

static int key_is(const char *value, const char *key)
{
    return value && strcmp(value, key) == 0;
}

/* OpenAI and Azure: "Authorization: Bearer KEY" or "api-key: KEY"; Azure's Files and
 * Batches API: "api-key: KEY" only; Anthropic: x-api-key. */
static int authorized(struct evhttp_request *req, endpoint_t ep, const char *path)
{
    const char *key = fake_opts.require_key;
    if (!key)
        return 1;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    if (ep == EP_MESSAGES || ep == EP_MESSAGE_BATCHES)
        return key_is(evhttp_find_header(h, "x-api-key"), key);
    if (ep == EP_BATCH_API && fake_batch_azure_path(path))
        return key_is(evhttp_find_header(h, "api-key"), key);
    const char *auth = evhttp_find_header(h, "authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        if (key_is(auth, key))
            return 1;
    }
    return key_is(evhttp_find_header(h, "api-key"), key);
}

/* A fault spec: a comma-separated list of fault kinds ("429", "timeout", "fault:reset")
 * and "delay:MS". */
static void parse_faults(const char *v, fake_fault_t *fault, long *delay_ms)
{
    while (v && *v) {
        while (*v == ' ' || *v == ',')
            v++;
        size_t n = strcspn(v, ", ");
        if (n > 6 && strncmp(v, "fault:", 6) == 0) {
            v += 6;
            n -= 6;
        }
        if (n > 6 && strncmp(v, "delay:", 6) == 0) {
            char *end;
            long ms = strtol(v + 6, &end, 10);
            if (end == v + n && ms >= 0)
                *delay_ms = ms > FAKE_MAX_DELAY_MS ? FAKE_MAX_DELAY_MS : ms;
        } else if (n) {
            fake_fault_t f = fake_fault_parse(v, n);
            if (f != FAKE_FAULT_NONE)
                *fault = f;
        }
        v += n;
    }
}

/* The standing fault (--fault, POST /_fake/fault): every request gets it
 * unless its x-fake-fault header says otherwise. */
static pthread_mutex_t standing_lock = PTHREAD_MUTEX_INITIALIZER;
static char standing_fault[FAKE_MAX_FAULT_SPEC];

void fake_set_standing_fault(const char *spec, size_t n)
{
    if (n >= sizeof standing_fault)
        n = sizeof standing_fault - 1;
    pthread_mutex_lock(&standing_lock);
    memcpy(standing_fault, spec, n);
    standing_fault[n] = 0;
    pthread_mutex_unlock(&standing_lock);
}

/* The standing fault, then x-fake-fault over it. */
static void header_faults(struct evhttp_request *req, fake_fault_t *fault, long *delay_ms)
{
    char spec[FAKE_MAX_FAULT_SPEC];
    pthread_mutex_lock(&standing_lock);
    memcpy(spec, standing_fault, sizeof spec);
    pthread_mutex_unlock(&standing_lock);
    parse_faults(spec, fault, delay_ms);
    parse_faults(evhttp_find_header(evhttp_request_get_input_headers(req), "x-fake-fault"), fault,
                 delay_ms);
}

static void reject(fake_reply_t *r, endpoint_t ep, int status, const char *type, const char *code,
                   const char *msg)
{
    if (ep == EP_MESSAGES || ep == EP_MESSAGE_BATCHES)
        fake_anthropic_error(r, status, status == 401 ? "authentication_error" : type, "%s", msg);
    else
        fake_openai_error(r, status, type, NULL, code, "%s", msg);
}

/* /v1/models answers faults from the header only; it has no prompt. */
static void models_faults(fake_reply_t *r, fake_fault_t f)
{
    if (f == FAKE_FAULT_429) {
        fake_openai_error(r, 429, "rate_limit_error", NULL, "rate_limit_exceeded",
                          "Rate limit reached (simulated by ahorro-fake).");
        r->retry_after_s = FAKE_RETRY_AFTER_S;
    } else if (f == FAKE_FAULT_500) {
        fake_openai_error(r, 500, "server_error", NULL, NULL,
                          "The server had an error (simulated by ahorro-fake).");
    } else if (f == FAKE_FAULT_529) {
        fake_openai_error(r, 503, "server_error", NULL, NULL,
                          "The server is overloaded (simulated by ahorro-fake).");
    } else {
        r->fault = f;
    }
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    fake_server_t *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (!path || !*path)
        path = "/";
    if (strncmp(path, "/_fake/", 7) == 0) {
        serve_control(s, req, path);
        return;
    }
    if (strcmp(path, "/health") == 0) {
        serve_health(s, req);
        return;
    }

    /* The arrival time, for the rate limits and the log, before anything else is done. */
    int64_t t_ms = fake_limits_enabled || fake_log_enabled ? fake_now_ms() : 0;
    fake_meter_t meter = {.max_tokens = -1};
    json_t *tree = NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t body_len = evbuffer_get_length(in);
    const char *body = body_len ? (const char *)evbuffer_pullup(in, -1) : "";
    char dep[FAKE_MAX_MODEL_BYTES + 1];
    int has_dep;
    endpoint_t ep = route(path, dep, sizeof dep, &has_dep);
    atomic_fetch_add(&requests_total, 1);
    atomic_fetch_add(&requests_by_endpoint[ep], 1);
    capture_request(req, path, query, body, body_len);

    fake_reply_t r;
    fake_reply_init(&r);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int want_post = ep != EP_MODELS;
    int any_method = ep == EP_BATCH_API || ep == EP_MESSAGE_BATCHES;
    if (ep == EP_OTHER) {
        char msg[FAKE_MAX_MODEL_BYTES + 64];
        snprintf(msg, sizeof msg, "Invalid URL (%s %.*s)", method_name(cmd), FAKE_MAX_MODEL_BYTES,
                 path);
        reject(&r, ep, 404, "invalid_request_error", NULL, msg);
    } else if (any_method && cmd != EVHTTP_REQ_POST && cmd != EVHTTP_REQ_GET) {
        reject(&r, ep, 405, "invalid_request_error", "method_not_allowed",
               "Method not allowed: use GET or POST.");
    } else if (!any_method && cmd != (want_post ? EVHTTP_REQ_POST : EVHTTP_REQ_GET)) {
        reject(&r, ep, 405, "invalid_request_error", "method_not_allowed",
               want_post ? "Method not allowed: use POST." : "Method not allowed: use GET.");
    } else if (!authorized(req, ep, path)) {
        reject(&r, ep, 401, "invalid_request_error", "invalid_api_key",
               ep == EP_MESSAGES ? "invalid x-api-key"
                                 : "Incorrect API key provided (simulated by ahorro-fake).");
    } else {
        fake_ctx_t ctx = {.req = req,
                          .seq = atomic_fetch_add(&request_seq, 1) + 1,
                          .t_ms = t_ms,
                          .meter = &meter};
        header_faults(req, &ctx.hdr_fault, &ctx.hdr_delay_ms);
        if (ep == EP_BATCH_API) {
            ctx.body = tree = json_loadb(body, body_len, 0, NULL);
            fake_batch_api(&ctx, path, cmd == EVHTTP_REQ_POST, body, body_len, &r);
        } else if (ep == EP_MESSAGE_BATCHES) {
            ctx.body = tree = json_loadb(body, body_len, 0, NULL);
            fake_message_batch_api(&ctx, path, cmd == EVHTTP_REQ_POST, body_len, &r);
        } else if (ep == EP_MODELS) {
            r.delay_ms = ctx.hdr_delay_ms;
            render_models(&r, path);
            models_faults(&r, ctx.hdr_fault);
        } else {
            json_error_t err;
            ctx.body = tree = json_loadb(body, body_len, JSON_ALLOW_NUL, &err);
            ctx.json_error = ctx.body ? NULL : err.text;
            ctx.deployment = has_dep ? dep : NULL;
            if (ep == EP_CHAT)
                fake_openai_chat(&ctx, &r);
            else if (ep == EP_MESSAGES)
                fake_anthropic_messages(&ctx, &r);
            else
                fake_embeddings(&ctx, &r);
        }
    }
    /* Logged at arrival: the reply is decided, nothing of it has been sent. */
    if (fake_log_enabled)
        fake_log_request(t_ms, path, meter.model, r.body.err ? 500 : r.status, meter.prompt_tokens,
                         meter.max_tokens, r.fault);
    json_decref(tree);
    fake_reply_send(req, s->base, &r);
}

fake_server_t *fake_server_new(struct event_base *base, struct evconnlistener *lev)
{
    fake_server_t *s = ah_calloc(1, sizeof *s);
    s->base = base;
    s->http = evhttp_new(base);
    if (!s->http) {
        ah_error("fake: evhttp_new failed");
        evconnlistener_free(lev);
        ah_free(s);
        return NULL;
    }
    evhttp_set_max_body_size(s->http, FAKE_MAX_BODY_BYTES);
    evhttp_set_max_headers_size(s->http, FAKE_MAX_HEADER_BYTES);
    evhttp_set_timeout(s->http, FAKE_IDLE_TIMEOUT_S);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, dispatch, s);
    if (!evhttp_bind_listener(s->http, lev)) {
        ah_error("fake: evhttp_bind_listener failed");
        evconnlistener_free(lev);
        evhttp_free(s->http);
        ah_free(s);
        return NULL;
    }
    return s;
}

void fake_server_free(fake_server_t *s)
{
    if (!s)
        return;
    evhttp_free(s->http);
    ah_free(s);
}
