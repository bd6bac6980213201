/* embed_remote.c - embeddings from an OpenAI-compatible endpoint, batched
 * per loop turn and cached (embed_remote.h). */
#include "cache/embed_remote.h"

#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

#define VEC_BUCKETS 4096
#define ANSWER_MAX (64u << 20)

/* --- the shared vector cache ------------------------------------------------ */

typedef struct vec_entry {
    uint8_t key[32];
    int dim;
    float *vec;
    struct vec_entry *hnext, *prev, *next;
} vec_entry_t;

struct ah_embed_remote {
    const ah_deployment_t *dep;
    char *model; /* sent as "model" */
    char *url;
    struct curl_slist *headers;
    pthread_mutex_t mu;
    vec_entry_t *buckets[VEC_BUCKETS];
    vec_entry_t *head, *tail; /* LRU: head most recent */
    size_t count;
    unsigned long calls, texts;
};

static void text_key(const char *text, uint8_t out[32])
{
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), out, &n, EVP_sha256(), NULL);
}

static size_t bucket_of(const uint8_t *k)
{
    size_t h;
    memcpy(&h, k, sizeof h);
    return h % VEC_BUCKETS;
}

static void lru_unlink(ah_embed_remote_t *er, vec_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        er->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        er->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(ah_embed_remote_t *er, vec_entry_t *e)
{
    e->next = er->head;
    if (er->head)
        er->head->prev = e;
    er->head = e;
    if (!er->tail)
        er->tail = e;
}

static vec_entry_t *find(ah_embed_remote_t *er, const uint8_t *k)
{
    for (vec_entry_t *e = er->buckets[bucket_of(k)]; e; e = e->hnext)
        if (memcmp(e->key, k, 32) == 0)
            return e;
    return NULL;
}

static void drop(ah_embed_remote_t *er, vec_entry_t *e)
{
    vec_entry_t **p = &er->buckets[bucket_of(e->key)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    lru_unlink(er, e);
    er->count--;
    ah_free(e->vec);
    ah_free(e);
}

static void remember(ah_embed_remote_t *er, const uint8_t *k, const float *vec, int dim)
{
    pthread_mutex_lock(&er->mu);
    if (!find(er, k)) {
        while (er->count >= AH_EMBED_REMOTE_CACHE && er->tail)
            drop(er, er->tail);
        vec_entry_t *e = ah_calloc(1, sizeof *e);
        memcpy(e->key, k, 32);
        e->dim = dim;
        e->vec = ah_malloc((size_t)dim * sizeof *vec);
        memcpy(e->vec, vec, (size_t)dim * sizeof *vec);
        e->hnext = er->buckets[bucket_of(k)];
        er->buckets[bucket_of(k)] = e;
        lru_push(er, e);
        er->count++;
    }
    pthread_mutex_unlock(&er->mu);
}

int ah_embed_remote_cached(ah_embed_remote_t *er, const char *text, float *out, int max_dim)
{
    uint8_t k[32];
    text_key(text, k);
    int dim = 0;
    pthread_mutex_lock(&er->mu);
    vec_entry_t *e = find(er, k);
    if (e && e->dim <= max_dim) {
        memcpy(out, e->vec, (size_t)e->dim * sizeof *out);
        dim = e->dim;
        lru_unlink(er, e);
        lru_push(er, e);
    }
    pthread_mutex_unlock(&er->mu);
    return dim;
}

ah_embed_remote_t *ah_embed_remote_new(const ah_deployment_t *dep, const char *name)
{
    ah_embed_remote_t *er = ah_calloc(1, sizeof *er);
    er->dep = dep;
    er->model = ah_strdup(strcmp(dep->model, "*") == 0 ? name : dep->model);
    size_t n = strlen(dep->api_base) + 16;
    er->url = ah_malloc(n);
    snprintf(er->url, n, "%s/embeddings", dep->api_base);
    er->headers = curl_slist_append(NULL, "Content-Type: application/json");
    er->headers = curl_slist_append(er->headers, "Expect:");
    if (dep->api_key) {
        size_t kn = strlen(dep->api_key) + 32;
        char *h = ah_malloc(kn);
        snprintf(h, kn, "Authorization: Bearer %s", dep->api_key);
        er->headers = curl_slist_append(er->headers, h);
        ah_free(h);
    }
    pthread_mutex_init(&er->mu, NULL);
    return er;
}

void ah_embed_remote_free(ah_embed_remote_t *er)
{
    if (!er)
        return;
    while (er->head)
        drop(er, er->head);
    curl_slist_free_all(er->headers);
    ah_free(er->url);
    ah_free(er->model);
    pthread_mutex_destroy(&er->mu);
    ah_free(er);
}

void ah_embed_remote_stats(ah_embed_remote_t *er, unsigned long *calls, unsigned long *texts)
{
    pthread_mutex_lock(&er->mu);
    *calls = er->calls;
    *texts = er->texts;
    pthread_mutex_unlock(&er->mu);
}

/* --- a worker's batcher ------------------------------------------------------ */

struct ah_embed_wait {
    char *text;
    uint8_t key[32];
    ah_embed_cb cb; /* NULL once cancelled */
    void *ud;
    struct ah_embed_wait *next;
};

typedef struct call {
    ah_embed_batcher_t *b;
    ah_embed_wait_t *waits; /* in input order */
    int n;
    char *body;
    ah_buf_t answer;
    long status;
} call_t;

struct ah_embed_batcher {
    ah_embed_remote_t *er;
    struct event_base *base;
    ah_http_t *http;
    struct event *flush_ev;
    ah_embed_wait_t *queue, **tail;
    int queued;
};

/* The vector of input i in an embeddings answer's data, unit length, into
 * vec; its dimension or 0. */
static int vector_of(json_t *data, int i, float *vec)
{
    size_t j;
    json_t *item;
    json_array_foreach(data, j, item)
    {
        json_t *emb = json_object_get(item, "embedding");
        if (json_integer_value(json_object_get(item, "index")) != i || !json_is_array(emb) ||
            json_array_size(emb) == 0 || json_array_size(emb) > AH_EMBED_MAX_DIM)
            continue;
        int dim = (int)json_array_size(emb);
        double norm = 0;
        for (int d = 0; d < dim; d++) {
            vec[d] = (float)json_number_value(json_array_get(emb, (size_t)d));
            norm += (double)vec[d] * vec[d];
        }
        if (norm <= 0)
            return 0;
        float inv = (float)(1.0 / sqrt(norm));
        for (int d = 0; d < dim; d++)
            vec[d] *= inv;
        return dim;
    }
    return 0;
}

/* Hand every waiter its vector (NULL when data has none), keep the vectors
 * in er's cache (when er), free the waiters. */
static void finish_waits(ah_embed_wait_t *w, json_t *data, ah_embed_remote_t *er)
{
    for (int i = 0; w; i++) {
        ah_embed_wait_t *next = w->next;
        float vec[AH_EMBED_MAX_DIM];
        int dim = data ? vector_of(data, i, vec) : 0;
        if (dim && er)
            remember(er, w->key, vec, dim);
        if (w->cb)
            w->cb(w->ud, dim ? vec : NULL, dim);
        ah_free(w->text);
        ah_free(w);
        w = next;
    }
}

static int on_data(void *ud, const char *p, size_t n)
{
    call_t *c = ud;
    return ah_buf_append(&c->answer, p, n) ? 1 : 0;
}

static void on_headers(void *ud, long status, int retry_after_s)
{
    ((call_t *)ud)->status = status;
}

static void on_done(void *ud, ah_err_t err, long status, const char *msg)
{
    call_t *c = ud;
    ah_embed_remote_t *er = c->b->er;
    json_t *j = NULL, *data = NULL;
    if (!err && status == 200) {
        j = json_loadb(c->answer.data ? c->answer.data : "", c->answer.len, 0, NULL);
        data = json_object_get(j, "data");
    }
    if (!json_is_array(data))
        ah_warn("cache: embeddings endpoint %s failed (%s, HTTP %ld): the requests go on as "
                "misses",
                er->url, err ? ah_strerror(err) : "bad answer", status);
    finish_waits(c->waits, json_is_array(data) ? data : NULL, er);
    json_decref(j);
    ah_buf_free(&c->answer);
    free(c->body); /* json_dumps' */
    ah_free(c);
}

static void flush(evutil_socket_t fd, short what, void *arg)
{
    ah_embed_batcher_t *b = arg;
    while (b->queue) {
        call_t *c = ah_calloc(1, sizeof *c);
        c->b = b;
        ah_buf_init(&c->answer, ANSWER_MAX);
        json_t *input = json_array();
        ah_embed_wait_t **tail = &c->waits;
        while (b->queue && c->n < AH_EMBED_BATCH_MAX) {
            ah_embed_wait_t *w = b->queue;
            b->queue = w->next;
            w->next = NULL;
            *tail = w;
            tail = &w->next;
            json_array_append_new(input, json_string(w->text));
            c->n++;
        }
        json_t *req = json_pack("{s:s,s:o}", "model", b->er->model, "input", input);
        c->body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        pthread_mutex_lock(&b->er->mu);
        b->er->calls++;
        b->er->texts += (unsigned long)c->n;
        pthread_mutex_unlock(&b->er->mu);
        ah_http_request_t hr = {.url = b->er->url,
                                .headers = b->er->headers,
                                .body = c->body,
                                .body_len = strlen(c->body),
                                .timeout_s = AH_EMBED_REMOTE_TIMEOUT_S};
        static const ah_http_callbacks_t cbs = {on_headers, on_data, on_done};
        if (!ah_http_start(b->http, &hr, &cbs, c)) {
            ah_warn("cache: cannot start a call to %s", b->er->url);
            finish_waits(c->waits, NULL, NULL);
            ah_buf_free(&c->answer);
            free(c->body);
            ah_free(c);
        }
    }
    b->tail = &b->queue;
    b->queued = 0;
}

ah_embed_batcher_t *ah_embed_batcher_new(ah_embed_remote_t *er, struct event_base *base,
                                         ah_http_t *http)
{
    ah_embed_batcher_t *b = ah_calloc(1, sizeof *b);
    b->er = er;
    b->base = base;
    b->http = http;
    b->tail = &b->queue;
    b->flush_ev = event_new(base, -1, 0, flush, b);
    return b;
}

void ah_embed_batcher_free(ah_embed_batcher_t *b)
{
    if (!b)
        return;
    /* the loop is gone: nobody may be called back now */
    for (ah_embed_wait_t *w = b->queue; w; w = w->next)
        w->cb = NULL;
    finish_waits(b->queue, NULL, NULL);
    event_free(b->flush_ev);
    ah_free(b);
}

ah_embed_wait_t *ah_embed_batcher_submit(ah_embed_batcher_t *b, const char *text, ah_embed_cb cb,
                                         void *ud)
{
    ah_embed_wait_t *w = ah_calloc(1, sizeof *w);
    w->text = ah_strdup(text);
    text_key(text, w->key);
    w->cb = cb;
    w->ud = ud;
    *b->tail = w;
    b->tail = &w->next;
    if (b->queued++ == 0)
        event_active(b->flush_ev, 0, 0); /* after the events of this loop turn */
    return w;
}

void ah_embed_wait_cancel(ah_embed_wait_t *w)
{
    if (w)
        w->cb = NULL;
}
