/* vindex.h - an approximate nearest-neighbour index over unit vectors.
 *
 * The semantic cache keeps one index per scope (tenant, namespace, model
 * class) and asks it for the entries most similar to a query. Similarity is
 * the dot product of L2-normalised vectors (cosine). The index is a graph
 * (HNSW) so that lookups stay well under a millisecond at a million entries;
 * small indexes cost little.
 *
 * Entries are named by a caller-chosen 64-bit id. Removal frees the slot for
 * reuse, so an index that is capped and evicted stays bounded in memory.
 *
 * Thread safety: one index may be searched from several threads at once;
 * adds and removes take it exclusively (an internal rwlock). */
#ifndef AH_VINDEX_H
#define AH_VINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct ah_vindex ah_vindex_t;

typedef struct ah_vindex_hit {
    uint64_t id;
    float sim; /* cosine similarity, in [-1, 1] */
} ah_vindex_hit_t;

/* An empty index of `dim`-dimensional vectors. Free with ah_vindex_free. */
ah_vindex_t *ah_vindex_new(int dim);
/* Release the index; ix may be NULL. */
void ah_vindex_free(ah_vindex_t *ix);

/* Add vec[dim] (unit length) under id; an id already present is replaced. */
ah_err_t ah_vindex_add(ah_vindex_t *ix, uint64_t id, const float *vec);
/* Remove id; AH_E_NOTFOUND when absent. Its slot is reused by later adds. */
ah_err_t ah_vindex_remove(ah_vindex_t *ix, uint64_t id);
/* Up to k entries most similar to q[dim], best first, into out[k]; returns
 * how many were written (0 when empty). */
int ah_vindex_search(ah_vindex_t *ix, const float *q, int k, ah_vindex_hit_t *out);

/* 1 when id is in the index. */
int ah_vindex_has(const ah_vindex_t *ix, uint64_t id);
/* Live entries. */
size_t ah_vindex_count(const ah_vindex_t *ix);
/* Bytes the index holds (vectors, graph, id map), for stats and limits. */
size_t ah_vindex_memory(const ah_vindex_t *ix);
int ah_vindex_dim(const ah_vindex_t *ix);

/* Write the index to path (atomically: a temporary file, then rename). */
ah_err_t ah_vindex_save(ah_vindex_t *ix, const char *path);
/* Read an index written by ah_vindex_save; NULL with AH_E_* in *err when the
 * file is missing, truncated or of another format. Free with ah_vindex_free. */
ah_vindex_t *ah_vindex_load(const char *path, ah_err_t *err);

#endif
