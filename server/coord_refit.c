/*
 * coord_refit.c - the coordinator's refitter: the pairs of every shard, one
 * fit (core/shard.c), the new checkpoint installed on every shard in two
 * phases (coord_install.c).
 */
/* Messages that name a shard may be cut to their buffers; that is fine. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire.h"
#include "coord_impl.h"
#include "log.h"
#include "parse.h"

/* ---- the refitter ----------------------------------------------------- */

/* Reads the current corrector's checkpoint from the first shard. */
static bool current_checkpoint(struct srv_coord *c, struct srv_call *call,
			       char *why, size_t cap)
{
	if (!srv_call(call, c->shards[0].client, "GET",
		      "/v1/corrector/checkpoint", NULL, NULL, 0, 60.0) ||
	    call->status != 200) {
		snprintf(why, cap, "shard %s: %s",
			 srv_client_url(c->shards[0].client),
			 call->error[0] ? call->error
					: "could not read the checkpoint");
		return false;
	}
	return true;
}

static uint64_t checkpoint_version(const struct srv_call *call)
{
	return fresh_engine_checkpoint_version(call->body, call->len);
}

/* The install's check: no other version was published while it trained. */
struct not_superseded {
	struct srv_coord *c;
	uint64_t base, seen;
	bool unknown; /* the current version could not be read */
};

static bool still_current(void *ctx, char *why, size_t cap)
{
	struct not_superseded *ns = ctx;
	struct srv_call again;
	bool ok;

	memset(&again, 0, sizeof again);
	again.fd = -1;
	if (!current_checkpoint(ns->c, &again, why, cap)) {
		srv_call_done(&again);
		ns->unknown = true;
		return false;
	}
	ns->seen = checkpoint_version(&again);
	ok = ns->seen == ns->base;
	srv_call_done(&again);
	return ok;
}

static void run_refit(struct srv_coord *c, bool full,
		      struct fresh_refit_outcome *out)
{
	struct fresh_refit_config rc = c->srv->cfg.engine.refit;
	struct srv_call *calls = calloc(c->n, sizeof *calls), cur;
	struct fresh_shard_pairs pairs;
	struct fresh_error ferr;
	void *ckpt = NULL;
	size_t len = 0;
	double t0 = coord_mono_now();
	char why[400] = "";
	enum fresh_status st = FRESH_OK;
	int bad;

	memset(out, 0, sizeof *out);
	memset(&pairs, 0, sizeof pairs);
	memset(&cur, 0, sizeof cur);
	cur.fd = -1;
	ferr.msg[0] = '\0';
	if (!calls) {
		st = FRESH_NOMEM;
		goto out;
	}
	/* The pairs, with their stale rows, from every shard. */
	bad = coord_fan_out(c, NULL, "GET", "/v1/pairs", NULL, NULL, NULL, NULL,
			    0, LONG_TIMEOUT, calls);
	for (size_t s = 0; s < c->n && st == FRESH_OK; s++) {
		if ((int)s == bad || calls[s].status != 200) {
			snprintf(why, sizeof why, "shard %s: %s",
				 srv_client_url(c->shards[s].client),
				 calls[s].error[0] ? calls[s].error
						   : "could not export pairs");
			st = FRESH_IO;
		} else {
			st = fresh_engine_pairs_import(
				calls[s].body, calls[s].len, &pairs, &ferr);
		}
		srv_call_done(&calls[s]); /* one shard's export at a time */
	}
	coord_fan_done(c, calls);
	if (st == FRESH_OK && !current_checkpoint(c, &cur, why, sizeof why))
		st = FRESH_IO;
	rc.rows_only = !full;
	if (st == FRESH_OK)
		st = fresh_engine_fit(cur.body, cur.len, &pairs, &rc,
				      &c->cancel, &ckpt, &len, &out->report,
				      &ferr);
	out->train_seconds = coord_mono_now() - t0;
	if (st == FRESH_OK && ckpt) {
		double tp = coord_mono_now();
		uint64_t base = checkpoint_version(&cur);
		struct not_superseded ns = {c, base, base, false};
		struct coord_install in = {0};

		in.ckpt = ckpt;
		in.len = len;
		in.version = ns.base + 1;
		in.check = still_current;
		in.check_ctx = &ns;
		switch (coord_install(c, &in, calls)) {
		case COORD_INSTALL_DONE:
			/* Committed anywhere: it is the version now (the
			 * others are brought to it); nowhere: nothing
			 * changed. */
			if (in.committed > 0)
				out->version = in.version;
			else
				st = FRESH_IO;
			if (in.committed < c->n)
				snprintf(why, sizeof why, "%s", in.why);
			break;
		case COORD_INSTALL_CHECK_FAILED:
			if (ns.unknown || ns.seen == ns.base) {
				/* Not superseded: the version could not be
				 * read, or the coordinator is stopping. */
				snprintf(why, sizeof why, "%s", in.why);
				st = FRESH_IO;
				break;
			}
			out->report.accepted = false;
			snprintf(out->report.reason, sizeof out->report.reason,
				 "superseded: version %" PRIu64
				 " was published while it trained",
				 ns.seen);
			break;
		case COORD_INSTALL_BUSY: /* not asked: it waits its turn */
		case COORD_INSTALL_STAGE_FAILED:
			snprintf(why, sizeof why, "%s", in.why);
			st = FRESH_IO;
			break;
		}
		coord_fan_done(c, calls);
		out->publish_seconds = coord_mono_now() - tp;
	}
out:
	out->valid = true;
	out->status = st;
	out->finished_at = coord_wall_now();
	if (st != FRESH_OK) {
		out->report.accepted = false;
		snprintf(out->report.reason, sizeof out->report.reason,
			 "refit failed: %s",
			 why[0]	       ? why
			 : ferr.msg[0] ? ferr.msg
				       : fresh_status_str(st));
	}
	if (out->version)
		srv_log(SRV_INFO,
			"refit published version %" PRIu64
			" on %zu shards (%s, %zu pairs, held-out mse %.6g vs "
			"%.6g before, %.2fs)",
			out->version, c->n, out->report.method,
			out->report.pairs, out->report.holdout.corrected_mse,
			out->report.current_mse, coord_mono_now() - t0);
	else
		srv_log(st == FRESH_OK ? SRV_INFO : SRV_WARN,
			"refit not published: %s", out->report.reason);
	srv_call_done(&cur);
	fresh_engine_pairs_free(&pairs);
	free(ckpt);
	free(calls);
}

void *coord_refit_main(void *arg)
{
	struct srv_coord *c = arg;
	double every = c->srv->cfg.engine.refit_every_seconds;

	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		struct fresh_refit_outcome out;
		bool full;

		if (!c->want && every > 0 && c->pairs_since > 0 &&
		    coord_mono_now() - c->last_refit_end >= every)
			c->want = c->want_full = true;
		if (!c->want && c->repair) {
			pthread_mutex_unlock(&c->mu);
			coord_repair_versions(c);
			pthread_mutex_lock(&c->mu);
			c->repair = false; /* the next probe round says again */
			continue;
		}
		if (!c->want) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 250000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->cv, &c->mu, &until);
			continue;
		}
		full = c->want_full;
		c->want = c->want_full = false;
		c->running = true;
		c->running_full = full;
		c->gen_started++;
		if (full)
			c->pairs_since = 0;
		c->started++;
		c->state = FRESH_REFIT_TRAINING;
		pthread_mutex_unlock(&c->mu);
		run_refit(c, full, &out);
		pthread_mutex_lock(&c->mu);
		if (out.status != FRESH_OK)
			c->failed++;
		else if (out.version)
			c->accepted++;
		else
			c->rejected++;
		c->last = out;
		c->running = false;
		c->state = FRESH_REFIT_IDLE;
		c->gen_done = c->gen_started;
		if (full) /* the timer counts from the last training */
			c->last_refit_end = coord_mono_now();
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

void srv_coord_refit(struct srv_request *req, struct srv_reply *r)
{
	struct srv_coord *c = req->srv->coord;
	bool wait = srv_query_flag(req, "wait");
	bool full = !srv_query_flag(req, "rows_only");
	struct fresh_refit_outcome out;
	struct srv_error e;
	json_t *body = NULL;
	static const char *const none[] = {NULL};
	uint64_t target;
	bool done;

	if (!srv_parse_body(req->body, req->body_len, true, &body, &e) ||
	    !srv_check_keys(body, none, &e) ||
	    !srv_rows_only_allowed(req, !full, &e)) {
		srv_body_release(body);
		srv_reply_error(r, &e);
		return;
	}
	srv_body_release(body);
	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	pthread_mutex_lock(&c->mu);
	if (!wait) {
		/* A call while one runs joins it (rows only joins any). */
		if (!c->running || (full && !c->running_full)) {
			c->want = true;
			c->want_full = c->want_full || full;
		}
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		srv_reply_json(r, 202, json_pack("{s:s}", "state", "training"));
		return;
	}
	/* A refit that reads the pairs after this call: the next one. */
	target = c->gen_started + 1;
	c->want = true;
	c->want_full = c->want_full || full;
	pthread_cond_broadcast(&c->cv);
	while (c->gen_done < target && !c->stopping)
		pthread_cond_wait(&c->cv, &c->mu);
	out = c->last;
	done = c->gen_done >= target;
	if (!out.report.accepted)
		out.version = c->shards[0].version;
	pthread_mutex_unlock(&c->mu);
	if (!done) {
		srv_error_from_status(&e, FRESH_CANCELLED,
				      "shutting down; the refit was abandoned");
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_json(r, 200, srv_refit_json(&out));
}
