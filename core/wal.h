/*
 * wal.h - the update log: every acknowledged update, durable before its
 * acknowledgement, replayed in order on start.
 *
 * Files: DIR/wal-<first seq, 20 digits>.log segments. A segment opens with
 * a 32-byte header {magic "FRSHWAL1", u64 first seq, u64 valid length of
 * the previous segment, u32 reserved, u32 CRC-32C of the header}; records
 * follow: {u32 payload length, u32 CRC-32C of (seq, payload), u64 seq,
 * payload}. Sequence numbers are contiguous from 1.
 *
 * Sync policy: FRESH_SYNC_ALWAYS acknowledges a record only after an
 * fdatasync that covers it; concurrent appends share one fdatasync (group
 * commit). FRESH_SYNC_INTERVAL acknowledges after write() and syncs every
 * interval: a process crash loses nothing, a power loss or kernel crash can
 * lose the acknowledged records of the last interval.
 *
 * Records are applied (the apply callback) in sequence order, after they
 * are durable under the policy and before append returns: so what is
 * applied is exactly what was acknowledged, in order. A failed write or
 * fdatasync is never retried on the same file: the records not yet durable
 * fail, the segment is abandoned (the next segment's header records how
 * much of it is valid) and later appends try a new segment.
 */
#ifndef FRESH_WAL_H
#define FRESH_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define FRESH_WAL_MAX_RECORD ((size_t)1 << 30)

enum fresh_sync {
	FRESH_SYNC_ALWAYS = 0,
	FRESH_SYNC_INTERVAL = 1,
};

struct fresh_wal_config {
	const char *dir;
	enum fresh_sync sync;
	unsigned interval_ms; /* FRESH_SYNC_INTERVAL */
	size_t segment_bytes; /* roll to a new segment past this size */
	bool salvage;	      /* on mid-log corruption keep what precedes */
	/*
	 * Tests only: keep written records in memory until a sync writes and
	 * syncs them, as a disk's volatile cache would, so that killing the
	 * process loses exactly what a power loss could.
	 */
	bool simulate_writeback;
};

/* Called for each record, in sequence order (replay and append). */
typedef void (*fresh_wal_apply_fn)(void *ctx, uint64_t seq, const void *payload,
				   size_t len);

/* What recovery found, for the operator's log. */
struct fresh_wal_recovery {
	size_t segments, records, replayed;
	size_t torn_bytes;     /* cut off a torn tail */
	size_t salvaged_bytes; /* dropped after mid-log corruption (salvage) */
	char note[512];	       /* human-readable, empty when clean */
};

struct fresh_wal;

/*
 * Opens (creating if needed) the log in cfg->dir, replays every record with
 * seq > after_seq through apply, truncates a torn tail, and refuses a
 * corrupt record in the middle (FRESH_FORMAT, err names file and offset)
 * unless cfg->salvage. Caller owns *out; close with fresh_wal_close.
 */
enum fresh_status fresh_wal_open(const struct fresh_wal_config *cfg,
				 uint64_t after_seq, fresh_wal_apply_fn apply,
				 void *ctx, struct fresh_wal **out,
				 struct fresh_wal_recovery *rec,
				 struct fresh_error *err);
void fresh_wal_close(struct fresh_wal *w);

/*
 * Appends one record; on FRESH_OK it is durable under the policy, has been
 * applied, and *seq is its number. FRESH_IO when it could not be made
 * durable (nothing applied). Thread-safe; concurrent appends share syncs.
 */
enum fresh_status fresh_wal_append(struct fresh_wal *w, const void *payload,
				   size_t len, uint64_t *seq,
				   struct fresh_error *err);

/*
 * Drops every segment whose records all have seq <= upto (the caller has
 * a durable snapshot of their effect), rolling to a new segment first so
 * that the current one can go too. Thread-safe.
 */
enum fresh_status fresh_wal_compact(struct fresh_wal *w, uint64_t upto,
				    struct fresh_error *err);

/* The sequence number the next append will get. */
uint64_t fresh_wal_next_seq(struct fresh_wal *w);
/* The newest sequence number applied (0 when none). */
uint64_t fresh_wal_last_seq(struct fresh_wal *w);
/* Bytes in all live segments. */
uint64_t fresh_wal_bytes(struct fresh_wal *w);
/* False after a failed write or sync until a new segment is writable. */
bool fresh_wal_writable(struct fresh_wal *w);

struct fresh_wal_stats {
	uint64_t appends, syncs, sync_failures, write_failures;
	double sync_seconds; /* total time in fdatasync */
};
void fresh_wal_stats(struct fresh_wal *w, struct fresh_wal_stats *out);

/*
 * Fault injection for tests: when set, the n-th following write (or
 * fdatasync) fails with EIO. 0 disables. Not for production use.
 */
void fresh_wal_fail_after(struct fresh_wal *w, unsigned writes, unsigned syncs);

#endif
