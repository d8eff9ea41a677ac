/*
 * dispatch.h - the micro-batching dispatcher: concurrent search and
 * negative-sampling requests are scored together, in one pass over the
 * index, by one thread that owns the search pool.
 *
 * Policy: no timer. The dispatcher runs batches back to back; a batch
 * takes every queued job compatible with the oldest one (same scoring,
 * same operation) up to a maximum number of queries. At low load a job
 * runs at once (no added latency); under load, jobs that arrive while a
 * batch is being scored form the next one, so the batch grows with the
 * load, which is what a memory-bound scan rewards (DESIGN.md). A request
 * is never split: all its queries are scored by the same model, whose
 * version it reports. The dispatcher owns the queue and its thread only;
 * what a batch does is the engine's (fresh_engine_score).
 */
#ifndef SRV_DISPATCH_H
#define SRV_DISPATCH_H

#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "metrics.h"

/* A request queued for scoring (the scoring itself is core/batch.c). */
struct srv_job {
	struct fresh_request req; /* in and out fields: batch.h */
	bool detail; /* also keys and log Z (a coordinator's merge) */
	/* Internal. */
	sem_t done;
	struct srv_job *next;
};

struct srv_dispatch_stats {
	atomic_ullong batches, queries;
	atomic_ullong queued; /* queries waiting now */
	struct srv_hist batch_size;
};

struct srv_dispatch;

/* max_batch: queries a batch gathers; max_queue: queued queries before
 * submissions are refused (FRESH_BUSY). */
enum fresh_status srv_dispatch_start(struct fresh_engine *engine,
				     size_t max_batch, size_t max_queue,
				     struct srv_dispatch **out);
/* Finishes queued jobs, then stops the thread. */
void srv_dispatch_stop(struct srv_dispatch *d);

/*
 * Scores job->req and waits for it. The request's out fields are filled;
 * returns its status (FRESH_BUSY when the queue is full, FRESH_CANCELLED
 * when stopping, else the request's status from fresh_engine_score).
 */
enum fresh_status srv_dispatch_run(struct srv_dispatch *d, struct srv_job *job);

struct srv_dispatch_stats *srv_dispatch_stats(struct srv_dispatch *d);

#endif
