/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

uint64_t tu_next(struct tu_rng *r)
{
	r->s += UINT64_C(0x9e3779b97f4a7c15);
	return fresh_mix64(r->s);
}

float tu_uniform(struct tu_rng *r, float lo, float hi)
{
	return lo + (hi - lo) * (float)fresh_unit_open(tu_next(r));
}

float tu_normal(struct tu_rng *r)
{
	double u1 = fresh_unit_open(tu_next(r));
	double u2 = fresh_unit_open(tu_next(r));
	return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void tu_fill_int(struct tu_rng *r, float *x, size_t n, int m)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((int)(tu_next(r) % (uint64_t)(2 * m + 1)) - m);
}

void tu_fill_normal(struct tu_rng *r, float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = tu_normal(r);
}

void tu_tmpdir(char *buf, size_t cap)
{
	const char *base = getenv("TMPDIR");
	snprintf(buf, cap, "%s/freshd-test-XXXXXX", base ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

void tu_rmdir(const char *path)
{
	char cmd[4200];
	if (getenv("FRESHD_TEST_KEEP"))
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	ck_assert_int_eq(system(cmd), 0);
}

void tu_path(char *buf, size_t cap, const char *dir, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
}

void tu_write_file(const char *path, const void *data, size_t bytes)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	if (bytes)
		ck_assert_uint_eq(fwrite(data, 1, bytes, f), bytes);
	ck_assert_int_eq(fclose(f), 0);
}

void tu_write_npy_raw(const char *path, const char *dict, const void *data,
		      size_t bytes)
{
	char header[256];
	size_t len = strlen(dict), total;
	FILE *f;

	/* Pad with spaces so that magic + len + dict + '\n' is 64-aligned. */
	total = 10 + len + 1;
	total = (total + 63) / 64 * 64;
	ck_assert_uint_lt(total - 10, sizeof header);
	memset(header, ' ', sizeof header);
	memcpy(header, dict, len);
	header[total - 10 - 1] = '\n';
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	fwrite("\x93NUMPY\x01\x00", 1, 8, f);
	fputc((int)((total - 10) & 0xff), f);
	fputc((int)((total - 10) >> 8), f);
	fwrite(header, 1, total - 10, f);
	if (bytes)
		fwrite(data, 1, bytes, f);
	ck_assert_int_eq(fclose(f), 0);
}

void tu_write_npy_f32(const char *path, const float *x, size_t n, size_t d)
{
	char dict[128];
	snprintf(dict, sizeof dict,
		 "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, "
		 "%zu), }",
		 n, d);
	tu_write_npy_raw(path, dict, x, n * d * sizeof(float));
}

void tu_write_npy_ids(const char *path, const uint64_t *ids, size_t n,
		      bool is_signed)
{
	char dict[128];
	snprintf(dict, sizeof dict,
		 "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
		 is_signed ? "<i8" : "<u8", n);
	tu_write_npy_raw(path, dict, ids, n * 8);
}

struct scored {
	double score;
	uint64_t id;
};

static int cmp_scored(const void *a, const void *b)
{
	const struct scored *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

size_t tu_naive_topk(const float *x, const uint64_t *ids, size_t n, size_t d,
		     const float *q, size_t k, const size_t *excl, size_t nexcl,
		     struct fresh_hit *out)
{
	struct scored *all = malloc((n ? n : 1) * sizeof *all);
	size_t m = 0, count;

	for (size_t r = 0; r < n; r++) {
		bool skip = false;
		double s = 0.0;
		for (size_t e = 0; e < nexcl; e++)
			skip |= excl[e] == r;
		if (skip)
			continue;
		for (size_t c = 0; c < d; c++)
			s += (double)q[c] * x[r * d + c];
		all[m].score = s;
		all[m++].id = ids ? ids[r] : r;
	}
	qsort(all, m, sizeof *all, cmp_scored);
	count = m < k ? m : k;
	for (size_t i = 0; i < count; i++) {
		out[i].id = all[i].id;
		out[i].score = (float)all[i].score;
	}
	free(all);
	return count;
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void tu_linear_drift(struct tu_rng *r, float *stale, float *fresh, size_t n,
		     size_t d, double scale)
{
	float *m = malloc(d * d * sizeof *m);

	ck_assert_ptr_nonnull(m);
	tu_fill_normal(r, stale, n * d);
	tu_fill_normal(r, m, d * d);
	for (size_t i = 0; i < n; i++)
		for (size_t o = 0; o < d; o++) {
			double v = stale[i * d + o];
			for (size_t j = 0; j < d; j++)
				v += scale * m[o * d + j] * stale[i * d + j];
			fresh[i * d + o] = (float)v;
		}
	free(m);
}

void tu_assert_hits_eq(const struct fresh_hit *a, const struct fresh_hit *b,
		       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(a[i].id == b[i].id, "hit %zu: id %llu vs %llu", i,
			      (unsigned long long)a[i].id,
			      (unsigned long long)b[i].id);
		ck_assert_msg(!memcmp(&a[i].score, &b[i].score, sizeof(float)),
			      "hit %zu (id %llu): score %.9g vs %.9g", i,
			      (unsigned long long)a[i].id, a[i].score,
			      b[i].score);
	}
}
