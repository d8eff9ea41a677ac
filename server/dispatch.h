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
 * version it reports.
 */
#ifndef SRV_DISPATCH_H
#define SRV_DISPATCH_H

#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "metrics.h"
#include "topk.h"

/* Search; sampled negatives; top-n negatives (with log-probabilities). */
enum srv_op { SRV_OP_TOPK, SRV_OP_SAMPLE, SRV_OP_TOPK_LOGPROB };

struct srv_job {
	/* In: */
	enum srv_op op;
	enum fresh_scoring scoring;
	const float *q;  /* b x dim */
	size_t b, k;
	const uint64_t *const *excl; /* b lists of ids, or NULL */
	const size_t *excl_n;
	float temperature;  /* SRV_OP_SAMPLE */
	uint64_t seed;      /* SRV_OP_SAMPLE */
	/* Out (owned by the job's submitter): */
	struct fresh_hit *hits; /* b x k */
	size_t *counts;         /* b */
	float *logprob;         /* b x k, SRV_OP_SAMPLE */
	uint64_t version;
	enum fresh_status status;
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
 * Scores job and waits for it. The job's out fields are filled; returns
 * its status (FRESH_BUSY when the queue is full, FRESH_NOT_READY when
 * corrected scoring is not available yet).
 */
enum fresh_status srv_dispatch_run(struct srv_dispatch *d,
				   struct srv_job *job);

struct srv_dispatch_stats *srv_dispatch_stats(struct srv_dispatch *d);

#endif
