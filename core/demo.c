/*
 * demo.c - the seeded demo corpus and its drifted encoder (see demo.h).
 */
#include "demo.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "hash.h"
#include "mem.h"
#include "rows.h"

#define TOPICS 500
#define SPREAD 0.55f /* within-topic noise relative to the centre */
#define LINEAR 0.45f /* scale of A */
#define BENT 0.6f    /* scale of the tanh term */

struct fresh_demo {
	size_t n, d;
	struct fresh_index *index;
	float *a, *b; /* d x d each */
	pthread_mutex_t mu;
	float *all; /* n x d fresh embeddings, lazily */
};

static uint64_t next(uint64_t *s)
{
	*s += UINT64_C(0x9e3779b97f4a7c15);
	return fresh_mix64(*s);
}

static float normal(uint64_t *s)
{
	double u1 = fresh_unit_open(next(s)), u2 = fresh_unit_open(next(s));
	return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

enum fresh_status fresh_demo_create(size_t n, size_t d, uint64_t seed,
				    struct fresh_demo **out)
{
	struct fresh_demo *demo = calloc(1, sizeof *demo);
	float *s = NULL, *centres = NULL;
	uint64_t rng = seed;
	enum fresh_status st = FRESH_NOMEM;

	if (!demo)
		return FRESH_NOMEM;
	demo->n = n;
	demo->d = d;
	pthread_mutex_init(&demo->mu, NULL);
	s = fresh_alloc(n, d * sizeof(float));
	centres = fresh_alloc(TOPICS, d * sizeof(float));
	demo->a = fresh_alloc(d, d * sizeof(float));
	demo->b = fresh_alloc(d, d * sizeof(float));
	if (!s || !centres || !demo->a || !demo->b)
		goto out;
	for (size_t i = 0; i < TOPICS * d; i++)
		centres[i] = normal(&rng);
	for (size_t t = 0; t < TOPICS; t++)
		fresh_normalize_rows(centres + t * d, 1, d, NULL, 1);
	for (size_t r = 0; r < n; r++) {
		const float *c = centres + (next(&rng) % TOPICS) * d;
		for (size_t i = 0; i < d; i++)
			s[r * d + i] = c[i] + SPREAD * normal(&rng) /
						      sqrtf((float)d) * 1.7f;
		fresh_normalize_rows(s + r * d, 1, d, NULL, 1);
	}
	for (size_t i = 0; i < d * d; i++) {
		demo->a[i] = LINEAR * normal(&rng) / sqrtf((float)d);
		demo->b[i] = 3.0f * normal(&rng) / sqrtf((float)d);
	}
	st = fresh_index_create(n, d, s, NULL, "demo", &demo->index, NULL);
out:
	fresh_free(s);
	fresh_free(centres);
	if (st != FRESH_OK) {
		fresh_demo_free(demo);
		return st;
	}
	*out = demo;
	return FRESH_OK;
}

void fresh_demo_free(struct fresh_demo *demo)
{
	if (!demo)
		return;
	fresh_index_release(demo->index);
	fresh_free(demo->a);
	fresh_free(demo->b);
	fresh_free(demo->all);
	pthread_mutex_destroy(&demo->mu);
	free(demo);
}

struct fresh_index *fresh_demo_index(struct fresh_demo *demo)
{
	fresh_index_retain(demo->index);
	return demo->index;
}

/* y = normalize(s + A s + BENT tanh(B s)) for n contiguous rows s. */
static void drift(const struct fresh_demo *demo, const float *s, size_t n,
		  float *y, float *tmp)
{
	size_t d = demo->d;

	memcpy(y, s, n * d * sizeof(float));
	(void)fresh_sgemm(false, true, n, d, d, 1.0f, s, d, demo->a, d, 1.0f, y,
			  d);
	(void)fresh_sgemm(false, true, n, d, d, 1.0f, s, d, demo->b, d, 0.0f,
			  tmp, d);
	for (size_t i = 0; i < n * d; i++)
		y[i] += BENT * tanhf(tmp[i]);
	fresh_normalize_rows(y, n, d, NULL, 1);
}

enum fresh_status fresh_demo_fresh(const struct fresh_demo *demo,
				   const size_t *rows, size_t n, float *out)
{
	size_t d = demo->d;
	float *s = fresh_alloc(n ? n : 1, d * sizeof(float));
	float *tmp = fresh_alloc(n ? n : 1, d * sizeof(float));
	const float *x = fresh_index_vectors(demo->index);
	enum fresh_status st = FRESH_NOMEM;

	if (s && tmp) {
		for (size_t i = 0; i < n; i++)
			memcpy(s + i * d, x + rows[i] * d, d * sizeof(float));
		drift(demo, s, n, out, tmp);
		st = FRESH_OK;
	}
	fresh_free(s);
	fresh_free(tmp);
	return st;
}

const float *fresh_demo_fresh_all(struct fresh_demo *demo)
{
	pthread_mutex_lock(&demo->mu);
	if (!demo->all) {
		size_t d = demo->d, chunk = 4096;
		float *all = fresh_alloc(demo->n, d * sizeof(float));
		float *tmp = fresh_alloc(chunk, d * sizeof(float));
		if (all && tmp)
			for (size_t r = 0; r < demo->n; r += chunk) {
				size_t m = demo->n - r < chunk ? demo->n - r
							       : chunk;
				drift(demo,
				      fresh_index_vectors(demo->index) + r * d,
				      m, all + r * d, tmp);
			}
		fresh_free(tmp);
		if (all && tmp)
			demo->all = all;
		else
			fresh_free(all);
	}
	pthread_mutex_unlock(&demo->mu);
	return demo->all;
}

enum fresh_status fresh_demo_truth(struct fresh_demo *demo,
				   struct fresh_pool *pool, const float *q,
				   size_t b, size_t k, struct fresh_hit *hits,
				   size_t *counts)
{
	const float *all = fresh_demo_fresh_all(demo);
	struct fresh_index *idx = demo->index;
	struct fresh_matrix m = {.x = all,
				 .n = fresh_index_size(idx),
				 .dim = fresh_index_dim(idx),
				 .ids = fresh_index_ids(idx)};
	struct fresh_queries qs = {q, b, NULL};

	if (!all)
		return FRESH_NOMEM;
	return fresh_topk(pool, &m, &qs, k, NULL, hits, counts);
}
