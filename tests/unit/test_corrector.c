/*
 * test_corrector.c - the corrector network: forward against a naive
 * double-precision loop, backward against finite differences of that loop,
 * folding into queries, identity at start, and checkpoints (round trip,
 * every kind of damage refused).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "corrector.h"
#include "crc32c.h"
#include "mem.h"
#include "testutil.h"

/* Naive h(x) for one row, in double, from the parameter block p. */
static void naive_forward(const struct fresh_corrector_shape *s,
			  const double *p, const float *x, double *y)
{
	struct fresh_corrector_layout l = fresh_corrector_layout_of(s);
	bool residual = s->d_in == s->d_out;

	for (size_t o = 0; o < s->d_out; o++) {
		double v = residual ? x[o] : 0.0;
		if (s->kind != FRESH_CORRECTOR_NONE) {
			v += p[l.b + o];
			for (size_t i = 0; i < s->d_in; i++)
				v += p[l.a + o * s->d_in + i] * x[i];
		}
		y[o] = v;
	}
	if (s->kind != FRESH_CORRECTOR_MLP)
		return;
	for (size_t h = 0; h < s->hidden; h++) {
		double z = p[l.b1 + h], a;
		for (size_t i = 0; i < s->d_in; i++)
			z += p[l.w1 + h * s->d_in + i] * x[i];
		a = s->act == FRESH_ACT_RELU
			    ? (z > 0 ? z : 0)
			    : 0.5 * z * (1 + erf(z / sqrt(2.0)));
		for (size_t o = 0; o < s->d_out; o++)
			y[o] += p[l.w2 + o * s->hidden + h] * a;
	}
}

/* L = sum_rows sum_o r[row, o] * h(x_row)_o, in double. */
static double naive_loss(const struct fresh_corrector_shape *s, const double *p,
			 const float *x, size_t n, const float *r)
{
	double *y = malloc(s->d_out * sizeof *y), total = 0.0;

	for (size_t i = 0; i < n; i++) {
		naive_forward(s, p, x + i * s->d_in, y);
		for (size_t o = 0; o < s->d_out; o++)
			total += r[i * s->d_out + o] * y[o];
	}
	free(y);
	return total;
}

static struct fresh_corrector *random_corrector(struct fresh_corrector_shape s,
						uint64_t seed, float scale)
{
	struct fresh_corrector *c;
	struct tu_rng r = {seed};
	struct fresh_corrector_layout l = fresh_corrector_layout_of(&s);

	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	for (size_t i = 0; i < l.total; i++)
		fresh_corrector_params(c)[i] = scale * tu_normal(&r);
	return c;
}

static void check_forward(struct fresh_corrector_shape s)
{
	size_t n = 13;
	struct fresh_corrector *c = random_corrector(s, 1, 0.3f);
	struct fresh_corrector_layout l = fresh_corrector_layout_of(&s);
	struct fresh_corrector_ws ws;
	struct tu_rng r = {2};
	float *x = malloc(n * s.d_in * sizeof *x);
	float *y = malloc(n * s.d_out * sizeof *y);
	double *p = malloc((l.total + 1) * sizeof *p), *want;

	want = malloc(s.d_out * sizeof *want);
	tu_fill_normal(&r, x, n * s.d_in);
	for (size_t i = 0; i < l.total; i++)
		p[i] = fresh_corrector_params(c)[i];
	ck_assert_int_eq(fresh_corrector_ws_init(&ws, n, s.hidden), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_forward(c, x, n, y, &ws), FRESH_OK);
	for (size_t i = 0; i < n; i++) {
		naive_forward(&s, p, x + i * s.d_in, want);
		for (size_t o = 0; o < s.d_out; o++)
			ck_assert_msg(fabs(y[i * s.d_out + o] - want[o]) <
					      1e-4 * (1 + fabs(want[o])),
				      "row %zu out %zu: %g vs %g", i, o,
				      y[i * s.d_out + o], want[o]);
	}
	fresh_corrector_ws_free(&ws);
	fresh_corrector_free(c);
	free(x);
	free(y);
	free(p);
	free(want);
}

START_TEST(forward_matches_naive)
{
	struct fresh_corrector_shape shapes[] = {
		{FRESH_CORRECTOR_MLP, FRESH_ACT_RELU, 12, 12, 7},
		{FRESH_CORRECTOR_MLP, FRESH_ACT_GELU, 12, 12, 9},
		{FRESH_CORRECTOR_MLP, FRESH_ACT_GELU, 10, 6, 5},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 8, 8, 0},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 8, 11, 0},
		{FRESH_CORRECTOR_NONE, FRESH_ACT_RELU, 5, 5, 0},
	};
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
		check_forward(shapes[i]);
}
END_TEST

/*
 * fresh_corrector_apply, what is served: close to the naive loop, and a
 * row's bits the same whether it is applied alone, in a batch or at
 * another position (shards cut the index anywhere).
 */
static void check_apply(struct fresh_corrector_shape s)
{
	size_t n = 37;
	struct fresh_corrector *c = random_corrector(s, 5, 0.3f);
	struct fresh_corrector_layout l = fresh_corrector_layout_of(&s);
	struct fresh_corrector_ws ws;
	struct tu_rng r = {6};
	float *x = malloc(n * s.d_in * sizeof *x);
	float *all = malloc(n * s.d_out * sizeof *all);
	float *part = malloc(n * s.d_out * sizeof *part);
	double *p = malloc((l.total + 1) * sizeof *p), *want;

	want = malloc(s.d_out * sizeof *want);
	tu_fill_normal(&r, x, n * s.d_in);
	for (size_t i = 0; i < l.total; i++)
		p[i] = fresh_corrector_params(c)[i];
	ck_assert_int_eq(fresh_corrector_ws_init(&ws, n, s.hidden), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_apply(c, x, n, all, &ws), FRESH_OK);
	for (size_t i = 0; i < n; i++) {
		naive_forward(&s, p, x + i * s.d_in, want);
		for (size_t o = 0; o < s.d_out; o++)
			ck_assert_msg(fabs(all[i * s.d_out + o] - want[o]) <
					      1e-4 * (1 + fabs(want[o])),
				      "row %zu out %zu: %g vs %g", i, o,
				      all[i * s.d_out + o], want[o]);
	}
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(fresh_corrector_apply(c, x + i * s.d_in, 1,
						       part + i * s.d_out, &ws),
				 FRESH_OK);
	ck_assert_msg(memcmp(all, part, n * s.d_out * sizeof *all) == 0,
		      "a row alone differs from the row in a batch");
	ck_assert_int_eq(
		fresh_corrector_apply(c, x + 5 * s.d_in, 19, part, &ws),
		FRESH_OK);
	ck_assert_msg(memcmp(all + 5 * s.d_out, part,
			     19 * s.d_out * sizeof *all) == 0,
		      "rows at another position differ");
	fresh_corrector_ws_free(&ws);
	fresh_corrector_free(c);
	free(x);
	free(all);
	free(part);
	free(p);
	free(want);
}

START_TEST(apply_matches_naive_and_is_row_invariant)
{
	struct fresh_corrector_shape shapes[] = {
		{FRESH_CORRECTOR_MLP, FRESH_ACT_RELU, 40, 40, 23},
		{FRESH_CORRECTOR_MLP, FRESH_ACT_GELU, 33, 33, 17},
		{FRESH_CORRECTOR_MLP, FRESH_ACT_GELU, 20, 7, 5},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 48, 48, 0},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 8, 11, 0},
		{FRESH_CORRECTOR_NONE, FRESH_ACT_RELU, 5, 5, 0},
	};
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
		check_apply(shapes[i]);
}
END_TEST

/* Analytic gradient vs central differences of the double-precision loss. */
static void check_backward(struct fresh_corrector_shape s, unsigned mask)
{
	size_t n = 9;
	struct fresh_corrector *c = random_corrector(s, 3, 0.4f);
	struct fresh_corrector_layout l = fresh_corrector_layout_of(&s);
	struct fresh_corrector_ws ws;
	struct tu_rng r = {4};
	float *x = malloc(n * s.d_in * sizeof *x);
	float *y = malloc(n * s.d_out * sizeof *y);
	float *dy = malloc(n * s.d_out * sizeof *dy);
	float *grad = malloc(l.total * sizeof *grad);
	double *p = malloc(l.total * sizeof *p);

	tu_fill_normal(&r, x, n * s.d_in);
	tu_fill_normal(&r, dy, n * s.d_out);
	for (size_t i = 0; i < l.total; i++)
		p[i] = fresh_corrector_params(c)[i];
	ck_assert_int_eq(fresh_corrector_ws_init(&ws, n, s.hidden), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_forward(c, x, n, y, &ws), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_backward(c, x, n, dy, grad, mask, &ws),
			 FRESH_OK);
	for (size_t i = 0; i < l.total; i++) {
		bool linear = i < l.w1;
		bool bias_b = i >= l.b && i < l.w1;
		bool selected = (linear && (mask & FRESH_GRAD_LINEAR)) ||
				(!linear && (mask & FRESH_GRAD_MLP)) ||
				(bias_b && (mask & FRESH_GRAD_MLP));
		double h = 1e-5, save = p[i], fd;
		p[i] = save + h;
		fd = naive_loss(&s, p, x, n, dy);
		p[i] = save - h;
		fd -= naive_loss(&s, p, x, n, dy);
		p[i] = save;
		fd /= 2 * h;
		if (!selected) {
			ck_assert_msg(grad[i] == 0.0f,
				      "param %zu not selected but %g", i,
				      grad[i]);
			continue;
		}
		ck_assert_msg(fabs(grad[i] - fd) < 1e-3 * (1 + fabs(fd)),
			      "param %zu: analytic %g, finite difference %g", i,
			      grad[i], fd);
	}
	fresh_corrector_ws_free(&ws);
	fresh_corrector_free(c);
	free(x);
	free(y);
	free(dy);
	free(grad);
	free(p);
}

START_TEST(mlp_relu_gradients_match_finite_differences)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_RELU,
					  7, 7, 6};
	check_backward(s, FRESH_GRAD_LINEAR | FRESH_GRAD_MLP);
	check_backward(s, FRESH_GRAD_MLP);
}
END_TEST

START_TEST(mlp_gelu_gradients_match_finite_differences)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_GELU,
					  6, 6, 5};
	struct fresh_corrector_shape wide = {FRESH_CORRECTOR_MLP,
					     FRESH_ACT_GELU, 5, 8, 4};
	check_backward(s, FRESH_GRAD_LINEAR | FRESH_GRAD_MLP);
	check_backward(wide, FRESH_GRAD_LINEAR | FRESH_GRAD_MLP);
}
END_TEST

START_TEST(affine_gradients_match_finite_differences)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_AFFINE,
					  FRESH_ACT_RELU, 6, 6, 0};
	struct fresh_corrector_shape wide = {FRESH_CORRECTOR_AFFINE,
					     FRESH_ACT_RELU, 4, 7, 0};
	check_backward(s, FRESH_GRAD_LINEAR);
	check_backward(wide, FRESH_GRAD_LINEAR);
}
END_TEST

START_TEST(new_corrector_is_identity)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_RELU,
					  16, 16, 32};
	struct fresh_corrector *c;
	struct fresh_corrector_ws ws;
	struct tu_rng r = {5};
	float x[4 * 16], y[4 * 16];

	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	ck_assert(fresh_corrector_is_identity(c));
	/* Any W1 still gives the identity while W2 and b are zero. */
	{
		struct fresh_corrector_layout l = fresh_corrector_layout(c);
		for (size_t i = l.w1; i < l.w2; i++)
			fresh_corrector_params(c)[i] = tu_normal(&r);
	}
	ck_assert(fresh_corrector_is_identity(c));
	tu_fill_normal(&r, x, sizeof x / sizeof *x);
	ck_assert_int_eq(fresh_corrector_ws_init(&ws, 4, 32), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_forward(c, x, 4, y, &ws), FRESH_OK);
	ck_assert_mem_eq(x, y, sizeof x);
	fresh_corrector_params(c)[fresh_corrector_layout(c).w2] = 0.5f;
	ck_assert(!fresh_corrector_is_identity(c));
	fresh_corrector_ws_free(&ws);
	fresh_corrector_free(c);
}
END_TEST

START_TEST(fold_equals_scoring_corrected_vectors)
{
	struct fresh_corrector_shape shapes[] = {
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 9, 9, 0},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 9, 5, 0},
	};
	for (size_t k = 0; k < 2; k++) {
		struct fresh_corrector_shape s = shapes[k];
		struct fresh_corrector *c = random_corrector(s, 6 + k, 0.5f);
		struct tu_rng r = {8};
		float x[9], q[3 * 9], hx[9], q2[3 * 9], off[3];

		tu_fill_normal(&r, x, s.d_in);
		tu_fill_normal(&r, q, 3 * s.d_out);
		ck_assert_int_eq(fresh_corrector_forward(c, x, 1, hx, NULL),
				 FRESH_OK);
		float *rows = NULL;
		ck_assert_int_eq(fresh_corrector_fold_rows(c, &rows), FRESH_OK);
		ck_assert_int_eq(fresh_corrector_fold(c, rows, q, 3, q2, off),
				 FRESH_OK);
		fresh_free(rows);
		for (size_t i = 0; i < 3; i++) {
			double direct = 0.0, folded = off[i];
			for (size_t o = 0; o < s.d_out; o++)
				direct += (double)q[i * s.d_out + o] * hx[o];
			for (size_t j = 0; j < s.d_in; j++)
				folded += (double)q2[i * s.d_in + j] * x[j];
			ck_assert_msg(fabs(direct - folded) <
					      1e-4 * (1 + fabs(direct)),
				      "%g vs %g", direct, folded);
		}
		fresh_corrector_free(c);
	}
}
END_TEST

START_TEST(refuses_bad_shapes)
{
	struct fresh_corrector_shape bad[] = {
		{FRESH_CORRECTOR_NONE, FRESH_ACT_RELU, 4, 5, 0},
		{FRESH_CORRECTOR_MLP, FRESH_ACT_RELU, 4, 4, 0},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 4, 4, 3},
		{FRESH_CORRECTOR_AFFINE, FRESH_ACT_RELU, 0, 4, 0},
		{(enum fresh_corrector_kind)7, FRESH_ACT_RELU, 4, 4, 0},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct fresh_corrector *c = NULL;
		struct fresh_error err;
		ck_assert_int_eq(fresh_corrector_create(&bad[i], &c, &err),
				 FRESH_INVALID);
		ck_assert_ptr_null(c);
	}
}
END_TEST

static char dir[4096];
static void setup(void)
{
	tu_tmpdir(dir, sizeof dir);
}
static void teardown(void)
{
	tu_rmdir(dir);
}

START_TEST(checkpoint_round_trip)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_GELU,
					  8, 8, 4};
	struct fresh_corrector *c = random_corrector(s, 9, 1.0f), *d;
	char path[4200];

	struct fresh_holdout ho = {321, true, 1.5, 0.25, 0.9, 0.125}, got;

	fresh_corrector_set_version(c, 17);
	fresh_corrector_set_trained_through(c, 12345);
	fresh_corrector_set_normalize(c, true);
	ck_assert(!fresh_corrector_holdout(c, &got));
	fresh_corrector_set_holdout(c, &ho);
	tu_path(path, sizeof path, dir, "c.ckpt");
	ck_assert_int_eq(fresh_corrector_save(c, path, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_load(path, &d, NULL), FRESH_OK);
	ck_assert_uint_eq(fresh_corrector_version(d), 17);
	ck_assert_uint_eq(fresh_corrector_trained_through(d), 12345);
	ck_assert(fresh_corrector_normalize(d));
	ck_assert_int_eq(fresh_corrector_shape(d)->kind, FRESH_CORRECTOR_MLP);
	ck_assert_int_eq(fresh_corrector_shape(d)->act, FRESH_ACT_GELU);
	ck_assert_uint_eq(fresh_corrector_shape(d)->hidden, 4);
	ck_assert(fresh_corrector_holdout(d, &got));
	ck_assert_uint_eq(got.n, 321);
	ck_assert(got.stale_defined);
	ck_assert_double_eq(got.stale_mse, 1.5);
	ck_assert_double_eq(got.corrected_rel_err, 0.125);
	ck_assert_mem_eq(fresh_corrector_params(c), fresh_corrector_params(d),
			 fresh_corrector_layout(c).total * sizeof(float));
	fresh_corrector_free(c);
	fresh_corrector_free(d);
}
END_TEST

/*
 * A checkpoint file has the bytes fresh_corrector_serialize gives, with
 * more fresh rows than one block of ids (they are written in blocks).
 */
START_TEST(checkpoint_file_is_the_serialized_bytes)
{
	enum { NF = 1300, D = 5 };
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_RELU,
					  D, D, 3};
	struct fresh_corrector *c = random_corrector(s, 13, 1.0f), *d;
	struct fresh_holdout ho = {77, false, 0.0, 0.5, 0.0, 0.25};
	uint64_t *ids = malloc(NF * sizeof *ids);
	float *rows = malloc(NF * D * sizeof *rows);
	const uint64_t *got_ids;
	const float *got_rows;
	struct tu_rng r = {78};
	char path[4200];
	unsigned char *file;
	void *raw;
	size_t len;
	FILE *fp;

	tu_fill_normal(&r, rows, NF * D);
	for (size_t i = 0; i < NF; i++)
		ids[i] = (uint64_t)(NF - i) * 1000003u +
			 (i % 7); /* descending */
	ck_assert_int_eq(fresh_corrector_set_fresh_rows(c, ids, rows, NF),
			 FRESH_OK);
	fresh_corrector_set_holdout(c, &ho);
	fresh_corrector_set_version(c, 5);
	tu_path(path, sizeof path, dir, "rows.ckpt");
	ck_assert_int_eq(fresh_corrector_save(c, path, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_serialize(c, &raw, &len), FRESH_OK);
	file = malloc(len + 1);
	fp = fopen(path, "rb");
	ck_assert_ptr_nonnull(fp);
	ck_assert_uint_eq(fread(file, 1, len + 1, fp), len);
	fclose(fp);
	ck_assert_mem_eq(file, raw, len);
	ck_assert_int_eq(fresh_corrector_load(path, &d, NULL), FRESH_OK);
	ck_assert_uint_eq(fresh_corrector_fresh_rows(d, &got_ids, &got_rows),
			  NF);
	for (size_t i = 0; i < NF; i++) { /* ascending: ids[NF - 1 - i] */
		ck_assert_uint_eq(got_ids[i], ids[NF - 1 - i]);
		ck_assert_mem_eq(got_rows + i * D, rows + (NF - 1 - i) * D,
				 D * sizeof(float));
	}
	fresh_corrector_free(d);
	fresh_corrector_free(c);
	free(file);
	free(raw);
	free(ids);
	free(rows);
}
END_TEST

START_TEST(checkpoint_damage_is_refused)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_AFFINE,
					  FRESH_ACT_RELU, 4, 4, 0};
	struct fresh_corrector *c = random_corrector(s, 10, 1.0f), *d = NULL;
	struct fresh_error err;
	unsigned char *buf;
	void *raw;
	size_t len;

	ck_assert_int_eq(fresh_corrector_serialize(c, &raw, &len), FRESH_OK);
	buf = raw;
	/* Every single-bit flip is caught (by the CRC or the magic). */
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0x10;
		ck_assert_int_ne(
			fresh_corrector_deserialize(buf, len, &d, &err),
			FRESH_OK);
		ck_assert_ptr_null(d);
		buf[i] ^= 0x10;
	}
	/* Every truncation is refused. */
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_ne(
			fresh_corrector_deserialize(buf, cut, &d, &err),
			FRESH_OK);
	/* A consistent CRC over an inconsistent header is still refused. */
	{
		uint64_t hidden = 5;
		uint32_t crc;
		memcpy(buf + 40, &hidden, 8);
		crc = fresh_crc32c(0, buf, len - 4);
		memcpy(buf + len - 4, &crc, 4);
		ck_assert_int_eq(
			fresh_corrector_deserialize(buf, len, &d, &err),
			FRESH_FORMAT);
		ck_assert(strstr(err.msg, "hidden") != NULL);
	}
	/* A non-finite parameter with a valid CRC. */
	{
		uint64_t zero = 0;
		float inf = INFINITY;
		uint32_t crc;
		memcpy(buf + 40, &zero, 8);
		memcpy(buf + 72 + 4, &inf, 4);
		crc = fresh_crc32c(0, buf, len - 4);
		memcpy(buf + len - 4, &crc, 4);
		ck_assert_int_eq(
			fresh_corrector_deserialize(buf, len, &d, &err),
			FRESH_FORMAT);
		ck_assert(strstr(err.msg, "not finite") != NULL);
	}
	free(raw);
	fresh_corrector_free(c);
}
END_TEST

/*
 * Fresh rows travel with the corrector: kept sorted by id, through a clone
 * and a checkpoint (format 2); a corrector without them keeps format 1's
 * bytes; ids out of order, or fresh rows on an affine corrector, are
 * refused even under a valid checksum.
 */
START_TEST(checkpoint_carries_fresh_rows)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_RELU,
					  6, 6, 4};
	struct fresh_corrector *c = random_corrector(s, 12, 1.0f), *d, *e;
	const uint64_t in_ids[3] = {900, 7, 41}, *ids;
	float rows[18];
	const float *got;
	struct tu_rng r = {77};
	struct fresh_error err;
	unsigned char *b;
	void *raw;
	size_t len, plain_len;
	uint32_t crc;

	tu_fill_normal(&r, rows, 18);
	ck_assert_int_eq(fresh_corrector_serialize(c, &raw, &plain_len),
			 FRESH_OK);
	ck_assert_uint_eq(((unsigned char *)raw)[8], 1); /* format 1 */
	free(raw);
	ck_assert_int_eq(fresh_corrector_set_fresh_rows(c, in_ids, rows, 3),
			 FRESH_OK);
	ck_assert_int_eq(fresh_corrector_clone(c, &e), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_serialize(e, &raw, &len), FRESH_OK);
	b = raw;
	ck_assert_uint_eq(b[8], 2);
	ck_assert_uint_eq(len, plain_len + 8 + 3 * (8 + 6 * 4));
	ck_assert_int_eq(fresh_corrector_deserialize(b, len, &d, &err),
			 FRESH_OK);
	ck_assert_uint_eq(fresh_corrector_fresh_rows(d, &ids, &got), 3);
	ck_assert_uint_eq(ids[0], 7);
	ck_assert_uint_eq(ids[1], 41);
	ck_assert_uint_eq(ids[2], 900);
	ck_assert_mem_eq(got, rows + 6, 6 * sizeof(float));	 /* id 7 */
	ck_assert_mem_eq(got + 6, rows + 12, 6 * sizeof(float)); /* id 41 */
	ck_assert_mem_eq(got + 12, rows, 6 * sizeof(float));	 /* id 900 */
	fresh_corrector_free(d);
	/* A row that is not finite, under a valid checksum. */
	{
		size_t at = 72 + fresh_corrector_layout(c).total * 4 + 8 + 24;
		float nan = NAN, keep;
		memcpy(&keep, b + at + 20, 4);
		memcpy(b + at + 20, &nan, 4);
		crc = fresh_crc32c(0, b, len - 4);
		memcpy(b + len - 4, &crc, 4);
		ck_assert_int_eq(fresh_corrector_deserialize(b, len, &d, &err),
				 FRESH_FORMAT);
		ck_assert(strstr(err.msg, "not finite") != NULL);
		memcpy(b + at + 20, &keep, 4);
	}
	/* Format 2 with no rows: format 2 always has some. */
	{
		unsigned char *z = malloc(plain_len + 8);
		size_t head = 72 + fresh_corrector_layout(c).total * 4;
		uint32_t two = 2;
		void *p1;
		size_t l1;
		ck_assert_int_eq(fresh_corrector_clone(c, &d), FRESH_OK);
		ck_assert_int_eq(
			fresh_corrector_set_fresh_rows(d, NULL, NULL, 0),
			FRESH_OK);
		ck_assert_int_eq(fresh_corrector_serialize(d, &p1, &l1),
				 FRESH_OK);
		fresh_corrector_free(d);
		memcpy(z, p1, head);
		memset(z + head, 0, 8);
		memcpy(z + head + 8, (unsigned char *)p1 + head, l1 - head);
		memcpy(z + 8, &two, 4);
		crc = fresh_crc32c(0, z, plain_len + 4);
		memcpy(z + plain_len + 4, &crc, 4);
		d = NULL;
		ck_assert_int_eq(
			fresh_corrector_deserialize(z, plain_len + 8, &d, &err),
			FRESH_FORMAT);
		ck_assert_ptr_null(d);
		free(p1);
		free(z);
	}
	/* One row an id. */
	{
		const uint64_t twice[2] = {5, 5};
		ck_assert_int_eq(fresh_corrector_clone(c, &d), FRESH_OK);
		ck_assert_int_eq(
			fresh_corrector_set_fresh_rows(d, twice, rows, 2),
			FRESH_INVALID);
		ck_assert_uint_eq(fresh_corrector_fresh_rows(d, NULL, NULL), 3);
		fresh_corrector_free(d);
	}
	/* Ids out of order under a valid checksum. */
	{
		size_t at = 72 + fresh_corrector_layout(c).total * 4 + 8;
		unsigned char tmp[8];
		memcpy(tmp, b + at, 8);
		memcpy(b + at, b + at + 8, 8);
		memcpy(b + at + 8, tmp, 8);
		crc = fresh_crc32c(0, b, len - 4);
		memcpy(b + len - 4, &crc, 4);
		d = NULL;
		ck_assert_int_eq(fresh_corrector_deserialize(b, len, &d, &err),
				 FRESH_FORMAT);
		ck_assert_ptr_null(d);
		ck_assert(strstr(err.msg, "ascending") != NULL);
	}
	/* A count that does not fit the bytes. */
	{
		uint64_t many = 1000;
		memcpy(b + 72 + fresh_corrector_layout(c).total * 4, &many, 8);
		crc = fresh_crc32c(0, b, len - 4);
		memcpy(b + len - 4, &crc, 4);
		ck_assert_int_eq(fresh_corrector_deserialize(b, len, &d, &err),
				 FRESH_FORMAT);
		ck_assert(strstr(err.msg, "fresh-row count") != NULL);
	}
	/* Fresh rows on an affine corrector. */
	{
		uint32_t affine = FRESH_CORRECTOR_AFFINE;
		memcpy(b + 12, &affine, 4);
		crc = fresh_crc32c(0, b, len - 4);
		memcpy(b + len - 4, &crc, 4);
		ck_assert_int_eq(fresh_corrector_deserialize(b, len, &d, &err),
				 FRESH_FORMAT);
		ck_assert(strstr(err.msg, "only mlp") != NULL);
	}
	/* Cleared: format 1 again. */
	ck_assert_int_eq(fresh_corrector_set_fresh_rows(e, NULL, NULL, 0),
			 FRESH_OK);
	free(raw);
	ck_assert_int_eq(fresh_corrector_serialize(e, &raw, &len), FRESH_OK);
	ck_assert_uint_eq(len, plain_len);
	free(raw);
	fresh_corrector_free(c);
	fresh_corrector_free(e);
}
END_TEST

START_TEST(crc32c_known_value)
{
	ck_assert_uint_eq(fresh_crc32c(0, "123456789", 9), 0xE3069283u);
	/* Incremental equals one shot. */
	ck_assert_uint_eq(fresh_crc32c(fresh_crc32c(0, "1234", 4), "56789", 5),
			  0xE3069283u);
}
END_TEST

static Suite *corrector_suite(void)
{
	Suite *s = suite_create("corrector");
	TCase *num = tcase_create("numerics");
	TCase *ckpt = tcase_create("checkpoint");

	tcase_add_test(num, forward_matches_naive);
	tcase_add_test(num, apply_matches_naive_and_is_row_invariant);
	tcase_add_test(num, mlp_relu_gradients_match_finite_differences);
	tcase_add_test(num, mlp_gelu_gradients_match_finite_differences);
	tcase_add_test(num, affine_gradients_match_finite_differences);
	tcase_add_test(num, new_corrector_is_identity);
	tcase_add_test(num, fold_equals_scoring_corrected_vectors);
	tcase_add_test(num, refuses_bad_shapes);
	tcase_add_checked_fixture(ckpt, setup, teardown);
	tcase_add_test(ckpt, checkpoint_round_trip);
	tcase_add_test(ckpt, checkpoint_damage_is_refused);
	tcase_add_test(ckpt, checkpoint_carries_fresh_rows);
	tcase_add_test(ckpt, checkpoint_file_is_the_serialized_bytes);
	tcase_add_test(ckpt, crc32c_known_value);
	suite_add_tcase(s, num);
	suite_add_tcase(s, ckpt);
	return s;
}

int main(void)
{
	return tu_run(corrector_suite());
}
