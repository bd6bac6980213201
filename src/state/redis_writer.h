/* redis_writer.h - the Redis writes whose answer nobody waits for (the
 * settlement of a budget's reservation, an answer cache's store), sent by a
 * thread of their own in pipelined batches: a request's event loop queues
 * them and goes on, and the thread sends what has gathered in one round
 * trip (docs/state.md, "The pipelined writer").
 *
 * The queue is bounded (jobs and bytes): when it is full, ah_redis_writer_send
 * refuses and the caller makes the call itself, synchronously, so that
 * nothing is dropped for want of room. The thread follows the outage rule of
 * redis_conn.h with the pool it is given: while Redis is down (and another
 * caller probes it), a batch goes without Redis and is counted as such, as a
 * synchronous call would. Freeing the writer sends what is queued first.
 * Every function is thread-safe. */
#ifndef AH_STATE_REDIS_WRITER_H
#define AH_STATE_REDIS_WRITER_H

#include <stddef.h>

#include "state/redis_conn.h"

/* Commands of one job, at most; they go in the same batch, in order. */
#define AH_REDIS_WRITER_JOB_CMDS 4

typedef struct ah_redis_writer ah_redis_writer_t;

/* One command: argc arguments and their lengths. */
typedef struct ah_redis_cmd {
    int argc;
    const char *const *argv;
    const size_t *len;
} ah_redis_cmd_t;

/* A writer over pool (which must outlive it), and its thread. name starts
 * its log line ("state"). NULL only when out of memory; when the thread
 * cannot start, every ah_redis_writer_send refuses (the callers then call
 * synchronously, as before). Free with ah_redis_writer_free. */
ah_redis_writer_t *ah_redis_writer_new(ah_redis_pool_t *pool, const char *name);

/* Queue the n commands of cmds (copied: the caller keeps its arguments) to be
 * sent together, after everything queued before. 0 when queued; -1 when the
 * queue is full, the job is over its limits, n is out of range or the thread
 * is not running: the caller then makes the call itself. */
int ah_redis_writer_send(ah_redis_writer_t *w, const ah_redis_cmd_t *cmds, int n);

/* Wait until everything queued before this call has been sent (or has gone
 * without Redis), at most timeout_ms. Returns 1 when something was pending
 * (so that a call made again now may be answered otherwise), 0 when nothing
 * was. */
int ah_redis_writer_flush(ah_redis_writer_t *w, int timeout_ms);

/* How many jobs have been sent (or gone without Redis) so far: a mark to
 * tell whether any landed between two moments. */
uint64_t ah_redis_writer_finished(ah_redis_writer_t *w);

/* Send what is queued, stop the thread, log what it sent, and free w (NULL:
 * nothing). No ah_redis_writer_send may run meanwhile. */
void ah_redis_writer_free(ah_redis_writer_t *w);

#endif
