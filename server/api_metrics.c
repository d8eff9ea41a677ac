/*
 * api_metrics.c - GET /metrics in Prometheus' text format, from the
 * histograms and counters of metrics.c, the engine and the dispatcher.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"
#include "server.h"

void srv_route_metrics(struct srv_server *srv, struct srv_buf *b)
{
	srv_buf_printf(b, "# HELP freshd_http_requests_total HTTP requests "
			  "answered, by endpoint and status code.\n"
			  "# TYPE freshd_http_requests_total counter\n");
	for (int i = 0; i < SRV_ROUTE_COUNT; i++)
		for (int c = 0; c < SRV_CODES && srv_counted_codes[c]; c++) {
			unsigned long long v =
				atomic_load_explicit(&srv->routes[i].by_code[c],
						     memory_order_relaxed);
			if (v)
				srv_buf_printf(b,
					       "freshd_http_requests_total{"
					       "endpoint=\"%s\",code=\"%d\"} "
					       "%llu\n",
					       srv_route_names[i],
					       srv_counted_codes[c], v);
		}
	srv_buf_printf(b, "# HELP freshd_http_request_duration_seconds Time "
			  "from request headers to reply, by endpoint.\n"
			  "# TYPE freshd_http_request_duration_seconds "
			  "histogram\n");
	for (int i = 0; i < SRV_ROUTE_COUNT; i++) {
		char labels[64];
		snprintf(labels, sizeof labels, "endpoint=\"%s\"",
			 srv_route_names[i]);
		srv_hist_render(b, "freshd_http_request_duration_seconds",
				labels, &srv->routes[i].latency);
	}
	srv_buf_printf(b, "# HELP freshd_http_requests_in_progress Requests "
			  "being handled (a refit?wait=true waits here), by "
			  "endpoint.\n"
			  "# TYPE freshd_http_requests_in_progress gauge\n");
	for (int i = 0; i < SRV_ROUTE_COUNT; i++)
		srv_buf_printf(
			b,
			"freshd_http_requests_in_progress{endpoint=\"%s\"}"
			" %llu\n",
			srv_route_names[i],
			(unsigned long long)atomic_load(
				&srv->routes[i].in_handler));
}

void srv_api_metrics(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	struct srv_dispatch_stats *ds = srv_dispatch_stats(srv->dispatch);
	struct fresh_engine_status st;
	struct fresh_engine_info info;
	struct srv_buf b = SRV_BUF_INIT;
	size_t extra, index_bytes;

	fresh_engine_info(srv->engine, &info);
	extra = info.extra_bytes;
	index_bytes = info.index_bytes;
	fresh_engine_status(srv->engine, &st);
	srv_route_metrics(srv, &b);
	srv_buf_printf(&b, "# HELP freshd_search_batch_size Queries scored "
			   "together in one pass.\n"
			   "# TYPE freshd_search_batch_size histogram\n");
	srv_hist_render(&b, "freshd_search_batch_size", "", &ds->batch_size);
	srv_buf_printf(
		&b,
		"# HELP freshd_search_queue_depth Queries waiting to be "
		"scored.\n"
		"# TYPE freshd_search_queue_depth gauge\n"
		"freshd_search_queue_depth %llu\n"
		"# HELP freshd_search_queries_total Queries scored.\n"
		"# TYPE freshd_search_queries_total counter\n"
		"freshd_search_queries_total %llu\n"
		"# HELP freshd_corrector_version Version of the published "
		"corrector.\n"
		"# TYPE freshd_corrector_version gauge\n"
		"freshd_corrector_version %" PRIu64 "\n"
		"# HELP freshd_refits_total Refits finished, by result.\n"
		"# TYPE freshd_refits_total counter\n"
		"freshd_refits_total{result=\"accepted\"} %" PRIu64 "\n"
		"freshd_refits_total{result=\"rejected\"} %" PRIu64 "\n"
		"freshd_refits_total{result=\"failed\"} %" PRIu64 "\n"
		"# HELP freshd_refits_started_total Refits started.\n"
		"# TYPE freshd_refits_started_total counter\n"
		"freshd_refits_started_total %" PRIu64 "\n"
		"# HELP freshd_refit_duration_seconds_total Time spent in "
		"refits.\n"
		"# TYPE freshd_refit_duration_seconds_total counter\n"
		"freshd_refit_duration_seconds_total %.3f\n"
		"# HELP freshd_refit_in_progress Whether a refit runs (1 "
		"training, 2 materializing).\n"
		"# TYPE freshd_refit_in_progress gauge\n"
		"freshd_refit_in_progress %d\n",
		atomic_load(&ds->queued), atomic_load(&ds->queries), st.version,
		st.refits_accepted, st.refits_rejected, st.refits_failed,
		st.refits_started, st.refit_seconds_total, (int)st.state);
	if (st.have_holdout) {
		srv_buf_printf(&b,
			       "# HELP freshd_holdout_mse Held-out mean "
			       "squared error of the published corrector "
			       "and of the stale embeddings.\n"
			       "# TYPE freshd_holdout_mse gauge\n"
			       "freshd_holdout_mse{embedding=\"corrected\"} "
			       "%.9g\n",
			       st.holdout.corrected_mse);
		if (st.holdout.stale_defined)
			srv_buf_printf(
				&b,
				"freshd_holdout_mse{embedding=\"stale\"} "
				"%.9g\n",
				st.holdout.stale_mse);
	}
	srv_buf_printf(
		&b,
		"# HELP freshd_pairs_buffered Targets with a fresh pair held.\n"
		"# TYPE freshd_pairs_buffered gauge\n"
		"freshd_pairs_buffered %zu\n"
		"# HELP freshd_fresh_rows_served Targets scored by their fresh "
		"row, not h(s) (--serve-fresh-rows).\n"
		"# TYPE freshd_fresh_rows_served gauge\n"
		"freshd_fresh_rows_served %zu\n"
		"# HELP freshd_pairs_total Fresh pairs accepted in this data "
		"dir.\n"
		"# TYPE freshd_pairs_total counter\n"
		"freshd_pairs_total %" PRIu64 "\n"
		"# HELP freshd_update_log_bytes Bytes in the update log.\n"
		"# TYPE freshd_update_log_bytes gauge\n"
		"freshd_update_log_bytes %" PRIu64 "\n"
		"# HELP freshd_update_log_syncs_total fdatasync calls on the "
		"update log.\n"
		"# TYPE freshd_update_log_syncs_total counter\n"
		"freshd_update_log_syncs_total %" PRIu64 "\n"
		"# HELP freshd_update_log_sync_seconds_total Time spent in "
		"fdatasync.\n"
		"# TYPE freshd_update_log_sync_seconds_total counter\n"
		"freshd_update_log_sync_seconds_total %.6f\n"
		"# HELP freshd_update_log_failures_total Failed writes and "
		"syncs of the update log.\n"
		"# TYPE freshd_update_log_failures_total counter\n"
		"freshd_update_log_failures_total %" PRIu64 "\n"
		"# HELP freshd_update_log_writable Whether updates are "
		"accepted.\n"
		"# TYPE freshd_update_log_writable gauge\n"
		"freshd_update_log_writable %d\n"
		"# HELP freshd_index_targets Targets in the index.\n"
		"# TYPE freshd_index_targets gauge\n"
		"freshd_index_targets %zu\n"
		"# HELP freshd_index_bytes Bytes of stale embeddings.\n"
		"# TYPE freshd_index_bytes gauge\n"
		"freshd_index_bytes %zu\n"
		"# HELP freshd_corrected_bytes Bytes of the corrected matrix "
		"and norms.\n"
		"# TYPE freshd_corrected_bytes gauge\n"
		"freshd_corrected_bytes %zu\n"
		"# HELP freshd_resident_memory_bytes Resident set size.\n"
		"# TYPE freshd_resident_memory_bytes gauge\n"
		"freshd_resident_memory_bytes %lld\n",
		st.pairs_buffered, st.fresh_rows, st.pairs_total, st.log_bytes,
		st.wal.syncs, st.wal.sync_seconds,
		st.wal.sync_failures + st.wal.write_failures,
		st.writable ? 1 : 0, info.targets, index_bytes, extra,
		srv_rss_bytes());
	srv_buf_printf(&b,
		       "# HELP freshd_rescored_rows_total Rows scored again "
		       "in float32 after a bf16 scan (--store bf16).\n"
		       "# TYPE freshd_rescored_rows_total counter\n"
		       "freshd_rescored_rows_total %llu\n",
		       info.rescored_rows);
	if (b.failed || !b.data) {
		struct srv_error e;
		free(b.data);
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8",
		       b.data, b.len);
	free(b.data);
}
