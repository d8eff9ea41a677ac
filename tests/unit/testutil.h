/*
 * testutil.h - helpers shared by the unit tests: a seeded RNG, temporary
 * directories, .npy writers and a brute-force top-k reference.
 */
#ifndef FRESH_TESTUTIL_H
#define FRESH_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <check.h>

#include "topk.h"

/* Runs a suite (fork mode as configured by CK_FORK); exit status. */
int tu_run(Suite *s);

struct tu_rng {
	uint64_t s;
};

uint64_t tu_next(struct tu_rng *r);
/* Uniform in [lo, hi). */
float tu_uniform(struct tu_rng *r, float lo, float hi);
float tu_normal(struct tu_rng *r);
/* Integer-valued floats in [-m, m]: their dot products are exact. */
void tu_fill_int(struct tu_rng *r, float *x, size_t n, int m);
void tu_fill_normal(struct tu_rng *r, float *x, size_t n);
/*
 * A linear drift: stale (n x d) standard normal, then fresh = stale +
 * scale * M stale with M (d x d) standard normal, both drawn from r.
 */
void tu_linear_drift(struct tu_rng *r, float *stale, float *fresh, size_t n,
		     size_t d, double scale);

/* A fresh temporary directory (removed by tu_rmdir); path in buf. */
void tu_tmpdir(char *buf, size_t cap);
void tu_rmdir(const char *path);
void tu_path(char *buf, size_t cap, const char *dir, const char *name);

/* Writes a .npy with the given header dict body and raw data. */
void tu_write_npy_raw(const char *path, const char *dict, const void *data,
		      size_t bytes);
/* float32 C-order (n, d). */
void tu_write_npy_f32(const char *path, const float *x, size_t n, size_t d);
/* int64 or uint64 (n,). */
void tu_write_npy_ids(const char *path, const uint64_t *ids, size_t n,
		      bool is_signed);
void tu_write_file(const char *path, const void *data, size_t bytes);

/*
 * Asserts a[0..n) and b[0..n) hold the same ids and the same score bits
 * (a hit's padding bytes are not part of it, so no memcmp of hits).
 */
void tu_assert_hits_eq(const struct fresh_hit *a, const struct fresh_hit *b,
		       size_t n);

/*
 * Brute force: scores in double, then sort by (score desc, id asc),
 * skipping excluded rows. Returns the count written (<= k).
 */
size_t tu_naive_topk(const float *x, const uint64_t *ids, size_t n, size_t d,
		     const float *q, size_t k, const size_t *excl, size_t nexcl,
		     struct fresh_hit *out);

#endif
