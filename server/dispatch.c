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

static void finish(struct srv_job *jobs)
{
	while (jobs) {
		struct srv_job *next = jobs->next;
		sem_post(&jobs->done);
		jobs = next;
	}
}

/* Scores a batch of compatible jobs with one pass, then wakes them. */
static void execute(struct srv_dispatch *d, struct srv_job *jobs)
{
	struct fresh_request **reqs;
	size_t n = 0, scored;

	for (struct srv_job *j = jobs; j; j = j->next)
		n++;
	reqs = malloc(n * sizeof *reqs);
	if (!reqs) {
		for (struct srv_job *j = jobs; j; j = j->next)
			j->req.status = FRESH_NOMEM;
		finish(jobs);
		return;
	}
	n = 0;
	for (struct srv_job *j = jobs; j; j = j->next)
		reqs[n++] = &j->req;
	scored = fresh_engine_score(d->engine, reqs, n);
	free(reqs);
	if (scored) {
		atomic_fetch_add(&d->stats.batches, 1);
		atomic_fetch_add(&d->stats.queries, scored);
		srv_hist_observe(&d->stats.batch_size, (double)scored);
	}
	finish(jobs);
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
				    (j->req.op == first->req.op &&
				     j->req.scoring == first->req.scoring &&
				     total + j->req.b <= d->max_batch);
			if (!fits) {
				pp = &j->next;
				continue;
			}
			*pp = j->next;
			j->next = NULL;
			*tail = j;
			tail = &j->next;
			total += j->req.b;
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
	job->req.status = FRESH_OK;
	if (sem_init(&job->done, 0, 0) != 0)
		return FRESH_NOMEM;
	pthread_mutex_lock(&d->mu);
	if (d->stopping) {
		pthread_mutex_unlock(&d->mu);
		sem_destroy(&job->done);
		return FRESH_CANCELLED;
	}
	if (d->queued > 0 && d->queued + job->req.b > d->max_queue) {
		pthread_mutex_unlock(&d->mu);
		sem_destroy(&job->done);
		return FRESH_BUSY;
	}
	if (d->tail)
		d->tail->next = job;
	else
		d->head = job;
	d->tail = job;
	d->queued += job->req.b;
	atomic_store(&d->stats.queued, d->queued);
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	while (sem_wait(&job->done) != 0 && errno == EINTR)
		;
	sem_destroy(&job->done);
	return job->req.status;
}

struct srv_dispatch_stats *srv_dispatch_stats(struct srv_dispatch *d)
{
	return &d->stats;
}
