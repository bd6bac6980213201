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
    char *path;     /* owned: the bytes on disk */
    long long bytes;
    int64_t created_ms;
} ah_file_t;

/* "<db_path>-files" into out[n], created (0700) when missing. */
ah_err_t ah_files_dir(const char *db_path, char *out, size_t n);
/* A new random id with prefix ("file-", "batch_") into out. */
ah_err_t ah_files_new_id(const char *prefix, char out[AH_FILE_ID_MAX]);
/* Record a file whose bytes are at path (already written). */
ah_err_t ah_files_add(sqlite3 *db, const char *id, const char *purpose, const char *filename,
                      long long bytes, const ah_tenant_t *owner, const char *path);
/* The file id as t sees it; AH_E_NOTFOUND when unknown, deleted or
 * another tenant's. out is cleared with ah_file_clear. */
ah_err_t ah_files_get(sqlite3 *db, const char *id, const ah_tenant_t *t, ah_file_t *out);
void ah_file_clear(ah_file_t *f);
/* OpenAI's file object for f; new reference. */
json_t *ah_file_json(const ah_file_t *f);
/* OpenAI's list object of t's files, newest first (asc: oldest first),
 * after the file id `after` (NULL: from the start), only purpose (NULL:
 * any), at most limit; *out is a new reference. AH_E_NOTFOUND when after
 * names no file of t's. */
ah_err_t ah_files_list(sqlite3 *db, const ah_tenant_t *t, const char *purpose, const char *after,
                       int asc, int limit, json_t **out);
/* Delete t's file id: the row is marked deleted and the bytes removed.
 * AH_E_NOTFOUND as for ah_files_get. */
ah_err_t ah_files_delete(sqlite3 *db, const char *id, const ah_tenant_t *t);

/* SQL shared by the files and batches queries: "(?n = 1 OR key_id IS ?m)". */
void ah_tenant_bind(sqlite3_stmt *st, int all_idx, int key_idx, const ah_tenant_t *t);

#endif
