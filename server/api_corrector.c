/*
 * api_corrector.c - the corrector as a resource: GET /v1/corrector, POST
 * /v1/refit, POST /v1/corrector/reset, GET and PUT
 * /v1/corrector/checkpoint, and the JSON views of its state the
 * coordinator shares.
 */
#include <errno.h>
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
	return json_pack(
		"{s:I,s:o,s:f,s:o,s:f}", "pairs", (json_int_t)h->n, "stale_mse",
		h->stale_defined ? json_real(h->stale_mse) : json_null(),
		"corrected_mse", h->corrected_mse, "stale_rel_err",
		h->stale_defined ? json_real(h->stale_rel_err) : json_null(),
		"corrected_rel_err", h->corrected_rel_err);
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
			    r->held_out ? holdout_json(&r->holdout)
					: json_null());
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
	if (r->rowage.replaced || r->rowage.added || r->rowage.fitted)
		json_object_set_new(
			j, "rows_aged",
			json_pack("{s:b,s:I,s:I,s:I,s:o}", "fitted",
				  r->rowage.fitted, "replaced",
				  (json_int_t)r->rowage.replaced, "added",
				  (json_int_t)r->rowage.added, "moved",
				  (json_int_t)r->rowage.aged, "ridge_lambda",
				  r->rowage.fitted ? json_real(r->rowage.lambda)
						   : json_null()));
	json_object_set_new(
		j, "duration_ms",
		json_integer((json_int_t)((o->train_seconds + o->build_seconds +
					   o->publish_seconds) *
					  1000.0)));
	json_object_set_new(j, "timings_ms",
			    json_pack("{s:f,s:f,s:f}", "train",
				      o->train_seconds * 1e3, "materialize",
				      o->build_seconds * 1e3, "publish",
				      o->publish_seconds * 1e3));
	json_object_set_new(j, "trained_through_seq",
			    json_integer((json_int_t)o->trained_through));
	json_object_set_new(j, "finished_at", srv_iso_time(o->finished_at));
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
	json_object_set_new(
		j, "kind",
		json_string(fresh_corrector_kind_name(st.shape.kind)));
	json_object_set_new(j, "hidden",
			    json_integer((json_int_t)st.shape.hidden));
	json_object_set_new(j, "activation",
			    json_string(fresh_activation_name(st.shape.act)));
	json_object_set_new(j, "dim", json_integer((json_int_t)st.shape.d_in));
	json_object_set_new(j, "fresh_dim",
			    json_integer((json_int_t)st.shape.d_out));
	json_object_set_new(j, "normalize", json_boolean(st.normalize));
	json_object_set_new(j, "fresh_rows",
			    json_integer((json_int_t)st.fresh_rows));
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
	json_object_set_new(j, "last_seq",
			    json_integer((json_int_t)st.last_seq));
	json_object_set_new(j, "holdout",
			    st.have_holdout ? holdout_json(&st.holdout)
					    : json_null());
	json_object_set_new(j, "last_refit",
			    st.last.valid ? srv_refit_json(&st.last)
					  : json_null());
	json_object_set_new(j, "refits",
			    json_pack("{s:I,s:I,s:I,s:I}", "started",
				      (json_int_t)st.refits_started, "accepted",
				      (json_int_t)st.refits_accepted,
				      "rejected",
				      (json_int_t)st.refits_rejected, "failed",
				      (json_int_t)st.refits_failed));
	json_object_set_new(j, "writable", json_boolean(st.writable));
	return j;
}

void srv_api_corrector(struct srv_request *req, struct srv_reply *r)
{
	srv_reply_json(r, 200, srv_corrector_json(req->srv));
}

/* POSTs whose body, if any, must be an empty object. */
static bool empty_body(struct srv_request *req, struct srv_error *e)
{
	static const char *const none[] = {NULL};
	json_t *body;
	bool ok = srv_parse_body(req->body, req->body_len, true, &body, e) &&
		  srv_check_keys(body, none, e);

	srv_body_release(body);
	return ok;
}

bool srv_rows_only_allowed(const struct srv_request *req, bool rows_only,
			   struct srv_error *e)
{
	if (!rows_only || req->srv->cfg.engine.refit.serve_fresh_rows)
		return true;
	srv_fail(e, 409, "conflict",
		 "rows_only: this daemon does not serve fresh rows (start it "
		 "with --serve-fresh-rows)");
	return false;
}

void srv_api_refit(struct srv_request *req, struct srv_reply *r)
{
	struct fresh_refit_outcome out;
	struct srv_error e;
	bool wait = srv_query_flag(req, "wait");
	bool rows_only = srv_query_flag(req, "rows_only");
	enum fresh_status st;

	if (!empty_body(req, &e) ||
	    !srv_rows_only_allowed(req, rows_only, &e)) {
		srv_reply_error(r, &e);
		return;
	}
	if (req->srv->cfg.shard) {
		srv_fail(&e, 409, "conflict",
			 "this daemon is a shard (--shard): its coordinator "
			 "refits and installs the corrector here");
		srv_reply_error(r, &e);
		return;
	}
	st = rows_only ? fresh_engine_refit_rows(req->srv->engine, wait, &out)
		       : fresh_engine_refit(req->srv->engine, wait, &out);
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st,
				      st == FRESH_CANCELLED
					      ? "shutting down; the "
						"refit was abandoned"
					      : NULL);
		srv_reply_error(r, &e);
		return;
	}
	if (!wait) {
		srv_reply_json(r, 202, json_pack("{s:s}", "state", "training"));
		return;
	}
	if (!out.report.accepted)
		out.version = fresh_engine_version(req->srv->engine);
	srv_reply_json(r, 200, srv_refit_json(&out));
}

void srv_api_reset(struct srv_request *req, struct srv_reply *r)
{
	struct fresh_error ferr;
	struct srv_error e;
	uint64_t v;
	enum fresh_status st;

	if (!empty_body(req, &e)) {
		srv_reply_error(r, &e);
		return;
	}
	st = fresh_engine_reset(req->srv->engine, &v, &ferr);
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_json(r, 200, json_pack("{s:I}", "version", (json_int_t)v));
}

void srv_api_checkpoint_get(struct srv_request *req, struct srv_reply *r)
{
	void *buf;
	size_t len;
	uint64_t v;
	struct srv_error e;
	enum fresh_status st =
		fresh_engine_checkpoint_get(req->srv->engine, &buf, &len, &v);

	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, NULL);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_text(r, 200, "application/octet-stream", buf, len);
	free(buf);
}

/*
 * PUT /v1/corrector/checkpoint: installs it, or with ?stage=true builds
 * its model and keeps it until POST /v1/corrector/checkpoint/commit (the
 * two phases a coordinator uses so that no search waits for h(S)).
 */
void srv_api_checkpoint_put(struct srv_request *req, struct srv_reply *r)
{
	struct fresh_error ferr;
	struct srv_error e;
	uint64_t v;
	bool stage = srv_query_flag(req, "stage");
	enum fresh_status st =
		stage ? fresh_engine_checkpoint_stage(
				req->srv->engine, req->body, req->body_len,
				srv_query_flag(req, "force"), &v, &ferr)
		      : fresh_engine_checkpoint_put(
				req->srv->engine, req->body, req->body_len,
				srv_query_flag(req, "force"), &v, &ferr);

	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_json(r, 200,
		       json_pack("{s:I,s:b}", "version", (json_int_t)v,
				 "staged", stage));
}

/* POST /v1/corrector/checkpoint/commit?version=V: publishes the staged. */
void srv_api_checkpoint_commit(struct srv_request *req, struct srv_reply *r)
{
	const char *arg = srv_query_arg(req, "version");
	struct fresh_error ferr;
	struct srv_error e;
	unsigned long long v;
	char *end;
	enum fresh_status st;

	if (!empty_body(req, &e)) {
		srv_reply_error(r, &e);
		return;
	}
	errno = 0;
	v = arg && *arg >= '0' && *arg <= '9' ? strtoull(arg, &end, 10) : 0;
	if (!arg || !*arg || *arg < '0' || *arg > '9' || *end || errno) {
		srv_bad(&e, "version: the query parameter must be the staged "
			    "checkpoint's version (a non-negative integer)");
		srv_reply_error(r, &e);
		return;
	}
	st = fresh_engine_checkpoint_commit(req->srv->engine, v, &ferr);
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_json(r, 200, json_pack("{s:I}", "version", (json_int_t)v));
}

/* DELETE /v1/corrector/checkpoint/staged: drops a staged checkpoint. */
void srv_api_checkpoint_unstage(struct srv_request *req, struct srv_reply *r)
{
	srv_reply_json(
		r, 200,
		json_pack("{s:b}", "dropped",
			  fresh_engine_checkpoint_unstage(req->srv->engine)));
}
