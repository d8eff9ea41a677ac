/*
 * metrics.h - Prometheus counters and histograms, lock-free (relaxed
 * atomics): requests by endpoint and status, latency by endpoint, search
 * batch sizes. The gauges that describe the engine are read when
 * /metrics is scraped (api_info.c).
 */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SRV_HIST_BUCKETS 16

struct srv_hist {
	const double *bounds; /* SRV_HIST_BUCKETS upper bounds, ascending */
	atomic_ullong counts[SRV_HIST_BUCKETS + 1]; /* last: +Inf */
	atomic_ullong sum_micro; /* sum of observations x 1e6 */
};

void srv_hist_init(struct srv_hist *h, const double *bounds);
void srv_hist_observe(struct srv_hist *h, double v);

/* Appends the histogram in text format to b. */
void srv_hist_render(struct srv_buf *b, const char *name, const char *labels,
		     const struct srv_hist *h);

/* The latency buckets (seconds) and batch-size buckets used by freshd. */
extern const double srv_latency_bounds[SRV_HIST_BUCKETS];
extern const double srv_batch_bounds[SRV_HIST_BUCKETS];

/* The process's resident set size in bytes, from /proc (0 if unknown). */
long long srv_rss_bytes(void);

#endif
