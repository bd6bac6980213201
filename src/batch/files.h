/* files.h - the Files API's store: bytes on disk in "<db_path>-files/",
 * one file per id, and a row per file in the database's `files` table
 * (docs/batch.md "Files").
 *
 * Tenancy: a file belongs to the key that created it; a tenant (below)
 * sees its own files only, the master key every file. Every lookup takes
 * the tenant, so another key's file is simply not found (a 404). */
#ifndef AH_BATCH_FILES_H
#define AH_BATCH_FILES_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "core/error.h"
#include "store/db.h"

#define AH_FILE_ID_MAX 40
#define AH_FILES_PATH_MAX 4096
/* Lists: most rows in one page. */
#define AH_FILES_LIST_MAX 10000

/* Who is asking: key_id NULL is the keyless tenant (loopback without a
 * master key); all: the master key, which sees everyone's. */
typedef struct ah_tenant {
    const char *key_id;
    const char *owner;
    int all;
} ah_tenant_t;

/* OpenAI's list envelope {object: "list", data, first_id, last_id,
 * has_more} around data (an array of objects with "id"), which it takes. */
json_t *ah_list_json(json_t *data, int more);

typedef struct ah_file {
    char id[AH_FILE_ID_MAX];
    char purpose[32];
    char *filename; /* owned (ah_file_clear) */
    char *path;     /* owned: the bytes on disk; NULL until fetched (ah_files_fetch) */
    long long bytes;
    int64_t created_ms;
} ah_file_t;

/* A file row's columns as readers select them, then its path (SQLite) or
 * nothing (PostgreSQL: NULL); ah_file_from_row fills a file from their
 * text (NULL: SQL NULL). */
#define AH_FILE_COLUMN_LIST "id, purpose, filename, bytes, created_ms"
#define AH_FILE_COLUMNS 6
void ah_file_from_row(ah_file_t *f, const char *const v[AH_FILE_COLUMNS]);

/* "<db_path>-files" into out[n], created (0700) when missing. */
ah_err_t ah_files_dir(const char *db_path, char *out, size_t n);
/* A new random id with prefix ("file-", "batch_") into out. */
ah_err_t ah_files_new_id(const char *prefix, char out[AH_FILE_ID_MAX]);
/* Where the files live: h.pg_wanted, PostgreSQL, rows and bytes
 * (batch/shared.h; AH_E_DB while it cannot be reached), else the SQLite
 * file's rows and the bytes on this disk. */

/* Record a file whose bytes are at path (already written; with
 * PostgreSQL, sent there too). */
ah_err_t ah_files_add(ah_dbh_t h, const char *id, const char *purpose, const char *filename,
                      long long bytes, const ah_tenant_t *owner, const char *path);
/* The file id as t sees it; AH_E_NOTFOUND when unknown, deleted or
 * another tenant's. out is cleared with ah_file_clear. */
ah_err_t ah_files_get(ah_dbh_t h, const char *id, const ah_tenant_t *t, ah_file_t *out);
/* f's bytes on this disk (f->path set): with PostgreSQL, fetched into dir
 * (ah_files_dir) unless there already. */
ah_err_t ah_files_fetch(ah_dbh_t h, const char *dir, ah_file_t *f);
void ah_file_clear(ah_file_t *f);
/* OpenAI's file object for f; new reference. */
json_t *ah_file_json(const ah_file_t *f);
/* OpenAI's list object of t's files, newest first (asc: oldest first),
 * after the file id `after` (NULL: from the start), only purpose (NULL:
 * any), at most limit; *out is a new reference. AH_E_NOTFOUND when after
 * names no file of t's. */
ah_err_t ah_files_list(ah_dbh_t h, const ah_tenant_t *t, const char *purpose, const char *after,
                       int asc, int limit, json_t **out);
/* Delete t's file id: the row is marked deleted and the bytes removed
 * (with PostgreSQL, there and from dir). AH_E_NOTFOUND as for
 * ah_files_get. */
ah_err_t ah_files_delete(ah_dbh_t h, const char *dir, const char *id, const ah_tenant_t *t);

/* SQL shared by the files and batches queries: "(?n = 1 OR key_id IS ?m)". */
void ah_tenant_bind(sqlite3_stmt *st, int all_idx, int key_idx, const ah_tenant_t *t);

#endif
