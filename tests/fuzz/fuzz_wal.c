/*
 * fuzz_wal.c - replay of an update-log segment (fresh_wal_open,
 * core/wal.c).
 *
 * The input is written as DIR/wal-00000000000000000001.log in an empty
 * log directory and the log opened, once refusing and once
 * salvaging mid-log damage; the apply callback reads every payload byte
 * and decodes the payload as a record. The input is also tried with its
 * segment-header and record checksums recomputed (when that changes it),
 * so that mutations reach what lies behind them.
 *
 * When the input contains SEG_SEPARATOR, what follows it is a second
 * segment, named after the first sequence number its header announces
 * (at least 2): this reaches the checks between segments (continuity, the
 * valid length the next segment vouches for).
 *
 * after_seq (what a pair snapshot covers) is 0..7, from the low bits of
 * the first segment header's reserved field (not otherwise read).
 *
 * When the log opens, what recovery kept must be a consistent log: the
 * records applied carry after_seq + 1, after_seq + 2, ... in order; one
 * more append gets the next number; and reopening (with the same
 * after_seq) replays exactly those records plus the new one, with no
 * damage left to repair.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bytes.h"
#include "crc32c.h"
#include "fuzz_common.h"
#include "record.h"
#include "wal.h"

#define SEG_SEPARATOR "\n--segment--\n"
#define SEG_HEADER 32
#define REC_HEADER 16

struct seen {
	size_t n;
	uint64_t last_seq;
	bool in_order;
	size_t last_len;
	unsigned char last[FRESH_RECORD_HEADER];
};

static void apply(void *ctx, uint64_t seq, const void *payload, size_t len)
{
	struct seen *s = ctx;
	enum fresh_record_type type;
	struct fresh_update u;

	if (seq != s->last_seq + 1)
		s->in_order = false;
	s->last_seq = seq;
	s->n++;
	fz_touch(payload, len);
	/* As the engine does: decode in place (aligned in the segment). */
	if (fresh_record_decode(payload, len, &type, &u) == FRESH_OK &&
	    type == FRESH_RECORD_UPDATE) {
		fz_touch(u.ids, u.n_targets * 8);
		fz_touch(u.vectors, u.n_targets * u.dim * 4);
	}
	s->last_len = len;
	if (len <= sizeof s->last)
		memcpy(s->last, payload, len);
}

static void seen_init(struct seen *s, uint64_t after_seq)
{
	memset(s, 0, sizeof *s);
	s->last_seq = after_seq;
	s->in_order = true;
}

static void write_segments(const char *dir, const uint8_t *one_data,
			   size_t one_size, const uint8_t *two, size_t two_size)
{
	char seg[4300];
	uint64_t first = 2;

	FZ_CHECK(snprintf(seg, sizeof seg, "%s/wal-00000000000000000001.log",
			  dir) < (int)sizeof seg);
	fz_write(seg, one_data, one_size);
	if (!two)
		return;
	if (two_size >= 16 && fresh_get64(two + 8) > 2)
		first = fresh_get64(two + 8);
	FZ_CHECK(snprintf(seg, sizeof seg, "%s/wal-%020llu.log", dir,
			  (unsigned long long)first) < (int)sizeof seg);
	fz_write(seg, two, two_size);
}

static void one(const uint8_t *data, size_t size, const uint8_t *two,
		size_t two_size, bool salvage)
{
	char dir[4200];
	struct fresh_wal_config cfg;
	struct fresh_wal_recovery rec;
	struct fresh_error err;
	struct fresh_wal *w = NULL;
	struct seen s;
	unsigned char clear[FRESH_RECORD_HEADER];
	uint64_t seq = 0, after_seq = size >= SEG_HEADER ? data[24] & 7 : 0;
	uint64_t last;
	size_t kept;

	fz_path(dir, sizeof dir, "wal");
	fz_clear_dir(fz_tmpdir());
	FZ_CHECK(mkdir(dir, 0755) == 0);
	write_segments(dir, data, size, two, two_size);

	memset(&cfg, 0, sizeof cfg);
	cfg.dir = dir;
	cfg.sync = FRESH_SYNC_ALWAYS;
	cfg.salvage = salvage;
	seen_init(&s, after_seq);
	err.msg[0] = '\0';
	if (fresh_wal_open(&cfg, after_seq, apply, &s, &w, &rec, &err) !=
	    FRESH_OK) {
		FZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
		FZ_CHECK(err.msg[0] != '\0');
		return;
	}
	FZ_CHECK(s.in_order);
	FZ_CHECK(s.n == rec.replayed && rec.replayed <= rec.records);
	FZ_CHECK(memchr(rec.note, '\0', sizeof rec.note) != NULL);
	FZ_CHECK(fresh_wal_last_seq(w) == s.last_seq);
	kept = s.n;
	last = s.last_seq;

	fresh_record_encode_clear(clear);
	FZ_CHECK(fresh_wal_append(w, clear, sizeof clear, &seq, &err) ==
		 FRESH_OK);
	FZ_CHECK(seq == last + 1);
	FZ_CHECK(s.n == kept + 1 && s.in_order);
	fresh_wal_close(w);
	w = NULL;

	/* Reopen, refusing any damage: recovery must have left none. */
	cfg.salvage = false;
	seen_init(&s, after_seq);
	if (fresh_wal_open(&cfg, after_seq, apply, &s, &w, &rec, &err) !=
	    FRESH_OK) {
		fprintf(stderr, "reopen failed: %s\n", err.msg);
		fz_fail("reopen after recovery", __FILE__, __LINE__);
	}
	FZ_CHECK(s.in_order && s.n == kept + 1);
	FZ_CHECK(s.last_len == sizeof clear &&
		 memcmp(s.last, clear, sizeof clear) == 0);
	FZ_CHECK(rec.torn_bytes == 0 && rec.salvaged_bytes == 0);
	fresh_wal_close(w);
}

/* A copy of the input with the header and record checksums made right. */
static unsigned char *fix_checksums(const uint8_t *data, size_t size)
{
	unsigned char *b = fz_memdup(data, size);
	size_t off = SEG_HEADER;

	if (size < SEG_HEADER)
		return b;
	fresh_put32(b + 28, fresh_crc32c(0, b, 28));
	while (size - off >= REC_HEADER) {
		uint32_t len = fresh_get32(b + off);
		uint32_t crc;
		if (len > size - off - REC_HEADER)
			break;
		crc = fresh_crc32c(0, b + off + 8, 8);
		crc = fresh_crc32c(crc, b + off + REC_HEADER, len);
		fresh_put32(b + off + 4, crc);
		off += REC_HEADER + len;
	}
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t seplen = sizeof SEG_SEPARATOR - 1;
	const uint8_t *sep = memmem(data, size, SEG_SEPARATOR, seplen);
	size_t n1 = sep ? (size_t)(sep - data) : size;
	const uint8_t *two = sep ? sep + seplen : NULL;
	size_t n2 = sep ? size - n1 - seplen : 0;
	unsigned char *fix1 = fix_checksums(data, n1);
	unsigned char *fix2 = two ? fix_checksums(two, n2) : NULL;
	bool differs = (n1 > 0 && memcmp(fix1, data, n1) != 0) ||
		       (n2 > 0 && memcmp(fix2, two, n2) != 0);

	one(data, n1, two, n2, false);
	one(data, n1, two, n2, true);
	if (differs) {
		one(fix1, n1, fix2, n2, false);
		one(fix1, n1, fix2, n2, true);
	}
	free(fix1);
	free(fix2);
	fz_clear_dir(fz_tmpdir());
	return 0;
}
