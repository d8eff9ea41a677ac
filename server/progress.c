/*
 * progress.c - the progress logger (see progress.h). It only reads the
 * engine's status, so it cannot slow the work it reports on.
 */
#include "progress.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

struct srv_progress {
	struct fresh_engine *engine;
	double every;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *run(void *arg)
{
	struct srv_progress *p = arg;
	enum fresh_refit_state last = FRESH_REFIT_IDLE;
	double since = 0, logged = 0;
	size_t done0 = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		struct fresh_engine_status st;
		struct timespec ts;
		double t = now();

		pthread_mutex_unlock(&p->mu);
		fresh_engine_status(p->engine, &st);
		if (st.state != last) {
			last = st.state;
			since = logged = t;
			done0 = st.progress_done;
		} else if (st.state != FRESH_REFIT_IDLE &&
			   t - logged >= p->every) {
			const char *unit = st.state == FRESH_REFIT_TRAINING
						   ? "epochs"
						   : "rows";
			double rate = (double)(st.progress_done - done0) /
				      (t - since > 0 ? t - since : 1);
			double eta = rate > 0 ? (double)(st.progress_total -
							 st.progress_done) /
							rate
					      : -1;
			srv_log(SRV_INFO,
				"refit %s: %zu/%zu %s (%.0f%%), %.0f %s/s, ETA "
				"%.0fs",
				fresh_refit_state_name(st.state),
				st.progress_done, st.progress_total, unit,
				100.0 * st.progress, rate, unit, eta);
			logged = t;
		}
		pthread_mutex_lock(&p->mu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!p->stopping)
			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct srv_progress *srv_progress_start(struct fresh_engine *e,
					double every_seconds)
{
	struct srv_progress *p = calloc(1, sizeof *p);

	if (!p)
		return NULL;
	p->engine = e;
	p->every = every_seconds;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->thread, NULL, run, p) != 0) {
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
		free(p);
		return NULL;
	}
	return p;
}

void srv_progress_stop(struct srv_progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}
