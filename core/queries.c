/*
 * queries.c - the query buffer (see queries.h).
 *
 * Design: a FIFO of groups in a growable ring; adding a group that pushes
 * the total past max_queries drops groups from the front. Groups are
 * immutable once added, and a snapshot deep-copies them, so the trainer
 * never reads memory the engine may free.
 */
#include "queries.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fileio.h"

#define FILE_MAGIC "FRSHQUER"

struct fresh_queries_buf {
	size_t dim, max_queries, total;
	struct fresh_qgroup *ring;
	size_t cap, head, count;
};

static void group_free(struct fresh_qgroup *g)
{
	free(g->ids);
	free(g->targets);
	free(g->queries);
	free(g->positives);
	memset(g, 0, sizeof *g);
}

static enum fresh_status group_copy(struct fresh_qgroup *dst,
				    const struct fresh_update *u, uint64_t seq)
{
	memset(dst, 0, sizeof *dst);
	dst->n_targets = u->n_targets;
	dst->n_queries = u->n_queries;
	dst->dim = u->dim;
	dst->seq = seq;
	dst->ids = malloc(u->n_targets * sizeof *dst->ids);
	dst->targets = malloc(u->n_targets * u->dim * sizeof *dst->targets);
	dst->queries = malloc(u->n_queries * u->dim * sizeof *dst->queries);
	dst->positives = malloc(u->n_queries * sizeof *dst->positives);
	if (!dst->ids || !dst->targets || !dst->queries || !dst->positives) {
		group_free(dst);
		return FRESH_NOMEM;
	}
	memcpy(dst->ids, u->ids, u->n_targets * sizeof *dst->ids);
	memcpy(dst->targets, u->vectors,
	       u->n_targets * u->dim * sizeof *dst->targets);
	memcpy(dst->queries, u->queries,
	       u->n_queries * u->dim * sizeof *dst->queries);
	memcpy(dst->positives, u->positives,
	       u->n_queries * sizeof *dst->positives);
	return FRESH_OK;
}

enum fresh_status fresh_qbuf_create(size_t dim, size_t max_queries,
				    struct fresh_queries_buf **out)
{
	struct fresh_queries_buf *b = calloc(1, sizeof *b);

	if (!b)
		return FRESH_NOMEM;
	b->dim = dim;
	b->max_queries = max_queries;
	*out = b;
	return FRESH_OK;
}

void fresh_qbuf_clear(struct fresh_queries_buf *b)
{
	for (size_t i = 0; i < b->count; i++)
		group_free(&b->ring[(b->head + i) % b->cap]);
	b->head = b->count = b->total = 0;
}

void fresh_qbuf_free(struct fresh_queries_buf *b)
{
	if (!b)
		return;
	fresh_qbuf_clear(b);
	free(b->ring);
	free(b);
}

size_t fresh_qbuf_groups(const struct fresh_queries_buf *b)
{
	return b->count;
}

size_t fresh_qbuf_queries(const struct fresh_queries_buf *b)
{
	return b->total;
}

static void drop_front(struct fresh_queries_buf *b)
{
	struct fresh_qgroup *g = &b->ring[b->head];

	b->total -= g->n_queries;
	group_free(g);
	b->head = (b->head + 1) % b->cap;
	b->count--;
}

enum fresh_status fresh_qbuf_add(struct fresh_queries_buf *b,
				 const struct fresh_update *u, uint64_t seq)
{
	struct fresh_qgroup g;

	if (u->n_queries == 0 || b->max_queries == 0)
		return FRESH_OK;
	if (u->dim != b->dim || u->n_queries > b->max_queries)
		return FRESH_INVALID;
	if (group_copy(&g, u, seq) != FRESH_OK)
		return FRESH_NOMEM;
	while (b->count && b->total + g.n_queries > b->max_queries)
		drop_front(b);
	if (b->count == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 16;
		struct fresh_qgroup *r = malloc(cap * sizeof *r);
		if (!r) {
			group_free(&g);
			return FRESH_NOMEM;
		}
		for (size_t i = 0; i < b->count; i++)
			r[i] = b->ring[(b->head + i) % b->cap];
		free(b->ring);
		b->ring = r;
		b->cap = cap;
		b->head = 0;
	}
	b->ring[(b->head + b->count) % b->cap] = g;
	b->count++;
	b->total += g.n_queries;
	return FRESH_OK;
}

static enum fresh_status group_dup(struct fresh_qgroup *dst,
				   const struct fresh_qgroup *src)
{
	struct fresh_update u;

	memset(&u, 0, sizeof u);
	u.n_targets = src->n_targets;
	u.ids = src->ids;
	u.vectors = src->targets;
	u.dim = src->dim;
	u.n_queries = src->n_queries;
	u.queries = src->queries;
	u.positives = src->positives;
	return group_copy(dst, &u, src->seq);
}

enum fresh_status fresh_qbuf_snapshot(const struct fresh_queries_buf *b,
				      struct fresh_qgroups *out)
{
	out->n = 0;
	out->g = calloc(b->count ? b->count : 1, sizeof *out->g);
	if (!out->g)
		return FRESH_NOMEM;
	for (size_t i = 0; i < b->count; i++) {
		if (group_dup(&out->g[i], &b->ring[(b->head + i) % b->cap]) !=
		    FRESH_OK) {
			fresh_qgroups_free(out);
			return FRESH_NOMEM;
		}
		out->n++;
	}
	return FRESH_OK;
}

void fresh_qgroups_free(struct fresh_qgroups *s)
{
	for (size_t i = 0; i < s->n; i++)
		group_free(&s->g[i]);
	free(s->g);
	s->g = NULL;
	s->n = 0;
}

/*
 * File: magic, u64 count, then per group {u64 seq, u64 size, record}, then
 * a CRC-32C of everything before it.
 */
enum fresh_status fresh_qbuf_save(const struct fresh_queries_buf *b,
				  const char *path, struct fresh_error *err)
{
	struct fresh_atomic_file f;
	unsigned char h[16], c[4];
	uint32_t crc;
	enum fresh_status st = fresh_atomic_open(&f, path, err);

	if (st != FRESH_OK)
		return st;
	memcpy(h, FILE_MAGIC, 8);
	fresh_put64(h + 8, b->count);
	crc = fresh_crc32c(0, h, sizeof h);
	st = fresh_atomic_write(&f, h, sizeof h, err);
	for (size_t i = 0; i < b->count && st == FRESH_OK; i++) {
		const struct fresh_qgroup *g = &b->ring[(b->head + i) % b->cap];
		struct fresh_update u;
		size_t size;
		void *rec;

		memset(&u, 0, sizeof u);
		u.n_targets = g->n_targets;
		u.ids = g->ids;
		u.vectors = g->targets;
		u.dim = g->dim;
		u.n_queries = g->n_queries;
		u.queries = g->queries;
		u.positives = g->positives;
		size = fresh_record_size(&u);
		rec = malloc(size);
		if (!rec) {
			st = fresh_fail(err, FRESH_NOMEM, "out of memory");
			break;
		}
		fresh_record_encode(&u, rec);
		fresh_put64(h, g->seq);
		fresh_put64(h + 8, size);
		crc = fresh_crc32c(fresh_crc32c(crc, h, sizeof h), rec, size);
		st = fresh_atomic_write(&f, h, sizeof h, err);
		if (st == FRESH_OK)
			st = fresh_atomic_write(&f, rec, size, err);
		free(rec);
	}
	fresh_put32(c, crc);
	if (st == FRESH_OK)
		st = fresh_atomic_write(&f, c, sizeof c, err);
	st = fresh_atomic_finish(&f, st, err);
	return st;
}

enum fresh_status fresh_qbuf_load(struct fresh_queries_buf *b, const char *path,
				  uint64_t through, struct fresh_error *err)
{
	unsigned char *buf = NULL;
	size_t size, off = 16, count;
	enum fresh_status st = FRESH_OK;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? FRESH_NOT_FOUND
				       : fresh_fail(err, FRESH_IO, "%s: %s",
						    path, strerror(errno));
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return fresh_fail(err, FRESH_IO, "%s: cannot stat", path);
	}
	size = (size_t)sb.st_size;
	buf = malloc(size ? size : 1);
	if (!buf || fresh_pread_full(fd, buf, size, 0) != FRESH_OK) {
		st = fresh_fail(err, buf ? FRESH_IO : FRESH_NOMEM,
				"%s: cannot read", path);
		goto out;
	}
	if (size < 20 || memcmp(buf, FILE_MAGIC, 8) != 0 ||
	    fresh_crc32c(0, buf, size - 4) != fresh_get32(buf + size - 4)) {
		st = fresh_fail(err, FRESH_CHECKSUM,
				"%s: not a valid query snapshot", path);
		goto out;
	}
	count = (size_t)fresh_get64(buf + 8);
	for (size_t i = 0; i < count && st == FRESH_OK; i++) {
		enum fresh_record_type type;
		struct fresh_update u;
		uint64_t seq, len;
		void *rec;

		if (size - 4 - off < 16) {
			st = FRESH_FORMAT;
			break;
		}
		seq = fresh_get64(buf + off);
		len = fresh_get64(buf + off + 8);
		off += 16;
		if (len > size - 4 - off) {
			st = FRESH_FORMAT;
			break;
		}
		/* Copy to an aligned buffer for the record's arrays. */
		rec = malloc(len ? len : 1);
		if (!rec) {
			st = FRESH_NOMEM;
			break;
		}
		memcpy(rec, buf + off, len);
		if (fresh_record_decode(rec, len, &type, &u) != FRESH_OK ||
		    type != FRESH_RECORD_UPDATE)
			st = FRESH_FORMAT;
		else if (seq <= through)
			st = fresh_qbuf_add(b, &u, seq);
		free(rec);
		off += len;
	}
	if (st != FRESH_OK)
		st = fresh_fail(err, st, "%s: damaged query snapshot", path);
out:
	close(fd);
	free(buf);
	return st;
}
