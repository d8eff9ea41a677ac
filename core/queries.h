/*
 * queries.h - the query buffer: the query embeddings that came with
 * training updates, each with the update's targets, for the refit's
 * logit-matching term (softmax over an update's targets of <q, h(s)>
 * matched to softmax of <q, g>, g the fresh embeddings of that update).
 *
 * A group is one update: its targets (ids and fresh vectors) and its
 * queries (vectors and the id of each query's positive). The buffer keeps
 * the newest groups up to max_queries queries in all; the oldest group
 * goes first. Not thread-safe: the engine serializes access.
 */
#ifndef FRESH_QUERIES_H
#define FRESH_QUERIES_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "status.h"

struct fresh_qgroup {
	size_t n_targets, n_queries, dim;
	uint64_t *ids;	     /* n_targets */
	float *targets;	     /* n_targets x dim, fresh */
	float *queries;	     /* n_queries x dim */
	uint64_t *positives; /* n_queries */
	uint64_t seq;
};

struct fresh_queries_buf;

enum fresh_status fresh_qbuf_create(size_t dim, size_t max_queries,
				    struct fresh_queries_buf **out);
void fresh_qbuf_free(struct fresh_queries_buf *b);

/* Copies the queries of u (no-op when it has none). */
enum fresh_status fresh_qbuf_add(struct fresh_queries_buf *b,
				 const struct fresh_update *u, uint64_t seq);
void fresh_qbuf_clear(struct fresh_queries_buf *b);
size_t fresh_qbuf_groups(const struct fresh_queries_buf *b);
size_t fresh_qbuf_queries(const struct fresh_queries_buf *b);

/* A deep copy of the groups, oldest first; free with ..._snapshot_free. */
struct fresh_qgroups {
	size_t n;
	struct fresh_qgroup *g;
};
enum fresh_status fresh_qbuf_snapshot(const struct fresh_queries_buf *b,
				      struct fresh_qgroups *out);
void fresh_qgroups_free(struct fresh_qgroups *s);

/*
 * Durable form, for log compaction: path holds every group as an update
 * record (record.h) with its sequence number; written atomically.
 * Loading a missing file is FRESH_NOT_FOUND.
 */
enum fresh_status fresh_qbuf_save(const struct fresh_queries_buf *b,
				  const char *path, struct fresh_error *err);
/* Loads the groups of path with seq <= through (the rest the log replays). */
enum fresh_status fresh_qbuf_load(struct fresh_queries_buf *b, const char *path,
				  uint64_t through, struct fresh_error *err);

#endif
