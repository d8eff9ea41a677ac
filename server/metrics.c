/*
 * metrics.c - histograms and the text buffer /metrics is built in.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const double srv_latency_bounds[SRV_HIST_BUCKETS] = {
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
	0.2,	0.5,   1.0,   2.0,   5.0,  10.0, 30.0, 60.0};
const double srv_batch_bounds[SRV_HIST_BUCKETS] = {
	1,   2,	  4,	8,    16,   32,	  64,	 128,
	256, 512, 1024, 2048, 4096, 8192, 16384, 65536};

void srv_hist_init(struct srv_hist *h, const double *bounds)
{
	h->bounds = bounds;
	for (int i = 0; i <= SRV_HIST_BUCKETS; i++)
		atomic_init(&h->counts[i], 0);
	atomic_init(&h->sum_micro, 0);
}

void srv_hist_observe(struct srv_hist *h, double v)
{
	int i = 0;

	while (i < SRV_HIST_BUCKETS && v > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_micro,
				  (unsigned long long)(v * 1e6 + 0.5),
				  memory_order_relaxed);
}

void srv_hist_render(struct srv_buf *b, const char *name, const char *labels,
		     const struct srv_hist *h)
{
	unsigned long long cum = 0;
	const char *sep = labels[0] ? "," : "";

	for (int i = 0; i <= SRV_HIST_BUCKETS; i++) {
		cum += atomic_load_explicit(&h->counts[i],
					    memory_order_relaxed);
		if (i < SRV_HIST_BUCKETS)
			srv_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n",
				       name, labels, sep, h->bounds[i], cum);
		else
			srv_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n",
				       name, labels, sep, cum);
	}
	srv_buf_printf(b, "%s_sum%s%s%s %.6f\n", name, labels[0] ? "{" : "",
		       labels, labels[0] ? "}" : "",
		       (double)atomic_load_explicit(&h->sum_micro,
						    memory_order_relaxed) /
			       1e6);
	srv_buf_printf(b, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "",
		       labels, labels[0] ? "}" : "", cum);
}

/* Resident set size in bytes, from /proc. */
long long srv_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long long pages = 0, resident = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%lld %lld", &pages, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * sysconf(_SC_PAGESIZE);
}
