/*
 * dispatch.c - the micro-batching dispatcher (see dispatch.h).
 *
 * Threads: submitters block on their job's semaphore; one dispatcher
 * thread gathers and scores batches on the engine's search pool. mu
 * guards the queue only; scoring runs without it.
 */
#include "dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "model.h"
#include "sample.h"

struct srv_dispatch {
	struct fresh_engine *engine;
	size_t max_batch, max_queue;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct srv_job *head, *tail;
	size_t queued;
	bool stopping;
	pthread_t thread;
	struct srv_dispatch_stats stats;
};

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* Rows of the excluded ids (unknown ids exclude nothing), sorted, unique. */
static size_t exclusion_rows(const struct fresh_index *idx,
			     const uint64_t *ids, size_t n, size_t *rows)
{
	size_t m = 0, row;

	for (size_t i = 0; i < n; i++)
		if (fresh_index_find(idx, ids[i], &row))
			rows[m++] = row;
	if (m > 1) {
		size_t w = 1;
		qsort(rows, m, sizeof *rows, cmp_size);
		for (size_t i = 1; i < m; i++)
			if (rows[i] != rows[w - 1])
				rows[w++] = rows[i];
		m = w;
	}
	return m;
}

static void finish(struct srv_job *jobs, enum fresh_status st, uint64_t v)
{
	while (jobs) {
		struct srv_job *next = jobs->next;
		jobs->status = st;
		jobs->version = v;
		sem_post(&jobs->done);
		jobs = next;
	}
}

/* Scores a batch of compatible jobs with one pass. */
static void execute(struct srv_dispatch *d, struct srv_job *jobs)
{
	struct fresh_model *m = fresh_engine_acquire(d->engine);
	const struct fresh_index *idx = fresh_model_index(m);
	enum fresh_scoring scoring = jobs->scoring;
	size_t dim = fresh_model_query_dim(m, scoring), total = 0, kmax = 0;
	size_t nexcl = 0, qi = 0;
	struct fresh_exclusion *excl = NULL;
	struct fresh_hit *hits = NULL;
	size_t *counts = NULL, *rows = NULL;
	float *q = NULL, *lp = NULL;
	bool has_excl = false;
	enum fresh_status st = FRESH_OK;
	uint64_t v = fresh_model_version(m);

	if (scoring == FRESH_SCORING_CORRECTED && !fresh_model_can_correct(m)) {
		fresh_model_release(m);
		finish(jobs, FRESH_NOT_READY, v);
		return;
	}
	for (struct srv_job *j = jobs; j; j = j->next) {
		total += j->b;
		kmax = j->k > kmax ? j->k : kmax;
		if (j->excl) {
			has_excl = true;
			for (size_t i = 0; i < j->b; i++)
				nexcl += j->excl_n[i];
		}
	}
	q = jobs->next ? fresh_alloc(total, dim * sizeof(float)) : NULL;
	hits = malloc(total * kmax * sizeof *hits);
	counts = malloc(total * sizeof *counts);
	if (jobs->op != SRV_OP_TOPK)
		lp = malloc(total * kmax * sizeof *lp);
	if (has_excl) {
		excl = calloc(total, sizeof *excl);
		rows = malloc((nexcl ? nexcl : 1) * sizeof *rows);
	}
	if ((jobs->next && !q) || !hits || !counts ||
	    (jobs->op != SRV_OP_TOPK && !lp) || (has_excl && (!excl || !rows))) {
		st = FRESH_NOMEM;
		goto out;
	}
	/* Gather queries and exclusions in job order. */
	{
		size_t r = 0;
		for (struct srv_job *j = jobs; j; j = j->next) {
			if (q)
				memcpy(q + qi * dim, j->q,
				       j->b * dim * sizeof(float));
			for (size_t i = 0; j->excl && i < j->b; i++) {
				excl[qi + i].rows = rows + r;
				excl[qi + i].count = exclusion_rows(
					idx, j->excl[i], j->excl_n[i], rows + r);
				r += excl[qi + i].count;
			}
			qi += j->b;
		}
	}
	if (jobs->op == SRV_OP_TOPK) {
		st = fresh_model_search(m, fresh_engine_search_pool(d->engine),
					scoring, q ? q : jobs->q, total, kmax,
					excl, hits, counts);
	} else {
		/* Per-query temperature and seed, from each job. */
		float *temps = malloc(total * sizeof *temps);
		uint64_t *seeds = malloc(total * sizeof *seeds);
		if (!temps || !seeds) {
			st = FRESH_NOMEM;
		} else {
			size_t i = 0;
			for (struct srv_job *j = jobs; j; j = j->next)
				for (size_t t = 0; t < j->b; t++, i++) {
					temps[i] = j->temperature;
					seeds[i] = fresh_sample_seed(j->seed, t);
				}
			st = fresh_model_sample(m,
						fresh_engine_search_pool(d->engine),
						scoring, q ? q : jobs->q, total,
						kmax, jobs->op == SRV_OP_SAMPLE,
						excl, temps, seeds, hits, lp,
						counts);
		}
		free(temps);
		free(seeds);
	}
	if (st != FRESH_OK)
		goto out;
	qi = 0;
	for (struct srv_job *j = jobs; j; j = j->next) {
		for (size_t i = 0; i < j->b; i++, qi++) {
			size_t c = counts[qi] < j->k ? counts[qi] : j->k;
			j->counts[i] = c;
			memcpy(j->hits + i * j->k, hits + qi * kmax,
			       c * sizeof *hits);
			if (lp && j->logprob)
				memcpy(j->logprob + i * j->k, lp + qi * kmax,
				       c * sizeof *lp);
		}
	}
	atomic_fetch_add(&d->stats.batches, 1);
	atomic_fetch_add(&d->stats.queries, total);
	srv_hist_observe(&d->stats.batch_size, (double)total);
out:
	fresh_model_release(m);
	fresh_free(q);
	free(hits);
	free(counts);
	free(lp);
	free(excl);
	free(rows);
	finish(jobs, st, v);
}

static void *dispatch_main(void *arg)
{
	struct srv_dispatch *d = arg;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		struct srv_job *batch = NULL, **tail = &batch, **pp, *first;
		size_t total = 0;

		while (!d->head && !d->stopping)
			pthread_cond_wait(&d->cv, &d->mu);
		if (!d->head)
			break;
		first = d->head;
		for (pp = &d->head; *pp;) {
			struct srv_job *j = *pp;
			bool fits = j == first ||
				    (j->op == first->op &&
				     j->scoring == first->scoring &&
				     total + j->b <= d->max_batch);
			if (!fits) {
				pp = &j->next;
				continue;
			}
			*pp = j->next;
			j->next = NULL;
			*tail = j;
			tail = &j->next;
			total += j->b;
		}
		d->tail = NULL;
		for (struct srv_job *j = d->head; j; j = j->next)
			d->tail = j;
		d->queued -= total;
		atomic_store(&d->stats.queued, d->queued);
		pthread_mutex_unlock(&d->mu);
		execute(d, batch);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

enum fresh_status srv_dispatch_start(struct fresh_engine *engine,
				     size_t max_batch, size_t max_queue,
				     struct srv_dispatch **out)
{
	struct srv_dispatch *d = calloc(1, sizeof *d);

	if (!d)
		return FRESH_NOMEM;
	d->engine = engine;
	d->max_batch = max_batch ? max_batch : 256;
	d->max_queue = max_queue ? max_queue : 65536;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	atomic_init(&d->stats.batches, 0);
	atomic_init(&d->stats.queries, 0);
	atomic_init(&d->stats.queued, 0);
	srv_hist_init(&d->stats.batch_size, srv_batch_bounds);
	if (pthread_create(&d->thread, NULL, dispatch_main, d) != 0) {
		pthread_cond_destroy(&d->cv);
		pthread_mutex_destroy(&d->mu);
		free(d);
		return FRESH_NOMEM;
	}
	*out = d;
	return FRESH_OK;
}

void srv_dispatch_stop(struct srv_dispatch *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

enum fresh_status srv_dispatch_run(struct srv_dispatch *d, struct srv_job *job)
{
	job->next = NULL;
	job->status = FRESH_OK;
	if (sem_init(&job->done, 0, 0) != 0)
		return FRESH_NOMEM;
	pthread_mutex_lock(&d->mu);
	if (d->stopping) {
		pthread_mutex_unlock(&d->mu);
		sem_destroy(&job->done);
		return FRESH_CANCELLED;
	}
	if (d->queued > 0 && d->queued + job->b > d->max_queue) {
		pthread_mutex_unlock(&d->mu);
		sem_destroy(&job->done);
		return FRESH_BUSY;
	}
	if (d->tail)
		d->tail->next = job;
	else
		d->head = job;
	d->tail = job;
	d->queued += job->b;
	atomic_store(&d->stats.queued, d->queued);
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	while (sem_wait(&job->done) != 0 && errno == EINTR)
		;
	sem_destroy(&job->done);
	return job->status;
}

struct srv_dispatch_stats *srv_dispatch_stats(struct srv_dispatch *d)
{
	return &d->stats;
}
