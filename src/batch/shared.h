/* shared.h - the Files and Batch APIs' state in PostgreSQL, when the ledger
 * is there (docs/batch.md "Several instances"; the tables are migration 3
 * of store/pg.c).
 *
 * Every instance serves every file and batch: the rows are in
 * ahorro_files and ahorro_batches, a file's bytes in ahorro_file_parts
 * (parts of AH_BPG_PART_BYTES), and an instance that needs the bytes on its
 * disk (to serve a file's content, to scan or run a batch) fetches them
 * into its files directory once.
 *
 * One instance at a time runs a batch. Its runner takes the batch by
 * writing its own id and a lease (now + batch.lease_s) into the row, and
 * works on a copy of the row in its own SQLite file, as a single instance
 * does (runner.c); it sends the copy back at least once a second while the
 * batch runs (renewing the lease), with what its journals (the output and
 * error lines, engine.h) gained since, and at the end with the output and
 * error files. A runner that goes silent (killed, its host gone) loses the
 * batch when its lease ends: another instance takes it over, fetches the
 * journals and resumes it, so only the lines answered in the silent one's
 * last second are answered, and paid, again. A cancel asked on any
 * instance reaches the running one with its next send.
 *
 * Each function runs on the connection it is given (the caller's thread's
 * own), synchronously. */
#ifndef AH_BATCH_SHARED_H
#define AH_BATCH_SHARED_H

#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdint.h>

#include "batch/files.h"
#include "core/error.h"

#define AH_BPG_PART_BYTES (1024 * 1024)

/* The Files API's store (files.h's functions, on PostgreSQL). A file got
 * has no path until ah_bpg_file_fetch puts its bytes on this disk. */
ah_err_t ah_bpg_file_add(PGconn *c, const char *id, const char *purpose, const char *filename,
                         long long bytes, const ah_tenant_t *owner, const char *path);
ah_err_t ah_bpg_file_get(PGconn *c, const char *id, const ah_tenant_t *t, ah_file_t *out);
ah_err_t ah_bpg_file_fetch(PGconn *c, const char *dir, ah_file_t *f);
ah_err_t ah_bpg_file_list(PGconn *c, const ah_tenant_t *t, const char *purpose, const char *after,
                          int asc, int limit, json_t **out);
ah_err_t ah_bpg_file_delete(PGconn *c, const char *dir, const char *id, const ah_tenant_t *t);

/* The Batch API's rows (batches.h's functions, on PostgreSQL). */
ah_err_t ah_bpg_batch_add(PGconn *c, const char *id, const char *input_file_id,
                          const char *endpoint, long total, json_t *metadata,
                          const ah_tenant_t *owner);
ah_err_t ah_bpg_batch_get(PGconn *c, const char *id, const ah_tenant_t *t, json_t **out);
ah_err_t ah_bpg_batch_list(PGconn *c, const ah_tenant_t *t, const char *after, int limit,
                           json_t **out);
ah_err_t ah_bpg_batch_cancel(PGconn *c, const char *id, const ah_tenant_t *t, json_t **out);

/* The runner's side. runner is the instance's id; lease_ms how long a take
 * or a send holds the batch.
 *
 * Take the next batch to run: one nobody holds or whose holder's lease
 * ended (a queued one after those already started), copied into the
 * working copy `local` (its batches row; its input file's row, with the
 * bytes fetched into dir, or none when the file was deleted). id_out ""
 * when there is none. */
ah_err_t ah_bpg_take(PGconn *c, sqlite3 *local, const char *dir, const char *runner,
                     int64_t lease_ms, char id_out[AH_FILE_ID_MAX]);
/* A batch's journals on this disk: the output and error lines (engine.h),
 * and how many of their bytes PostgreSQL holds. */
typedef struct ah_bpg_journals {
    const char *path[2]; /* output, error */
    int64_t sent[2];
} ah_bpg_journals_t;

/* Bring batch id's journals onto this disk before it runs here: when
 * PostgreSQL holds some and they differ in length from the files at
 * j->path (another instance wrote them), the files are replaced by
 * PostgreSQL's; j->sent says what PostgreSQL holds. */
ah_err_t ah_bpg_journals_fetch(PGconn *c, const char *id, ah_bpg_journals_t *j);
/* Send the working copy of batch id, in one transaction: the lines its
 * journals gained (whole lines; j->sent advances once committed), its
 * output and error files once it has them, the row, renewing the lease; a
 * cancel asked meanwhile comes back into the copy (status cancelling). A
 * finished batch's journal parts are dropped. AH_E_NOTFOUND when another
 * runner holds the batch now: this one must stop running it. */
ah_err_t ah_bpg_sync(PGconn *c, sqlite3 *local, const char *runner, int64_t lease_ms,
                     const char *id, ah_bpg_journals_t *j);
/* End runner's lease of batch id now, so that any instance may take it
 * (a shutdown in the middle of it). */
void ah_bpg_release(PGconn *c, const char *runner, const char *id);

#endif
