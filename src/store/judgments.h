/* judgments.h - live judges' verdicts on the judgments table, written off
 * the event loop (docs/experiments.md, "Sampled live judging").
 *
 * Event loops push judgments into a bounded queue and never wait: a full
 * queue drops the judgment (with a warning), since a verdict is a sample,
 * not an account. One writer thread, on its own connection, writes what is
 * queued in one transaction at a time: into the instance's SQLite file, or,
 * when the ledger is in PostgreSQL, into ahorro_judgments beside it, so
 * that every instance's judgments are read together. ah_judgments_close
 * writes everything still queued before it returns. */
#ifndef AH_JUDGMENTS_H
#define AH_JUDGMENTS_H

#include <sqlite3.h>
#include <stdint.h>

#include "core/error.h"

/* Judgments queued at most; judgments one transaction writes at most. */
#define AH_JUDGMENTS_QUEUE 1024
#define AH_JUDGMENTS_BATCH 64
/* PostgreSQL away: the writer tries to reconnect at most this often
 * (microseconds), dropping what it is given meanwhile. */
#define AH_JUDGMENTS_RETRY_US 1000000

/* One row of the judgments table (db.c's migration 11). Strings are owned
 * (ah_malloc'd), NULL when absent. */
typedef struct ah_judgment {
    char *request_id; /* the judged request */
    int64_t ts_ms;    /* when the judged request started */
    char *route;      /* the ahorro.judging entry's route */
    char *judge;      /* the alias that graded */
    double score;     /* 0..1; NAN: a failed judgment (then error says why) */
    char *scores;     /* {"criterion": grade, ...} or NULL */
    char *reason;     /* the judge's sentence, or NULL */
    char *error;      /* why the judgment failed, or NULL */
    char *judge_request_id;
} ah_judgment_t;

typedef struct ah_judgments ah_judgments_t;

/* Start the writer over the SQLite database at path. Close (and free) with
 * ah_judgments_close. */
ah_err_t ah_judgments_open(const char *path, ah_judgments_t **out);
/* Start the writer over PostgreSQL at url (a libpq connection string; the
 * schema migrated: ahorro_judgments), connecting within timeout_ms. Does
 * not connect: the writer does at its first batch, so this never blocks
 * on the network. A batch PostgreSQL cannot take is dropped and counted
 * lost. Close (and free) with ah_judgments_close. */
ah_err_t ah_judgments_open_pg(const char *url, int timeout_ms, ah_judgments_t **out);
/* Queue j; the queue owns it from here. Never blocks: AH_E_TOOBIG when
 * the queue is full (j is freed, not written). Thread-safe. */
ah_err_t ah_judgments_push(ah_judgments_t *q, ah_judgment_t *j);
/* Write every queued judgment, stop the writer, free everything. */
void ah_judgments_close(ah_judgments_t *q);
/* Judgments written (committed), and those dropped (queue full) or failed
 * to write (including, with PostgreSQL, those given while it is away). */
void ah_judgments_stats(ah_judgments_t *q, uint64_t *written, uint64_t *lost);
/* Write js[0..n) in one transaction on db (the writer's step, exposed for
 * tests). The judgments stay the caller's. */
ah_err_t ah_judgments_write(sqlite3 *db, ah_judgment_t *const *js, int n);
/* Free a judgment and its strings (NULL: nothing). */
void ah_judgment_free(ah_judgment_t *j);

#endif
