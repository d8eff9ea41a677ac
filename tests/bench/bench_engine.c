/*
 * bench_engine.c - times the core's exact top-k against the machine's
 * limits, measured in the same run.
 *
 * Usage: bench_engine [--index FILE.npy] [--queries FILE.npy] [--n N]
 *                     [--d D] [--b B[,B...]] [--k K] [--reps R]
 *                     [--sample] [--store f32|bf16]
 * Prints one JSON object a line: the read bandwidth (2 threads), the sgemm
 * throughput at the scoring shape, and for every B the median seconds of a
 * batched search and the roofline bound max(4Nd/BW, 2BNd/P); with
 * --sample also the median seconds of drawing k negatives per query by
 * Gumbel-top-k at the same shape, and its ratio to the search. With
 * --store bf16 the search scans the bf16 copy and rescores its candidates
 * (index.h); each line then also gives the rows rescored a query, and the
 * load line the seconds to load and the peak resident set.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "blas.h"
#include "index.h"
#include "mem.h"
#include "pool.h"
#include "sample.h"
#include "topk.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t rng_state = 42;
static float frand(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

struct sum_job {
	const float *x;
	size_t n_per_task, total;
	double partial[64];
};

static void sum_task(void *arg, size_t task, size_t worker)
{
	struct sum_job *j = arg;
	size_t a = task * j->n_per_task, b = a + j->n_per_task;
	float acc[16] = {0};

	(void)worker;
	if (b > j->total)
		b = j->total;
	for (size_t i = a; i + 16 <= b; i += 16)
		for (int t = 0; t < 16; t++)
			acc[t] += j->x[i + t];
	for (int t = 1; t < 16; t++)
		acc[0] += acc[t];
	j->partial[task] = acc[0];
}

/* Bytes per second of a 2-thread sequential read of x. */
static double read_bandwidth(struct fresh_pool *pool, const float *x,
			     size_t count, int reps)
{
	double t[16];
	struct sum_job j;
	size_t tasks = 16;

	j.x = x;
	j.total = count;
	j.n_per_task = (count + tasks - 1) / tasks;
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		fresh_pool_run(pool, tasks, sum_task, &j);
		t[r] = now() - t0;
	}
	return (double)count * 4 / median(t, (size_t)reps);
}

struct gemm_job {
	const float *q, *x;
	float *c;
	size_t b, rows, d, rows_per_task;
};

static void gemm_task(void *arg, size_t task, size_t worker)
{
	struct gemm_job *j = arg;
	size_t r0 = task * j->rows_per_task;

	(void)worker;
	fresh_sgemm(false, true, j->b, j->rows_per_task, j->d, 1.0f, j->q, j->d,
		    j->x + r0 * j->d, j->d, 0.0f,
		    j->c + task * j->b * j->rows_per_task, j->rows_per_task);
}

/* Flop/s of 2-thread sgemm at the scoring shape (B x d) x (d x rows). */
static double gemm_throughput(struct fresh_pool *pool, const float *q,
			      const float *x, size_t n, size_t b, size_t d,
			      int reps)
{
	size_t tasks = 8, rows = (n < 16384 ? n : 16384) / tasks * tasks;
	struct gemm_job j = {q, x, NULL, b, rows, d, rows / tasks};
	double t[16];

	j.c = fresh_alloc(b * rows, sizeof(float));
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		fresh_pool_run(pool, tasks, gemm_task, &j);
		t[r] = now() - t0;
	}
	fresh_free(j.c);
	return 2.0 * (double)b * (double)rows * (double)d /
	       median(t, (size_t)reps);
}

int main(int argc, char **argv)
{
	size_t n = 200000, d = 768, k = 10, bs[16] = {1, 8, 32, 256, 1024};
	size_t nb = 5, maxb = 0;
	int reps = 5;
	int sample = 0;
	const char *index_path = NULL;
	enum fresh_store store = FRESH_STORE_F32;
	double load_s = 0.0;
	struct rusage ru;
	struct fresh_index *idx = NULL;
	struct fresh_pool *pool;
	struct fresh_error err;
	float *x, *q;
	double bw, gflops;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--d") && i + 1 < argc)
			d = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--k") && i + 1 < argc)
			k = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sample"))
			sample = 1;
		else if (!strcmp(argv[i], "--index") && i + 1 < argc)
			index_path = argv[++i];
		else if (!strcmp(argv[i], "--store") && i + 1 < argc &&
			 fresh_store_parse(argv[i + 1], &store))
			i++;
		else if (!strcmp(argv[i], "--b") && i + 1 < argc) {
			char *s = argv[++i];
			nb = 0;
			while (*s && nb < 16) {
				bs[nb++] = strtoull(s, &s, 10);
				if (*s == ',')
					s++;
			}
		} else {
			fprintf(stderr, "bench_engine: unknown argument %s\n",
				argv[i]);
			return 2;
		}
	}
	if (reps < 1 || reps > 16)
		reps = 5;
	fresh_blas_init();
	if (fresh_pool_create(0, 0, &pool) != FRESH_OK)
		return 1;
	if (index_path) {
		double t0 = now();
		if (fresh_index_load_store(index_path, NULL, store, &idx,
					   &err) != FRESH_OK) {
			fprintf(stderr, "bench_engine: %s\n", err.msg);
			return 1;
		}
		load_s = now() - t0;
		n = fresh_index_size(idx);
		d = fresh_index_dim(idx);
		x = (float *)fresh_index_vectors(idx);
	} else {
		x = fresh_alloc(n * d, sizeof(float));
		for (size_t i = 0; i < n * d; i++)
			x[i] = frand();
		if (store == FRESH_STORE_BF16) {
			if (fresh_index_create(n, d, x, NULL, "bench", &idx,
					       &err) != FRESH_OK ||
			    fresh_index_add_bf16(idx, &err) != FRESH_OK) {
				fprintf(stderr, "bench_engine: %s\n", err.msg);
				return 1;
			}
			fresh_free(x);
			x = (float *)fresh_index_vectors(idx);
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"what\": \"load\", \"store\": \"%s\", \"n\": %zu, "
	       "\"d\": %zu, \"seconds\": %.3f, \"peak_rss_mib\": %.1f}\n",
	       fresh_store_name(store), n, d, load_s,
	       (double)ru.ru_maxrss / 1024.0);
	fflush(stdout);
	for (size_t i = 0; i < nb; i++)
		maxb = bs[i] > maxb ? bs[i] : maxb;
	if (maxb < 1024)
		maxb = 1024;
	q = fresh_alloc(maxb * d, sizeof(float));
	for (size_t i = 0; i < maxb * d; i++)
		q[i] = frand();

	/* What the scan streams: the bf16 copy (not the mapped file). */
	if (store == FRESH_STORE_BF16)
		bw = read_bandwidth(
			pool,
			(const float *)(const void *)fresh_index_bf16(idx),
			n * d / 2, reps);
	else
		bw = read_bandwidth(pool, x, n * d, reps);
	gflops = gemm_throughput(pool, q, x, n < 262144 ? n : 262144, 1024, d,
				 reps);
	printf("{\"what\": \"machine\", \"threads\": %zu, \"read_gbs\": %.2f, "
	       "\"sgemm_gflops\": %.1f}\n",
	       fresh_pool_threads(pool), bw / 1e9, gflops / 1e9);

	{
		uint64_t *ids = malloc(n * sizeof *ids);
		struct fresh_matrix mat = {
			.x = x, .n = n, .dim = d, .ids = ids};
		if (idx && store == FRESH_STORE_BF16) {
			mat.xh = fresh_index_bf16(idx);
			mat.row_norm = fresh_index_norms(idx);
			mat.max_norm = fresh_index_max_norm(idx);
		}
		for (size_t r = 0; r < n; r++)
			ids[r] = r;
		for (size_t bi = 0; bi < nb; bi++) {
			size_t b = bs[bi];
			struct fresh_queries qs = {q, b, NULL};
			struct fresh_hit *hits = malloc(b * k * sizeof *hits);
			size_t *counts = malloc(b * sizeof *counts);
			double t[16], bound;

			unsigned long long rescored0;

			fresh_topk(pool, &mat, &qs, k, NULL, hits, counts);
			rescored0 = fresh_topk_bounded_rescored();
			for (int r = 0; r < reps; r++) {
				double t0 = now();
				fresh_topk(pool, &mat, &qs, k, NULL, hits,
					   counts);
				t[r] = now() - t0;
			}
			bound = fmax((store == FRESH_STORE_BF16 ? 2.0 : 4.0) *
					     (double)n * (double)d / bw,
				     2.0 * (double)b * (double)n * (double)d /
					     gflops);
			printf("{\"what\": \"topk\", \"store\": \"%s\", "
			       "\"n\": %zu, \"d\": %zu, "
			       "\"b\": %zu, \"k\": %zu, \"seconds\": %.6f, "
			       "\"bound\": %.6f, \"ratio\": %.3f, "
			       "\"rescored_per_query\": %.1f}\n",
			       fresh_store_name(store), n, d, b, k,
			       median(t, (size_t)reps), bound,
			       median(t, (size_t)reps) / bound,
			       (double)(fresh_topk_bounded_rescored() -
					rescored0) /
				       ((double)reps * (double)b));
			fflush(stdout);
			if (sample) {
				float *temps = malloc(b * sizeof *temps);
				uint64_t *seeds = malloc(b * sizeof *seeds);
				float *lp = malloc(b * k * sizeof *lp);
				double ts[16], tk = median(t, (size_t)reps);

				for (size_t i = 0; i < b; i++) {
					temps[i] = 0.05f;
					seeds[i] = fresh_sample_seed(1, i);
				}
				for (int r = 0; r <= reps; r++) {
					double t0 = now();
					fresh_sample(pool, &mat, &qs, k, true,
						     NULL, temps, seeds, hits,
						     lp, counts);
					if (r > 0)
						ts[r - 1] = now() - t0;
				}
				printf("{\"what\": \"sample\", \"n\": %zu, "
				       "\"d\": %zu, \"b\": %zu, \"k\": %zu, "
				       "\"seconds\": %.6f, \"vs_topk\": "
				       "%.3f}\n",
				       n, d, b, k, median(ts, (size_t)reps),
				       median(ts, (size_t)reps) / tk);
				fflush(stdout);
				free(temps);
				free(seeds);
				free(lp);
			}
			free(hits);
			free(counts);
		}
		free(ids);
	}
	fresh_pool_free(pool);
	return 0;
}
