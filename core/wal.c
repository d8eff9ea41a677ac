/*
 * wal.c - the update log (see wal.h): open and recovery, close,
 * compaction, counters. Segment files are wal_segment.c's, appending and
 * group commit wal_commit.c's.
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
#include "wal_impl.h"

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
	st = fresh_wal_list_segments(w, err);
	if (st == FRESH_OK)
		st = fresh_wal_replay(w, after_seq, rec, err);
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
		st = fresh_wal_roll(w, tail, err);
		if (st == FRESH_NO_SPACE) {
			/*
			 * A full disk: what is logged can still be served. Start
			 * broken; each append tries the new segment again.
			 */
			w->broken = true;
			w->good_len = w->synced_len = tail;
			snprintf(rec->note, sizeof rec->note,
				 "no space for a new segment (%.400s); updates "
				 "are "
				 "refused until there is",
				 err ? err->msg : "no space");
			st = FRESH_OK;
		}
		pthread_mutex_unlock(&w->mu);
		if (st != FRESH_OK)
			goto fail;
	}
	if (w->cfg.sync == FRESH_SYNC_INTERVAL) {
		if (pthread_create(&w->syncer, NULL, fresh_wal_syncer_main,
				   w) != 0) {
			st = fresh_fail(err, FRESH_NOMEM,
					"cannot start syncer");
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
			(void)fresh_wal_sync_fd(w->fd, false, w->wb, w->wb_len);
		close(w->fd);
	}
	free(w->wb);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->segs);
	free(w);
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
	if (!w->broken && w->good_len > SEG_HEADER && fresh_wal_settle(w))
		st = fresh_wal_roll(w, w->good_len, err);
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

void fresh_wal_fail_after(struct fresh_wal *w, unsigned writes, unsigned syncs)
{
	pthread_mutex_lock(&w->mu);
	w->fail_writes = writes;
	w->fail_syncs = syncs;
	pthread_mutex_unlock(&w->mu);
}
