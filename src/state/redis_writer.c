/* redis_writer.c - the pipelined writer (redis_writer.h; docs/state.md).
 *
 * A job is its commands already in Redis's wire format (RESP), in one
 * allocation, so that the thread only appends bytes (redisAppendFormatted-
 * Command) and the caller's arguments can go. The queue is a list under a
 * mutex; the thread takes everything that has gathered (up to a batch's
 * limits), sends it, reads every reply, and comes back for more. Nothing
 * waits to fill a batch: alone, a job is sent at once; under load, the jobs
 * queued during one round trip make the next batch.
 *
 * A batch runs on a connection of the pool, given back after it, with the
 * pool's retry rule: a pooled connection the server had closed before any
 * reply is retried once on a new one; otherwise the batch is over, and what
 * it held went without Redis (counted for the outage's log line). */
#include "state/redis_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

/* Jobs and bytes queued at most; past either, callers call synchronously. */
#define WRITER_MAX_JOBS 10000
#define WRITER_MAX_BYTES (64u * 1024 * 1024)
/* One batch: at most this many commands, and bytes unless one job alone is
 * bigger. */
#define WRITER_BATCH_CMDS 256
#define WRITER_BATCH_BYTES (1024u * 1024)
/* RESP framing of one argument or of the count: '*' or '$', digits, CRLF. */
#define RESP_FRAME 24

typedef struct job {
    struct job *next;
    int n;
    size_t size; /* of data */
    struct {
        size_t off, len;
    } cmd[AH_REDIS_WRITER_JOB_CMDS];
    char data[];
} job_t;

struct ah_redis_writer {
    ah_redis_pool_t *pool;
    char *name;
    pthread_mutex_t lock; /* everything below but the thread's counts */
    pthread_cond_t wake;  /* the thread: a job, or stop */
    pthread_cond_t done;  /* flushers: finished advanced */
    job_t *head, *tail;
    size_t njobs, bytes;
    uint64_t queued, finished; /* jobs ever queued; jobs whose batch is over */
    uint64_t full;             /* sends refused for want of room */
    int stop, started;
    pthread_t thread;
    /* the thread's own (read after it is joined) */
    uint64_t sent, batches, without;
};

/* Append RESP of cmd at out (room for it checked by the caller); returns
 * the bytes written. */
static size_t format(char *out, const ah_redis_cmd_t *cmd)
{
    size_t at = (size_t)snprintf(out, RESP_FRAME, "*%d\r\n", cmd->argc);
    for (int i = 0; i < cmd->argc; i++) {
        at += (size_t)snprintf(out + at, RESP_FRAME, "$%zu\r\n", cmd->len[i]);
        memcpy(out + at, cmd->argv[i], cmd->len[i]);
        at += cmd->len[i];
        memcpy(out + at, "\r\n", 2);
        at += 2;
    }
    return at;
}

/* Bytes of the job of cmds, or 0 when it is over WRITER_MAX_BYTES. */
static size_t job_size(const ah_redis_cmd_t *cmds, int n)
{
    size_t size = 0;
    for (int k = 0; k < n; k++) {
        if (cmds[k].argc < 1)
            return 0;
        size += RESP_FRAME;
        for (int i = 0; i < cmds[k].argc; i++) {
            if (cmds[k].len[i] > WRITER_MAX_BYTES)
                return 0;
            size += RESP_FRAME + cmds[k].len[i] + 2;
            if (size > WRITER_MAX_BYTES)
                return 0;
        }
    }
    return size;
}

int ah_redis_writer_send(ah_redis_writer_t *w, const ah_redis_cmd_t *cmds, int n)
{
    size_t size;
    if (!w || n < 1 || n > AH_REDIS_WRITER_JOB_CMDS || !(size = job_size(cmds, n)))
        return -1;
    job_t *j = ah_malloc(sizeof *j + size);
    j->next = NULL;
    j->n = n;
    j->size = 0;
    for (int k = 0; k < n; k++) {
        j->cmd[k].off = j->size;
        j->cmd[k].len = format(j->data + j->size, &cmds[k]);
        j->size += j->cmd[k].len;
    }
    pthread_mutex_lock(&w->lock);
    if (!w->started || w->stop || w->njobs >= WRITER_MAX_JOBS ||
        w->bytes + j->size > WRITER_MAX_BYTES) {
        w->full += w->started && !w->stop;
        pthread_mutex_unlock(&w->lock);
        ah_free(j);
        return -1;
    }
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->njobs++;
    w->bytes += j->size;
    w->queued++;
    if (w->head == j) /* the thread waits only on an empty queue */
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* One command of a batch: job's k-th. */
typedef struct cmd_ref {
    const job_t *job;
    int k;
} cmd_ref_t;

/* Read the replies of n commands sent on c. Error replies are counted in
 * *errors (the last one in why). Returns the replies read; fewer than n on
 * an I/O failure. */
static int read_replies(redisContext *c, int n, int *errors, char *why, size_t whylen)
{
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep) {
            snprintf(why, whylen, "%s", c->errstr[0] ? c->errstr : "I/O error");
            return i;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            (*errors)++;
            snprintf(why, whylen, "a pipelined command answered %s", rep->str);
        }
        freeReplyObject(rep);
    }
    return n;
}

static int append(redisContext *c, const cmd_ref_t *a)
{
    const job_t *j = a->job;
    return redisAppendFormattedCommand(c, j->data + j->cmd[a->k].off, j->cmd[a->k].len);
}

/* Send the ncmds commands of batch on c and read their replies. Returns
 * how many were answered with an error (0: all went in), or -1 when c
 * failed before any reply (the batch may be retried on another
 * connection), -2 when it failed after some (it may not: they ran). */
static int exchange(redisContext *c, const job_t *batch, int ncmds, char *why, size_t whylen)
{
    cmd_ref_t cmds[WRITER_BATCH_CMDS];
    int n = 0, errors = 0;
    for (const job_t *j = batch; j; j = j->next)
        for (int k = 0; k < j->n && n < ncmds; k++)
            cmds[n++] = (cmd_ref_t){j, k};
    for (int i = 0; i < n; i++)
        if (append(c, &cmds[i]) != REDIS_OK) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
    int got = read_replies(c, n, &errors, why, whylen);
    if (got < n)
        return got ? -2 : -1;
    return errors;
}

static void send_batch(ah_redis_writer_t *w, const job_t *batch, int ncmds)
{
    char why[256] = "";
    int pooled, rc, failed = ncmds;
    if (!ah_redis_pool_may_try(w->pool))
        goto without; /* in an outage, and another caller probes */
    redisContext *c = ah_redis_pool_get(w->pool, &pooled, why, sizeof why);
    if (!c)
        goto down;
    while ((rc = exchange(c, batch, ncmds, why, sizeof why)) < 0) {
        w->batches++;
        if (rc == -2) {
            redisFree(c);
            goto down;
        }
        if (!(c = ah_redis_pool_retry(w->pool, c, &pooled, why, sizeof why)))
            goto down;
    }
    ah_redis_pool_put(w->pool, c);
    w->batches++;
    w->sent += (uint64_t)(ncmds - rc);
    if (!rc) {
        ah_redis_pool_answered(w->pool);
        return;
    }
    failed = rc; /* OOM, READONLY: Redis is there but cannot take them */
down:
    ah_redis_pool_failed(w->pool, why);
without:
    w->without += (uint64_t)failed;
    for (int i = 0; i < failed; i++)
        ah_redis_pool_went_without(w->pool);
}

static void *writer_main(void *arg)
{
    ah_redis_writer_t *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->wake, &w->lock);
        if (!w->head)
            break; /* stopped, and everything is sent */
        job_t *batch = w->head, *last = batch;
        int ncmds = batch->n;
        size_t bytes = batch->size;
        uint64_t njobs = 1;
        while (last->next && ncmds + last->next->n <= WRITER_BATCH_CMDS &&
               bytes + last->next->size <= WRITER_BATCH_BYTES) {
            last = last->next;
            ncmds += last->n;
            bytes += last->size;
            njobs++;
        }
        w->head = last->next;
        if (!w->head)
            w->tail = NULL;
        last->next = NULL;
        w->njobs -= njobs;
        w->bytes -= bytes;
        pthread_mutex_unlock(&w->lock);
        send_batch(w, batch, ncmds);
        for (job_t *j = batch, *next; j; j = next) {
            next = j->next;
            ah_free(j);
        }
        pthread_mutex_lock(&w->lock);
        w->finished += njobs;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

ah_redis_writer_t *ah_redis_writer_new(ah_redis_pool_t *pool, const char *name)
{
    ah_redis_writer_t *w = ah_calloc(1, sizeof *w);
    w->pool = pool;
    w->name = ah_strdup(name);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->done, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, writer_main, w) == 0)
        w->started = 1;
    else
        ah_warn("%s: cannot start the thread that writes to Redis in the background: those "
                "writes are made on the event loops",
                name);
    return w;
}

int ah_redis_writer_flush(ah_redis_writer_t *w, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    uint64_t target = w->queued;
    int pending = w->finished < target;
    while (w->finished < target)
        if (pthread_cond_timedwait(&w->done, &w->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&w->lock);
    return pending;
}

uint64_t ah_redis_writer_finished(ah_redis_writer_t *w)
{
    pthread_mutex_lock(&w->lock);
    uint64_t n = w->finished;
    pthread_mutex_unlock(&w->lock);
    return n;
}

void ah_redis_writer_free(ah_redis_writer_t *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    if (w->sent || w->without || w->full)
        ah_info("%s: the background writer sent %" PRIu64 " commands to Redis in %" PRIu64
                " round trips; %" PRIu64 " went without Redis, %" PRIu64
                " were made on the event loop for want of room in its queue",
                w->name, w->sent, w->batches, w->without, w->full);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->lock);
    ah_free(w->name);
    ah_free(w);
}
