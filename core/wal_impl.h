/*
 * wal_impl.h - the update log's state, shared by its three files: wal.c
 * (open, close, compaction, counters), wal_segment.c (segment files:
 * names, headers, listing, replay, rolling to a new one) and wal_commit.c
 * (appending and group commit). Not part of the core's interface.
 *
 * One mutex (mu) guards the segment list, the file descriptor and the
 * sequence counters; it is never held across write-ahead I/O that can
 * block for long except the write() of a record itself. Lock order: mu,
 * then whatever the apply callback takes (the engine's pair-buffer lock).
 */
#ifndef FRESH_WAL_IMPL_H
#define FRESH_WAL_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wal.h"

#define SEG_MAGIC "FRSHWAL1"
#define SEG_HEADER 32
#define REC_HEADER 16

/* A queued append's state. */
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
	uint64_t good_len;   /* current segment: end of the last whole record */
	uint64_t synced_len; /* current segment: length at the last sync */
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

double fresh_wal_now(void); /* monotonic seconds */

/* FRESH_NO_SPACE for a full disk or quota, else FRESH_IO. */
enum fresh_status fresh_wal_io_status(int e);

/* The checksum of a record: its sequence number and payload. */
uint32_t fresh_wal_record_crc(uint64_t seq, const void *payload, size_t len);

/* wal_segment.c: finds the directory's segments, sorted, into w->segs. */
enum fresh_status fresh_wal_list_segments(struct fresh_wal *w,
					  struct fresh_error *err);
/*
 * wal_segment.c: reads every segment, applies records after after_seq in
 * order, truncates a torn tail, and sets w->next_seq (wal.h's recovery
 * rules).
 */
enum fresh_status fresh_wal_replay(struct fresh_wal *w, uint64_t after_seq,
				   struct fresh_wal_recovery *rec,
				   struct fresh_error *err);
/*
 * wal_segment.c: creates a new segment starting at w->next_seq; prev_len
 * vouches for the current one. Under mu with no sync running.
 */
enum fresh_status fresh_wal_roll(struct fresh_wal *w, uint64_t prev_len,
				 struct fresh_error *err);

/* wal_commit.c: writes what simulated write-back held, then fdatasync. */
int fresh_wal_sync_fd(int fd, bool inject, unsigned char *held, size_t len);
/*
 * wal_commit.c: under mu (no sync running), makes every record written
 * to the current segment durable before it is closed. False (and
 * broken) when the sync fails.
 */
bool fresh_wal_settle(struct fresh_wal *w);
/* wal_commit.c: the interval syncer's thread (FRESH_SYNC_INTERVAL). */
void *fresh_wal_syncer_main(void *arg);

#endif
