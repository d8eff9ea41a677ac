/*
 * api_info.c - the read-only endpoints: probes, /metrics, /v1/info,
 * /v1/corrector, /v1/targets/{id}, /v1/corrected, and the JSON views of
 * the corrector's state they share.
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

static json_t *holdout_json(const struct fresh_holdout *h)
{
	return json_pack("{s:I,s:o,s:f,s:o,s:f}", "pairs", (json_int_t)h->n,
			 "stale_mse",
			 h->stale_defined ? json_real(h->stale_mse) : json_null(),
			 "corrected_mse", h->corrected_mse, "stale_rel_err",
			 h->stale_defined ? json_real(h->stale_rel_err)
					  : json_null(),
			 "corrected_rel_err", h->corrected_rel_err);
}

static double unix_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static json_t *iso_time(double t)
{
	char buf[40];
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

json_t *srv_refit_json(const struct fresh_refit_outcome *o)
{
	const struct fresh_refit_report *r = &o->report;
	json_t *j = json_object();

	if (!j)
		return NULL;
	json_object_set_new(j, "accepted", json_boolean(r->accepted));
	json_object_set_new(j, "version", json_integer((json_int_t)o->version));
	json_object_set_new(j, "reason",
			    r->accepted ? json_null() : json_string(r->reason));
	json_object_set_new(j, "holdout",
			    r->held_out ? holdout_json(&r->holdout) : json_null());
	json_object_set_new(j, "previous_corrected_mse",
			    r->held_out ? json_real(r->current_mse)
					: json_null());
	json_object_set_new(j, "method", json_string(r->method));
	json_object_set_new(j, "normalize", json_boolean(r->normalize));
	json_object_set_new(j, "pairs",
			    json_pack("{s:I,s:I,s:I}", "used",
				      (json_int_t)r->pairs, "train",
				      (json_int_t)r->train, "held_out",
				      (json_int_t)r->held_out));
	json_object_set_new(j, "epochs", json_integer((json_int_t)r->epochs));
	json_object_set_new(j, "steps", json_integer((json_int_t)r->steps));
	json_object_set_new(j, "ridge_lambda",
			    r->lambda > 0 ? json_real(r->lambda) : json_null());
	json_object_set_new(j, "refit_on_all_pairs",
			    json_boolean(r->refit_on_all));
	json_object_set_new(j, "duration_ms",
			    json_integer((json_int_t)((o->train_seconds +
						       o->build_seconds +
						       o->publish_seconds) *
						      1000.0)));
	json_object_set_new(
		j, "timings_ms",
		json_pack("{s:f,s:f,s:f}", "train", o->train_seconds * 1e3,
			  "materialize", o->build_seconds * 1e3, "publish",
			  o->publish_seconds * 1e3));
	json_object_set_new(j, "trained_through_seq",
			    json_integer((json_int_t)o->trained_through));
	json_object_set_new(j, "finished_at", iso_time(o->finished_at));
	return j;
}

json_t *srv_corrector_json(struct srv_server *srv)
{
	struct fresh_engine_status st;
	json_t *j;

	fresh_engine_status(srv->engine, &st);
	j = json_object();
	if (!j)
		return NULL;
	json_object_set_new(j, "version", json_integer((json_int_t)st.version));
	json_object_set_new(j, "kind",
			    json_string(fresh_corrector_kind_name(st.shape.kind)));
	json_object_set_new(j, "hidden", json_integer((json_int_t)st.shape.hidden));
	json_object_set_new(j, "activation",
			    json_string(fresh_activation_name(st.shape.act)));
	json_object_set_new(j, "dim", json_integer((json_int_t)st.shape.d_in));
	json_object_set_new(j, "fresh_dim",
			    json_integer((json_int_t)st.shape.d_out));
	json_object_set_new(j, "normalize", json_boolean(st.normalize));
	json_object_set_new(j, "state",
			    json_string(fresh_refit_state_name(st.state)));
	json_object_set_new(j, "progress", json_real(st.progress));
	json_object_set_new(j, "progress_done",
			    json_integer((json_int_t)st.progress_done));
	json_object_set_new(j, "progress_total",
			    json_integer((json_int_t)st.progress_total));
	json_object_set_new(j, "pairs",
			    json_pack("{s:I,s:I}", "buffered",
				      (json_int_t)st.pairs_buffered, "total",
				      (json_int_t)st.pairs_total));
	json_object_set_new(j, "last_seq", json_integer((json_int_t)st.last_seq));
	json_object_set_new(j, "holdout",
			    st.have_holdout ? holdout_json(&st.holdout)
					    : json_null());
	json_object_set_new(j, "last_refit",
			    st.last.valid ? srv_refit_json(&st.last)
					  : json_null());
	json_object_set_new(
		j, "refits",
		json_pack("{s:I,s:I,s:I,s:I}", "started",
			  (json_int_t)st.refits_started, "accepted",
			  (json_int_t)st.refits_accepted, "rejected",
			  (json_int_t)st.refits_rejected, "failed",
			  (json_int_t)st.refits_failed));
	json_object_set_new(j, "writable", json_boolean(st.writable));
	return j;
}

void srv_api_healthz(struct srv_request *req, struct srv_reply *r)
{
	(void)req;
	srv_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void srv_api_readyz(struct srv_request *req, struct srv_reply *r)
{
	/* The engine publishes its model before HTTP starts. */
	(void)req;
	srv_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

static long long rss_bytes(void);

/* A field of /proc/meminfo in bytes (0 when absent). */
static long long meminfo_bytes(const char *field)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t len = strlen(field);
	long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, field, len) && line[len] == ':') {
			kb = atoll(line + len + 1);
			break;
		}
	fclose(f);
	return kb * 1024;
}

/*
 * What the index and model take, and the largest index this machine could
 * serve by store and corrector kind. Bytes a row (d stale, f fresh):
 * ids and their table 16; f32 rows 4d; bf16 rows 2d and a norm bound 4
 * (the float32 rows stay in the file, in the page cache); an affine
 * corrector adds a norm 4 (folded into the query, no corrected copy); an
 * mlp the corrected matrix 4f, twice while a refit swaps it in. The
 * budget is the machine's memory less 1 GiB for everything else.
 */
static json_t *memory_json(struct srv_server *srv,
			   const struct fresh_engine_info *info)
{
	long long total = meminfo_bytes("MemTotal");
	double budget = (double)total - (double)(1LL << 30);
	double d = (double)info->dim, f = (double)info->fresh_dim;
	double row[2] = {16 + 4 * d, 16 + 2 * d + 4};
	const char *kinds[3] = {"none", "affine", "mlp"};
	double add[3] = {0, 4, 8 * f};
	json_t *largest = json_object();

	(void)srv;
	for (int s = 0; s < 2; s++) {
		json_t *by = json_object();
		for (int k = 0; k < 3; k++) {
			double n = budget > 0 ? budget / (row[s] + add[k]) : 0;
			json_object_set_new(by, kinds[k],
					    json_integer((json_int_t)n));
		}
		json_object_set_new(largest, s ? "bf16" : "f32", by);
	}
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:o}", "index_bytes",
			 (json_int_t)info->index_bytes, "mapped_bytes",
			 (json_int_t)info->mapped_bytes, "model_bytes",
			 (json_int_t)info->extra_bytes, "resident_bytes",
			 (json_int_t)rss_bytes(), "machine_bytes",
			 (json_int_t)total, "largest_targets", largest);
}

static json_t *reload_json(struct srv_server *srv)
{
	struct fresh_reload_status rs;

	fresh_engine_reload_status(srv->engine, &rs);
	if (rs.state == FRESH_RELOAD_NONE)
		return json_null();
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "state",
			 fresh_reload_state_name(rs.state), "path", rs.path,
			 "started_at", iso_time(rs.started_at), "finished_at",
			 rs.finished_at > 0 ? iso_time(rs.finished_at)
					    : json_null(),
			 "error", rs.error[0] ? json_string(rs.error) : json_null(),
			 "version",
			 rs.version ? json_integer((json_int_t)rs.version)
				    : json_null());
}

void srv_api_info(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	struct fresh_engine_info info;
	struct fresh_reload_status rs;
	char fp[32];
	json_t *j;

	fresh_engine_info(srv->engine, &info);
	fresh_engine_reload_status(srv->engine, &rs);
	snprintf(fp, sizeof fp, "%016" PRIx64, info.fingerprint);
	j = json_pack("{s:I,s:I,s:I,s:o,s:{s:s,s:o,s:s,s:o},s:s,s:f}",
		      "targets", (json_int_t)info.targets, "dim",
		      (json_int_t)info.dim, "fresh_dim",
		      (json_int_t)info.fresh_dim,
		      "corrector", srv_corrector_json(srv), "index", "source",
		      info.source, "loaded_at",
		      iso_time(rs.state == FRESH_RELOAD_DONE ? rs.finished_at
							    : srv->index_loaded_at),
		      "fingerprint", fp, "reload", reload_json(srv), "version", FRESHD_VERSION,
		      "uptime_s", unix_now() - srv->started_at);
	if (j) {
		json_object_set_new(j, "store",
				    json_string(fresh_store_name(info.store)));
		json_object_set_new(j, "memory", memory_json(srv, &info));
		json_object_set_new(j, "shard", json_boolean(srv->cfg.shard));
	}
	srv_reply_json(r, 200, j);
}

void srv_api_corrector(struct srv_request *req, struct srv_reply *r)
{
	srv_reply_json(r, 200, srv_corrector_json(req->srv));
}

void srv_api_target(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	size_t d, dd = fresh_engine_fresh_dim(srv->engine);
	struct fresh_target_view v;
	float *stale, *corr, *fresh;
	enum fresh_status st;
	struct srv_error e;

	d = fresh_engine_dim(srv->engine);
	stale = malloc(d * sizeof *stale);
	corr = malloc(dd * sizeof *corr);
	fresh = malloc(dd * sizeof *fresh);
	if (!stale || !corr || !fresh) {
		st = FRESH_NOMEM;
	} else {
		st = fresh_engine_target(srv->engine, req->target_id, stale,
					 corr, fresh, &v);
	}
	if (st == FRESH_OK) {
		json_t *j = json_object();
		json_object_set_new(j, "id", srv_json_u64(req->target_id));
		json_object_set_new(j, "stale", srv_json_floats(stale, d));
		json_object_set_new(j, "corrected",
				    v.corrected_ok ? srv_json_floats(corr, dd)
						   : json_null());
		json_object_set_new(j, "fresh",
				    v.has_fresh ? srv_json_floats(fresh, dd)
						: json_null());
		json_object_set_new(j, "fresh_step",
				    v.has_fresh && v.has_step
					    ? json_integer(v.step)
					    : json_null());
		json_object_set_new(j, "corrector_version",
				    json_integer((json_int_t)v.version));
		srv_reply_json(r, 200, j);
	} else {
		char msg[128];
		snprintf(msg, sizeof msg, "unknown target id %" PRIu64,
			 req->target_id);
		srv_error_from_status(&e, st,
				      st == FRESH_NOT_FOUND ? msg : NULL);
		srv_reply_error(r, &e);
	}
	free(stale);
	free(corr);
	free(fresh);
}

void srv_api_corrected(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"ids", NULL};
	struct srv_server *srv = req->srv;
	struct srv_error e;
	json_t *body = NULL, *out = NULL;
	uint64_t *ids = NULL, version = 0;
	size_t n = 0, dd = fresh_engine_fresh_dim(srv->engine), missing = 0;
	float *vec = NULL;
	enum fresh_status st;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e))
		goto fail;
	if (!json_object_get(body, "ids")) {
		srv_bad(&e, "ids: missing");
		goto fail;
	}
	if (!srv_get_id_list(json_object_get(body, "ids"), "ids",
			     srv->cfg.max_queries, &ids, &n, &e))
		goto fail;
	vec = malloc((n ? n : 1) * dd * sizeof *vec);
	if (!vec) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	st = fresh_engine_corrected(srv->engine, ids, n, vec, &version,
				    &missing);
	if (st == FRESH_NOT_FOUND) {
		srv_fail(&e, 404, "not_found",
			 "ids[%zu]: unknown target id %" PRIu64, missing,
			 ids[missing]);
		goto fail;
	}
	if (st != FRESH_OK) {
		srv_error_corrected(&e, st);
		goto fail;
	}
	out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, srv_json_floats(vec + i * dd, dd));
	srv_reply_json(r, 200,
		       json_pack("{s:o,s:I}", "vectors", out,
				 "corrector_version", (json_int_t)version));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(ids);
	free(vec);
}

/* Resident set size in bytes, from /proc. */
static long long rss_bytes(void)
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

void srv_route_metrics(struct srv_server *srv, struct srv_buf *b)
{
	srv_buf_printf(b, "# HELP freshd_http_requests_total HTTP requests "
			   "answered, by endpoint and status code.\n"
			   "# TYPE freshd_http_requests_total counter\n");
	for (int i = 0; i < SRV_ROUTE_COUNT; i++)
		for (int c = 0; c < SRV_CODES && srv_counted_codes[c]; c++) {
			unsigned long long v = atomic_load_explicit(
				&srv->routes[i].by_code[c], memory_order_relaxed);
			if (v)
				srv_buf_printf(b,
					       "freshd_http_requests_total{"
					       "endpoint=\"%s\",code=\"%d\"} "
					       "%llu\n",
					       srv_route_names[i], srv_counted_codes[c], v);
		}
	srv_buf_printf(b, "# HELP freshd_http_request_duration_seconds Time "
			   "from request headers to reply, by endpoint.\n"
			   "# TYPE freshd_http_request_duration_seconds "
			   "histogram\n");
	for (int i = 0; i < SRV_ROUTE_COUNT; i++) {
		char labels[64];
		snprintf(labels, sizeof labels, "endpoint=\"%s\"", srv_route_names[i]);
		srv_hist_render(b, "freshd_http_request_duration_seconds",
				labels, &srv->routes[i].latency);
	}
	srv_buf_printf(b, "# HELP freshd_http_requests_in_progress Requests "
			   "being handled (a refit?wait=true waits here), by "
			   "endpoint.\n"
			   "# TYPE freshd_http_requests_in_progress gauge\n");
	for (int i = 0; i < SRV_ROUTE_COUNT; i++)
		srv_buf_printf(b,
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
	struct srv_buf b = {NULL, 0, 0, 0};
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
		"# HELP freshd_search_queue_depth Queries waiting to be scored.\n"
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
			srv_buf_printf(&b,
				       "freshd_holdout_mse{embedding=\"stale\"} "
				       "%.9g\n",
				       st.holdout.stale_mse);
	}
	srv_buf_printf(
		&b,
		"# HELP freshd_pairs_buffered Targets with a fresh pair held.\n"
		"# TYPE freshd_pairs_buffered gauge\n"
		"freshd_pairs_buffered %zu\n"
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
		st.pairs_buffered, st.pairs_total, st.log_bytes, st.wal.syncs,
		st.wal.sync_seconds, st.wal.sync_failures + st.wal.write_failures,
		st.writable ? 1 : 0, info.targets, index_bytes, extra, rss_bytes());
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
