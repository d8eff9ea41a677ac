/*
 * fuzz_pairs_file.c - pair snapshots (fresh_pairs_file_load,
 * core/datadir.c).
 *
 * The input is written as pairs.snap and loaded into an empty pair buffer
 * whose width is the one the file announces when that is small (else 4,
 * to reach the width check) and whose capacity, 1..16, comes from the
 * header's reserved field (so that eviction is reached). Each input is
 * tried as given and, when it differs, with the trailing CRC-32C
 * recomputed. A file that loads must leave at most capacity pairs, and
 * saving and reloading them must give the same pairs back.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "datadir.h"
#include "fuzz_common.h"
#include "fuzz_crc.h"
#include "pairs.h"

#define PAIRS_HEADER 56

static void same_snapshots(const struct fresh_pairs_snapshot *a,
			   const struct fresh_pairs_snapshot *b)
{
	FZ_CHECK(a->n == b->n && a->dim == b->dim);
	for (size_t i = 0; i < a->n; i++) {
		FZ_CHECK(a->ids[i] == b->ids[i]);
		FZ_CHECK(a->has_step[i] == b->has_step[i]);
		FZ_CHECK(!a->has_step[i] || a->steps[i] == b->steps[i]);
		FZ_CHECK(a->seqs[i] == b->seqs[i]);
	}
	FZ_CHECK(memcmp(a->g, b->g, a->n * a->dim * sizeof(float)) == 0);
}

static void one(const uint8_t *data, size_t size)
{
	char path[4200], again[4200];
	struct fresh_pairs *p = NULL, *q = NULL;
	struct fresh_pairs_file meta, meta2;
	struct fresh_pairs_snapshot s1, s2;
	struct fresh_error err;
	enum fresh_status st;
	size_t dim = 4, max = 1;

	if (size >= PAIRS_HEADER) {
		uint64_t d = fresh_get64(data + 40);
		if (d >= 1 && d <= 64)
			dim = (size_t)d;
		max = 1 + (data[12] & 15);
	}
	fz_path(path, sizeof path, "pairs.snap");
	fz_path(again, sizeof again, "again.snap");
	fz_write(path, data, size);
	FZ_CHECK(fresh_pairs_create(dim, max, &p) == FRESH_OK);
	err.msg[0] = '\0';
	st = fresh_pairs_file_load(path, p, &meta, &err);
	if (st != FRESH_OK) {
		FZ_CHECK(st != FRESH_NOT_FOUND);
		FZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
		fresh_pairs_free(p);
		return;
	}
	FZ_CHECK(fresh_pairs_count(p) <= max);
	FZ_CHECK(fresh_pairs_snapshot(p, 0, &s1) == FRESH_OK);
	FZ_CHECK(s1.n == fresh_pairs_count(p));
	for (size_t i = 0; i < s1.n; i++) {
		struct fresh_pair pair;
		FZ_CHECK(fresh_pairs_get(p, s1.ids[i], &pair));
		FZ_CHECK(memcmp(pair.g, s1.g + i * dim, dim * sizeof(float)) ==
			 0);
	}

	FZ_CHECK(fresh_pairs_file_save(again, &s1, &meta, &err) == FRESH_OK);
	FZ_CHECK(fresh_pairs_create(dim, max, &q) == FRESH_OK);
	FZ_CHECK(fresh_pairs_file_load(again, q, &meta2, &err) == FRESH_OK);
	FZ_CHECK(meta2.through_seq == meta.through_seq &&
		 meta2.total == meta.total &&
		 meta2.fingerprint == meta.fingerprint);
	FZ_CHECK(fresh_pairs_snapshot(q, 0, &s2) == FRESH_OK);
	same_snapshots(&s1, &s2);
	fresh_pairs_snapshot_free(&s1);
	fresh_pairs_snapshot_free(&s2);
	fresh_pairs_free(q);
	fresh_pairs_free(p);
	(void)unlink(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_with_fixed_crc(data, size, one);
	fz_clear_dir(fz_tmpdir());
	return 0;
}
