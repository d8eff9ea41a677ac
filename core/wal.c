/*
 * wal.c - the update log (see wal.h).
 *
 * Design: one mutex (mu) guards the segment list, the file descriptor and
 * the sequence counters; it is never held across write-ahead I/O that can
 * block for long except the write() of a record itself. Group commit: an
 * appender in FRESH_SYNC_ALWAYS mode queues itself and either becomes the
 * leader (no sync running: it syncs everything written so far, with mu
 * released) or waits; the leader, back under mu, applies every covered
 * record in sequence order and wakes the waiters. Lock order: mu, then
 * whatever the apply callback takes (the engine's pair-buffer lock).
 *
 * Threads: the interval syncer (FRESH_SYNC_INTERVAL only) uses the same
 * leader protocol, so a segment is never closed under a running sync.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fault.h"
#include "fileio.h"

#define SEG_MAGIC "FRSHWAL1"
#define SEG_HEADER 32
#define REC_HEADER 16

enum { PENDING, DONE, FAILED };

struct waiter {
	uint64_t seq;
	const void *payload;
	size_t len;
	int status;
	struct waiter *next;
};

struct segment {
	uint64_t first_seq;
	uint64_t size;
	char path[4096];
};

struct fresh_wal {
	struct fresh_wal_config cfg;
	char dir[4096];
	fresh_wal_apply_fn apply;
	void *ctx;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct segment *segs; /* sorted; the last is being written */
	size_t nsegs, capsegs;
	int fd;
	uint64_t next_seq;    /* seq of the next record */
	uint64_t written_seq; /* newest record fully written */
	uint64_t synced_seq;  /* newest record covered by a sync */
	uint64_t good_len;    /* current segment: end of the last whole record */
	uint64_t synced_len;  /* current segment: length at the last sync */
	bool syncing, broken, stopping;
	int last_errno; /* of the last failed write or sync (mu) */
	struct waiter *head, *tail;
	uint64_t total_bytes; /* all segments */

	pthread_t syncer;
	bool have_syncer;

	struct fresh_wal_stats stats;
	unsigned fail_writes, fail_syncs;

	/* simulate_writeback: written but not yet on disk. */
	unsigned char *wb;
	size_t wb_len, wb_cap;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The dir's length is checked at open, so this never truncates. */
static void seg_path(const struct fresh_wal *w, uint64_t first, char *buf,
		     size_t cap)
{
	if (snprintf(buf, cap, "%s/wal-%020" PRIu64 ".log", w->dir, first) >=
	    (int)cap)
		buf[0] = '\0';
}

static int cmp_seg(const void *a, const void *b)
{
	const struct segment *x = a, *y = b;
	return (x->first_seq > y->first_seq) - (x->first_seq < y->first_seq);
}

static enum fresh_status push_seg(struct fresh_wal *w, uint64_t first,
				  uint64_t size)
{
	if (w->nsegs == w->capsegs) {
		size_t cap = w->capsegs ? 2 * w->capsegs : 8;
		struct segment *s = realloc(w->segs, cap * sizeof *s);
		if (!s)
			return FRESH_NOMEM;
		w->segs = s;
		w->capsegs = cap;
	}
	w->segs[w->nsegs].first_seq = first;
	w->segs[w->nsegs].size = size;
	seg_path(w, first, w->segs[w->nsegs].path,
		 sizeof w->segs[w->nsegs].path);
	w->nsegs++;
	return FRESH_OK;
}

static enum fresh_status list_segments(struct fresh_wal *w,
				       struct fresh_error *err)
{
	DIR *d = opendir(w->dir);
	struct dirent *e;
	enum fresh_status st = FRESH_OK;

	if (!d)
		return fresh_fail(err, FRESH_IO, "%s: %s", w->dir,
				  strerror(errno));
	while ((e = readdir(d)) != NULL && st == FRESH_OK) {
		unsigned long long first;
		char tail[8];
		struct stat sb;
		char path[4200];
		if (sscanf(e->d_name, "wal-%20llu.lo%1[g]", &first, tail) != 2 ||
		    strlen(e->d_name) != 28)
			continue;
		snprintf(path, sizeof path, "%s/%s", w->dir, e->d_name);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		st = push_seg(w, first, (uint64_t)sb.st_size);
	}
	closedir(d);
	if (st == FRESH_OK && w->nsegs > 1)
		qsort(w->segs, w->nsegs, sizeof *w->segs, cmp_seg);
	return st;
}

static void make_seg_header(unsigned char *h, uint64_t first,
			    uint64_t prev_len)
{
	memset(h, 0, SEG_HEADER);
	memcpy(h, SEG_MAGIC, 8);
	fresh_put64(h + 8, first);
	fresh_put64(h + 16, prev_len);
	fresh_put32(h + 28, fresh_crc32c(0, h, 28));
}

static bool parse_seg_header(const unsigned char *h, uint64_t *first,
			     uint64_t *prev_len)
{
	if (memcmp(h, SEG_MAGIC, 8) != 0 ||
	    fresh_get32(h + 28) != fresh_crc32c(0, h, 28))
		return false;
	*first = fresh_get64(h + 8);
	*prev_len = fresh_get64(h + 16);
	return true;
}

static uint32_t record_crc(uint64_t seq, const void *payload, size_t len)
{
	unsigned char s[8];

	fresh_put64(s, seq);
	return fresh_crc32c(fresh_crc32c(0, s, 8), payload, len);
}

static enum fresh_status truncate_file(const char *path, uint64_t len)
{
	int fd = fresh_sys_open(path, O_WRONLY | O_CLOEXEC, 0);
	enum fresh_status st = FRESH_OK;

	if (fd < 0)
		return FRESH_IO;
	if (fresh_sys_ftruncate(fd, (off_t)len, path) != 0 ||
	    fresh_sys_fsync(fd, path) != 0)
		st = FRESH_IO;
	close(fd);
	return st;
}

/* Reads a whole segment into a new buffer. */
static enum fresh_status read_segment(const struct segment *s,
				      unsigned char **buf)
{
	int fd = open(s->path, O_RDONLY | O_CLOEXEC);
	enum fresh_status st;

	if (fd < 0)
		return FRESH_IO;
	*buf = malloc(s->size ? s->size : 1);
	if (!*buf) {
		close(fd);
		return FRESH_NOMEM;
	}
	st = fresh_pread_full(fd, *buf, s->size, 0);
	close(fd);
	if (st != FRESH_OK) {
		free(*buf);
		*buf = NULL;
	}
	return st;
}

/* Drops segments [from, nsegs) from disk and the list. */
static void drop_segments_from(struct fresh_wal *w, size_t from)
{
	while (w->nsegs > from) {
		w->nsegs--;
		unlink(w->segs[w->nsegs].path);
	}
	(void)fresh_fsync_parent(w->segs[0].path);
}

/*
 * Replays every segment. expect is the seq the next record must carry
 * (0: any, for the first record seen).
 */
static enum fresh_status replay(struct fresh_wal *w, uint64_t after_seq,
				struct fresh_wal_recovery *rec,
				struct fresh_error *err)
{
	uint64_t expect = 0;

	for (size_t i = 0; i < w->nsegs; i++) {
		struct segment *s = &w->segs[i];
		bool last = i + 1 == w->nsegs;
		uint64_t first, prev_len, limit = s->size, off = SEG_HEADER;
		unsigned char *buf = NULL;
		const char *problem = NULL;
		bool final_bad = false;
		enum fresh_status st;

		st = read_segment(s, &buf);
		if (st != FRESH_OK)
			return fresh_fail(err, st, "%s: cannot read", s->path);
		rec->segments++;
		if (s->size < SEG_HEADER ||
		    !parse_seg_header(buf, &first, &prev_len) ||
		    first != s->first_seq) {
			free(buf);
			if (last && s->size < SEG_HEADER) {
				/* Crashed while creating it: nothing inside. */
				rec->torn_bytes += s->size;
				drop_segments_from(w, i);
				break;
			}
			if (!w->cfg.salvage)
				return fresh_fail(err, FRESH_FORMAT,
						  "%s: bad segment header", s->path);
			rec->salvaged_bytes += s->size;
			drop_segments_from(w, i);
			break;
		}
		/*
		 * A gap is fine when the pair snapshot covers it: records
		 * applied (interval sync) and snapshotted, then lost from the
		 * log's unsynced tail; the segment after it starts past them.
		 */
		if (expect != 0 && first != expect &&
		    !(first > expect && first <= after_seq + 1)) {
			free(buf);
			return fresh_fail(err, FRESH_FORMAT,
					  "%s: starts at record %" PRIu64
					  ", expected %" PRIu64,
					  s->path, first, expect);
		}
		if (expect == 0 && first > after_seq + 1) {
			free(buf);
			return fresh_fail(err, FRESH_FORMAT,
					  "%s: log starts at record %" PRIu64
					  " but the pair snapshot covers only "
					  "up to %" PRIu64,
					  s->path, first, after_seq);
		}
		expect = first;
		/* The next segment says how much of this one is valid. */
		if (!last) {
			unsigned char nh[SEG_HEADER];
			int fd = open(w->segs[i + 1].path, O_RDONLY | O_CLOEXEC);
			uint64_t nfirst, nprev;
			if (fd >= 0 && w->segs[i + 1].size >= SEG_HEADER &&
			    fresh_pread_full(fd, nh, SEG_HEADER, 0) == FRESH_OK &&
			    parse_seg_header(nh, &nfirst, &nprev) &&
			    nprev >= SEG_HEADER && nprev < limit)
				limit = nprev;
			if (fd >= 0)
				close(fd);
		}
		while (off < limit) {
			uint32_t len, crc;
			uint64_t seq;

			if (limit - off < REC_HEADER) {
				problem = "truncated record header";
				break;
			}
			len = fresh_get32(buf + off);
			crc = fresh_get32(buf + off + 4);
			seq = fresh_get64(buf + off + 8);
			if (len > FRESH_WAL_MAX_RECORD ||
			    limit - off - REC_HEADER < len) {
				problem = "truncated record";
				break;
			}
			if (record_crc(seq, buf + off + REC_HEADER, len) != crc) {
				problem = "checksum mismatch";
				/* Torn only if it is the very last record. */
				final_bad = off + REC_HEADER + len == limit;
				break;
			}
			if (seq != expect) {
				problem = "out-of-order sequence number";
				break;
			}
			rec->records++;
			if (seq > after_seq) {
				w->apply(w->ctx, seq, buf + off + REC_HEADER,
					 len);
				rec->replayed++;
			}
			expect = seq + 1;
			off += REC_HEADER + len;
		}
		free(buf);
		if (problem) {
			/*
			 * A torn tail: damage that runs to the end of the last
			 * segment. A truncated record is always at the end; a
			 * bad checksum only counts when it is the final record.
			 */
			bool torn = last && (strcmp(problem, "truncated record") == 0 ||
					     strcmp(problem,
						    "truncated record header") == 0 ||
					     final_bad);
			if (torn) {
				rec->torn_bytes += s->size - off;
				snprintf(rec->note, sizeof rec->note,
					 "%.400s: torn tail (%s) at offset %" PRIu64
					 ", %" PRIu64 " bytes cut",
					 s->path, problem, off, s->size - off);
			} else if (w->cfg.salvage) {
				rec->salvaged_bytes += s->size - off;
				for (size_t j = i + 1; j < w->nsegs; j++)
					rec->salvaged_bytes += w->segs[j].size;
				snprintf(rec->note, sizeof rec->note,
					 "%.400s: %s at offset %" PRIu64
					 "; salvaged the records before it",
					 s->path, problem, off);
				drop_segments_from(w, i + 1);
			} else {
				return fresh_fail(
					err, FRESH_FORMAT,
					"%s: %s at offset %" PRIu64
					" with records after it (start with "
					"--salvage-log to keep what precedes it)",
					s->path, problem, off);
			}
			if (truncate_file(s->path, off) != FRESH_OK)
				return fresh_fail(err, FRESH_IO,
						  "%s: cannot truncate", s->path);
			s->size = off;
			break;
		}
		if (limit < s->size) {
			/* Beyond what the next segment vouches for. */
			if (truncate_file(s->path, limit) != FRESH_OK)
				return fresh_fail(err, FRESH_IO,
						  "%s: cannot truncate", s->path);
			s->size = limit;
		}
	}
	w->next_seq = expect ? expect : after_seq + 1;
	if (w->next_seq <= after_seq)
		w->next_seq = after_seq + 1;
	return FRESH_OK;
}

/* FRESH_NO_SPACE for a full disk or quota, else FRESH_IO. */
static enum fresh_status io_status(int e)
{
	return e == ENOSPC || e == EDQUOT ? FRESH_NO_SPACE : FRESH_IO;
}

/* Creates a new segment starting at w->next_seq; prev_len vouches for the
 * current one. Called under mu with no sync running. */
static enum fresh_status roll(struct fresh_wal *w, uint64_t prev_len,
			      struct fresh_error *err)
{
	unsigned char h[SEG_HEADER];
	char path[4096];
	int fd;

	seg_path(w, w->next_seq, path, sizeof path);
	/*
	 * Never overwrite a segment that holds records: its name says where
	 * the next one starts, so a clash means the counters are wrong.
	 */
	if (w->nsegs > 0 && w->segs[w->nsegs - 1].first_seq == w->next_seq) {
		if (w->segs[w->nsegs - 1].size > SEG_HEADER)
			return fresh_fail(err, FRESH_IO,
					  "%s exists and holds records", path);
		/* An empty one from a failed attempt: replace it. */
		w->total_bytes -= w->segs[w->nsegs - 1].size;
		w->nsegs--;
		if (w->nsegs > 0 && prev_len == SEG_HEADER)
			prev_len = w->segs[w->nsegs - 1].size;
	}
	fd = fresh_sys_open(path,
			    O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			    0644);
	if (fd < 0) {
		w->last_errno = errno;
		return fresh_fail(err, io_status(errno), "%s: %s", path,
				  strerror(errno));
	}
	make_seg_header(h, w->next_seq, prev_len);
	if (fresh_write_full(fd, h, SEG_HEADER) != FRESH_OK ||
	    fresh_sys_fdatasync(fd, path) != 0 ||
	    fresh_fsync_parent(path) != FRESH_OK) {
		int e = errno;
		close(fd);
		unlink(path);
		w->last_errno = e;
		return fresh_fail(err, io_status(e), "%s: cannot create: %s",
				  path, strerror(e));
	}
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	if (push_seg(w, w->next_seq, SEG_HEADER) != FRESH_OK) {
		/* The file exists and is valid; only our bookkeeping failed. */
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	}
	w->total_bytes += SEG_HEADER;
	w->good_len = w->synced_len = SEG_HEADER;
	w->synced_seq = w->written_seq = w->next_seq - 1;
	w->broken = false;
	return FRESH_OK;
}

/* Fails every queued record not yet durable. Under mu. */
static void fail_waiters(struct fresh_wal *w)
{
	for (struct waiter *q = w->head; q; q = q->next)
		q->status = FAILED;
	w->head = w->tail = NULL;
	pthread_cond_broadcast(&w->cv);
}

/* After a failure: records past the last durable point are gone. */
static void mark_broken(struct fresh_wal *w)
{
	w->broken = true;
	w->wb_len = 0; /* what a failed sync did not write is gone */
	if (w->cfg.sync == FRESH_SYNC_ALWAYS)
		w->next_seq = w->synced_seq + 1;
	fail_waiters(w);
}


/* Marks records through target durable and applies their waiters. */
static void complete(struct fresh_wal *w, uint64_t target, uint64_t len)
{
	w->synced_seq = target;
	w->synced_len = len;
	while (w->head && w->head->seq <= target) {
		struct waiter *q = w->head;
		w->apply(w->ctx, q->seq, q->payload, q->len);
		q->status = DONE;
		w->head = q->next;
		if (!w->head)
			w->tail = NULL;
	}
	pthread_cond_broadcast(&w->cv);
}

/* Writes what simulated write-back held (if any), then fdatasync. */
static int sync_fd(int fd, bool inject, unsigned char *held, size_t len)
{
	if (inject) {
		errno = EIO;
		return -1;
	}
	if (len && fresh_write_full(fd, held, len) != FRESH_OK)
		return -1;
	return fresh_sys_fdatasync(fd, "the update log");
}

/*
 * The leader's sync: with mu released, fdatasync everything written so
 * far; then apply what it covered, in order. Called and returns under mu.
 */
static void lead_sync(struct fresh_wal *w)
{
	uint64_t target = w->written_seq, len = w->good_len;
	bool inject = w->fail_syncs && --w->fail_syncs == 0;
	unsigned char *held = w->wb;
	size_t held_len = w->wb_len;
	int fd = w->fd, r, e;
	double t0 = now();

	w->wb = NULL;
	w->wb_len = w->wb_cap = 0;
	w->syncing = true;
	pthread_mutex_unlock(&w->mu);
	r = sync_fd(fd, inject, held, held_len);
	e = errno;
	free(held);
	pthread_mutex_lock(&w->mu);
	w->syncing = false;
	w->stats.syncs++;
	w->stats.sync_seconds += now() - t0;
	if (r != 0) {
		w->last_errno = e;
		w->stats.sync_failures++;
		mark_broken(w);
		return;
	}
	w->last_errno = 0;
	complete(w, target, len);
}

/*
 * Before a segment is closed: under mu (no sync running), makes every
 * record written to it durable, so none is acknowledged by a later sync
 * of another file. False (and broken) when the sync fails.
 */
static bool settle(struct fresh_wal *w)
{
	bool inject;
	double t0;
	int r;

	if (w->broken)
		return false;
	if (w->synced_len == w->good_len)
		return true;
	inject = w->fail_syncs && --w->fail_syncs == 0;
	t0 = now();
	r = sync_fd(w->fd, inject, w->wb, w->wb_len);
	if (r != 0)
		w->last_errno = errno;
	free(w->wb);
	w->wb = NULL;
	w->wb_len = w->wb_cap = 0;
	if (r != 0) {
		w->stats.syncs++;
		w->stats.sync_failures++;
		mark_broken(w);
		return false;
	}
	w->stats.syncs++;
	w->stats.sync_seconds += now() - t0;
	complete(w, w->written_seq, w->good_len);
	return true;
}

static void *syncer_main(void *arg)
{
	struct fresh_wal *w = arg;

	pthread_mutex_lock(&w->mu);
	while (!w->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(w->cfg.interval_ms % 1000) * 1000000L;
		ts.tv_sec += w->cfg.interval_ms / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		if (!w->stopping && !w->syncing && !w->broken && w->fd >= 0 &&
		    w->synced_len < w->good_len)
			lead_sync(w);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

enum fresh_status fresh_wal_open(const struct fresh_wal_config *cfg,
				 uint64_t after_seq, fresh_wal_apply_fn apply,
				 void *ctx, struct fresh_wal **out,
				 struct fresh_wal_recovery *rec,
				 struct fresh_error *err)
{
	struct fresh_wal *w = calloc(1, sizeof *w);
	enum fresh_status st;

	memset(rec, 0, sizeof *rec);
	if (!w)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	w->cfg = *cfg;
	if (w->cfg.segment_bytes == 0)
		w->cfg.segment_bytes = (size_t)64 << 20;
	if (w->cfg.sync == FRESH_SYNC_INTERVAL && w->cfg.interval_ms == 0)
		w->cfg.interval_ms = 100;
	snprintf(w->dir, sizeof w->dir, "%s", cfg->dir);
	w->cfg.dir = w->dir;
	w->apply = apply;
	w->ctx = ctx;
	w->fd = -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (strlen(cfg->dir) > sizeof w->dir - 64) {
		st = fresh_fail(err, FRESH_INVALID,
				"data directory path too long");
		goto fail;
	}
	if (mkdir(w->dir, 0755) != 0 && errno != EEXIST) {
		st = fresh_fail(err, FRESH_IO, "%s: %s", w->dir,
				strerror(errno));
		goto fail;
	}
	st = list_segments(w, err);
	if (st == FRESH_OK)
		st = replay(w, after_seq, rec, err);
	if (st != FRESH_OK)
		goto fail;
	for (size_t i = 0; i < w->nsegs; i++)
		w->total_bytes += w->segs[i].size;
	w->written_seq = w->synced_seq = w->next_seq - 1;
	if (w->nsegs > 0 && w->segs[w->nsegs - 1].size == SEG_HEADER &&
	    w->segs[w->nsegs - 1].first_seq == w->next_seq) {
		/* The newest segment holds no record: write on into it. */
		w->fd = fresh_sys_open(w->segs[w->nsegs - 1].path,
				       O_WRONLY | O_APPEND | O_CLOEXEC, 0);
		if (w->fd < 0) {
			st = fresh_fail(err, FRESH_IO, "%s: %s",
					w->segs[w->nsegs - 1].path,
					strerror(errno));
			goto fail;
		}
		w->good_len = w->synced_len = SEG_HEADER;
	} else {
		/* Write into a new segment: the old tail is settled. */
		uint64_t tail = w->nsegs ? w->segs[w->nsegs - 1].size : 0;
		pthread_mutex_lock(&w->mu);
		st = roll(w, tail, err);
		if (st == FRESH_NO_SPACE) {
			/*
			 * A full disk: what is logged can still be served. Start
			 * broken; each append tries the new segment again.
			 */
			w->broken = true;
			w->good_len = w->synced_len = tail;
			snprintf(rec->note, sizeof rec->note,
				 "no space for a new segment (%.400s); updates are "
				 "refused until there is",
				 err ? err->msg : "no space");
			st = FRESH_OK;
		}
		pthread_mutex_unlock(&w->mu);
		if (st != FRESH_OK)
			goto fail;
	}
	if (w->cfg.sync == FRESH_SYNC_INTERVAL) {
		if (pthread_create(&w->syncer, NULL, syncer_main, w) != 0) {
			st = fresh_fail(err, FRESH_NOMEM, "cannot start syncer");
			goto fail;
		}
		w->have_syncer = true;
	}
	*out = w;
	return FRESH_OK;
fail:
	fresh_wal_close(w);
	return st;
}

void fresh_wal_close(struct fresh_wal *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->have_syncer)
		pthread_join(w->syncer, NULL);
	if (w->fd >= 0) {
		if (!w->broken)
			(void)sync_fd(w->fd, false, w->wb, w->wb_len);
		close(w->fd);
	}
	free(w->wb);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->segs);
	free(w);
}

static enum fresh_status write_record(struct fresh_wal *w, uint64_t seq,
				      const void *payload, size_t len)
{
	unsigned char h[REC_HEADER];
	struct iovec iov[2];
	size_t total = REC_HEADER + len, done = 0;

	fresh_put32(h, (uint32_t)len);
	fresh_put32(h + 4, record_crc(seq, payload, len));
	fresh_put64(h + 8, seq);
	iov[0].iov_base = h;
	iov[0].iov_len = REC_HEADER;
	iov[1].iov_base = (void *)payload;
	iov[1].iov_len = len;
	if (w->cfg.simulate_writeback) {
		if (w->wb_len + total > w->wb_cap) {
			size_t cap = w->wb_cap ? w->wb_cap : 65536;
			unsigned char *b;
			while (cap < w->wb_len + total)
				cap *= 2;
			b = realloc(w->wb, cap);
			if (!b)
				return FRESH_IO;
			w->wb = b;
			w->wb_cap = cap;
		}
		memcpy(w->wb + w->wb_len, h, REC_HEADER);
		memcpy(w->wb + w->wb_len + REC_HEADER, payload, len);
		w->wb_len += total;
		return FRESH_OK;
	}
	if (w->fail_writes && --w->fail_writes == 0) {
		/* Simulate a torn write: half the record, then EIO. */
		(void)fresh_write_full(w->fd, h, REC_HEADER);
		errno = EIO;
		return FRESH_IO;
	}
	while (done < total) {
		ssize_t r = fresh_fault_hit("write", "the update log")
				    ? -1
				    : writev(w->fd, iov, 2);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return FRESH_IO;
		done += (size_t)r;
		/* Advance the iovecs past what was written. */
		for (int i = 0; i < 2; i++) {
			size_t take = (size_t)r < iov[i].iov_len ? (size_t)r
								 : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + take;
			iov[i].iov_len -= take;
			r -= (ssize_t)take;
		}
	}
	return FRESH_OK;
}

enum fresh_status fresh_wal_append(struct fresh_wal *w, const void *payload,
				   size_t len, uint64_t *seq,
				   struct fresh_error *err)
{
	struct waiter me;
	enum fresh_status st = FRESH_OK;
	int e;

	if (len > FRESH_WAL_MAX_RECORD)
		return fresh_fail(err, FRESH_TOO_LARGE,
				  "update of %zu bytes exceeds the log's "
				  "record limit",
				  len);
	pthread_mutex_lock(&w->mu);
	while (w->syncing && (w->broken || w->good_len >= w->cfg.segment_bytes))
		pthread_cond_wait(&w->cv, &w->mu);
	if (w->broken) {
		uint64_t valid = w->cfg.sync == FRESH_SYNC_ALWAYS ? w->synced_len
								 : w->good_len;
		st = roll(w, valid, err);
		if (st != FRESH_OK) {
			char why[sizeof err->msg];
			pthread_mutex_unlock(&w->mu);
			snprintf(why, sizeof why, "%s",
				 err ? err->msg : "roll failed");
			return fresh_fail(err, st, "update log not writable: %.400s",
					  why);
		}
	} else if (w->good_len >= w->cfg.segment_bytes) {
		/* Close the full segment durably, then start the next. */
		if (!settle(w)) {
			int e = w->last_errno;
			pthread_mutex_unlock(&w->mu);
			return fresh_fail(err, io_status(e),
					  "update log sync failed: %s",
					  strerror(e));
		}
		st = roll(w, w->good_len, err);
		if (st != FRESH_OK) {
			w->broken = true;
			pthread_mutex_unlock(&w->mu);
			return st;
		}
	}
	me.seq = w->next_seq;
	me.payload = payload;
	me.len = len;
	me.status = PENDING;
	me.next = NULL;
	if (write_record(w, me.seq, payload, len) != FRESH_OK) {
		int e = errno;
		w->last_errno = e;
		w->stats.write_failures++;
		mark_broken(w);
		pthread_mutex_unlock(&w->mu);
		return fresh_fail(err, io_status(e),
				  "update log write failed: %s", strerror(e));
	}
	w->stats.appends++;
	w->next_seq++;
	w->written_seq = me.seq;
	w->good_len += REC_HEADER + len;
	w->total_bytes += REC_HEADER + len;
	w->segs[w->nsegs - 1].size = w->good_len;
	if (w->cfg.sync == FRESH_SYNC_INTERVAL) {
		w->apply(w->ctx, me.seq, payload, len);
		*seq = me.seq;
		pthread_mutex_unlock(&w->mu);
		return FRESH_OK;
	}
	if (w->tail)
		w->tail->next = &me;
	else
		w->head = &me;
	w->tail = &me;
	while (me.status == PENDING) {
		if (!w->syncing)
			lead_sync(w);
		else
			pthread_cond_wait(&w->cv, &w->mu);
	}
	e = me.status == DONE ? 0 : w->last_errno;
	pthread_mutex_unlock(&w->mu);
	if (me.status != DONE)
		return fresh_fail(err, io_status(e),
				  "update log sync failed (%s); nothing of "
				  "the update was kept",
				  strerror(e));
	*seq = me.seq;
	return FRESH_OK;
}

enum fresh_status fresh_wal_compact(struct fresh_wal *w, uint64_t upto,
				    struct fresh_error *err)
{
	enum fresh_status st = FRESH_OK;
	size_t keep_from = 0;

	pthread_mutex_lock(&w->mu);
	while (w->syncing)
		pthread_cond_wait(&w->cv, &w->mu);
	/*
	 * Roll whenever the current segment holds records, so that it can
	 * go at this compaction (if upto covers it) or the next one.
	 */
	if (!w->broken && w->good_len > SEG_HEADER && settle(w))
		st = roll(w, w->good_len, err);
	/* Segment i holds [first_i, first_{i+1}); drop those <= upto. */
	while (keep_from + 1 < w->nsegs &&
	       w->segs[keep_from + 1].first_seq - 1 <= upto)
		keep_from++;
	if (keep_from > 0) {
		for (size_t i = 0; i < keep_from; i++) {
			w->total_bytes -= w->segs[i].size;
			unlink(w->segs[i].path);
		}
		memmove(w->segs, w->segs + keep_from,
			(w->nsegs - keep_from) * sizeof *w->segs);
		w->nsegs -= keep_from;
		(void)fresh_fsync_parent(w->segs[0].path);
	}
	pthread_mutex_unlock(&w->mu);
	return st;
}

uint64_t fresh_wal_next_seq(struct fresh_wal *w)
{
	uint64_t v;

	pthread_mutex_lock(&w->mu);
	v = w->next_seq;
	pthread_mutex_unlock(&w->mu);
	return v;
}

uint64_t fresh_wal_last_seq(struct fresh_wal *w)
{
	uint64_t v;

	pthread_mutex_lock(&w->mu);
	v = w->cfg.sync == FRESH_SYNC_ALWAYS ? w->synced_seq : w->written_seq;
	pthread_mutex_unlock(&w->mu);
	return v;
}

uint64_t fresh_wal_bytes(struct fresh_wal *w)
{
	uint64_t v;

	pthread_mutex_lock(&w->mu);
	v = w->total_bytes;
	pthread_mutex_unlock(&w->mu);
	return v;
}

bool fresh_wal_writable(struct fresh_wal *w)
{
	bool v;

	pthread_mutex_lock(&w->mu);
	v = !w->broken;
	pthread_mutex_unlock(&w->mu);
	return v;
}

void fresh_wal_stats(struct fresh_wal *w, struct fresh_wal_stats *out)
{
	pthread_mutex_lock(&w->mu);
	*out = w->stats;
	pthread_mutex_unlock(&w->mu);
}

void fresh_wal_fail_after(struct fresh_wal *w, unsigned writes,
			  unsigned syncs)
{
	pthread_mutex_lock(&w->mu);
	w->fail_writes = writes;
	w->fail_syncs = syncs;
	pthread_mutex_unlock(&w->mu);
}
