/*
 * wal_commit.c - appending to the update log, and group commit.
 *
 * An appender in FRESH_SYNC_ALWAYS mode queues itself and either becomes
 * the leader (no sync running: it syncs everything written so far, with mu
 * released) or waits; the leader, back under mu, applies every covered
 * record in sequence order and wakes the waiters. The interval syncer
 * (FRESH_SYNC_INTERVAL only) uses the same leader protocol, so a segment
 * is never closed under a running sync.
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
int fresh_wal_sync_fd(int fd, bool inject, unsigned char *held, size_t len)
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
	double t0 = fresh_wal_now();

	w->wb = NULL;
	w->wb_len = w->wb_cap = 0;
	w->syncing = true;
	pthread_mutex_unlock(&w->mu);
	r = fresh_wal_sync_fd(fd, inject, held, held_len);
	e = errno;
	free(held);
	pthread_mutex_lock(&w->mu);
	w->syncing = false;
	w->stats.syncs++;
	w->stats.sync_seconds += fresh_wal_now() - t0;
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
bool fresh_wal_settle(struct fresh_wal *w)
{
	bool inject;
	double t0;
	int r;

	if (w->broken)
		return false;
	if (w->synced_len == w->good_len)
		return true;
	inject = w->fail_syncs && --w->fail_syncs == 0;
	t0 = fresh_wal_now();
	r = fresh_wal_sync_fd(w->fd, inject, w->wb, w->wb_len);
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
	w->stats.sync_seconds += fresh_wal_now() - t0;
	complete(w, w->written_seq, w->good_len);
	return true;
}

void *fresh_wal_syncer_main(void *arg)
{
	struct fresh_wal *w = arg;

	pthread_mutex_lock(&w->mu);
	while (!w->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(w->cfg.interval_ms % 1000) * 1000000L;
		ts.tv_sec +=
			w->cfg.interval_ms / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		if (!w->stopping && !w->syncing && !w->broken && w->fd >= 0 &&
		    w->synced_len < w->good_len)
			lead_sync(w);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static enum fresh_status write_record(struct fresh_wal *w, uint64_t seq,
				      const void *payload, size_t len)
{
	unsigned char h[REC_HEADER];
	struct iovec iov[2];
	size_t total = REC_HEADER + len, done = 0;

	fresh_put32(h, (uint32_t)len);
	fresh_put32(h + 4, fresh_wal_record_crc(seq, payload, len));
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
			size_t take = (size_t)r < iov[i].iov_len
					      ? (size_t)r
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
		uint64_t valid = w->cfg.sync == FRESH_SYNC_ALWAYS
					 ? w->synced_len
					 : w->good_len;
		st = fresh_wal_roll(w, valid, err);
		if (st != FRESH_OK) {
			char why[sizeof err->msg];
			pthread_mutex_unlock(&w->mu);
			snprintf(why, sizeof why, "%s",
				 err ? err->msg : "roll failed");
			return fresh_fail(err, st,
					  "update log not writable: %.400s",
					  why);
		}
	} else if (w->good_len >= w->cfg.segment_bytes) {
		/* Close the full segment durably, then start the next. */
		if (!fresh_wal_settle(w)) {
			int e = w->last_errno;
			pthread_mutex_unlock(&w->mu);
			return fresh_fail(err, fresh_wal_io_status(e),
					  "update log sync failed: %s",
					  strerror(e));
		}
		st = fresh_wal_roll(w, w->good_len, err);
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
		return fresh_fail(err, fresh_wal_io_status(e),
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
		return fresh_fail(err, fresh_wal_io_status(e),
				  "update log sync failed (%s); nothing of "
				  "the update was kept",
				  strerror(e));
	*seq = me.seq;
	return FRESH_OK;
}
