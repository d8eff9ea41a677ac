/*
 * coord_install.c - a corrector installed on the shards in two phases, so
 * that no search waits for a shard to build its model.
 *
 * Phase one, with no lock that searches take: every shard stages the
 * checkpoint (PUT /v1/corrector/checkpoint?stage=true builds its model,
 * h(S) for an mlp, while the current one keeps serving). If one cannot,
 * nothing is committed anywhere and the others drop what they staged.
 * Phase two, under the publish lock's write side: every shard commits
 * (POST /v1/corrector/checkpoint/commit?version=V writes the checkpoint
 * and swaps the model in), which takes milliseconds, so searches wait
 * that long at most and no answer mixes versions. Installs are serialized
 * (install_mu): a shard holds one staged checkpoint at a time.
 */
/* Messages that name a shard may be cut to their buffers; that is fine. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_impl.h"
#include "log.h"

/* Why shard s's call failed, for a message. */
static const char *call_why(const struct srv_call *call)
{
	if (call->error[0])
		return call->error;
	if (call->body && call->len)
		return call->body;
	return "no answer";
}

/* Best effort: the shards in which drop what they staged. */
static void unstage(struct srv_coord *c, const bool *which)
{
	struct srv_call *calls = calloc(c->n, sizeof *calls);

	if (!calls)
		return;
	(void)coord_fan_out(c, which, "DELETE",
			    "/v1/corrector/checkpoint/staged", NULL, NULL, NULL,
			    NULL, 0, CALL_TIMEOUT, calls);
	coord_fan_done(c, calls);
	free(calls);
}

enum coord_install_result coord_install(struct srv_coord *c,
					struct coord_install *in,
					struct srv_call *calls)
{
	char path[96];
	bool *staged = calloc(c->n, sizeof *staged), stopping;
	enum coord_install_result res = COORD_INSTALL_DONE;

	in->bad = -1;
	in->committed = 0;
	in->why[0] = '\0';
	/* Safe to coord_fan_done whatever happens below. */
	for (size_t s = 0; s < c->n; s++) {
		memset(&calls[s], 0, sizeof calls[s]);
		calls[s].fd = -1;
	}
	if (!staged) {
		snprintf(in->why, sizeof in->why, "out of memory");
		return COORD_INSTALL_STAGE_FAILED;
	}
	if (!in->if_idle) {
		pthread_mutex_lock(&c->install_mu);
	} else if (pthread_mutex_trylock(&c->install_mu) != 0) {
		free(staged);
		snprintf(in->why, sizeof in->why, "another install is running");
		return COORD_INSTALL_BUSY;
	}
	in->bad =
		coord_fan_out(c, in->which, "PUT",
			      in->force ? "/v1/corrector/checkpoint?stage=true"
					  "&force=true"
					: "/v1/corrector/checkpoint?stage=true",
			      "application/octet-stream", NULL, NULL, in->ckpt,
			      in->len, LONG_TIMEOUT, calls);
	for (size_t s = 0; s < c->n; s++) {
		if (in->which && !in->which[s])
			continue;
		staged[s] = calls[s].sent && calls[s].status == 200;
		if (!staged[s] && res == COORD_INSTALL_DONE) {
			res = COORD_INSTALL_STAGE_FAILED;
			snprintf(in->why, sizeof in->why,
				 "shard %s could not stage version %" PRIu64
				 ": %s",
				 srv_client_url(c->shards[s].client),
				 in->version, call_why(&calls[s]));
		}
	}
	if (res != COORD_INSTALL_DONE) {
		/*
		 * The stage answers stay in calls for the caller's reply. Every
		 * shard asked drops what it has: one that timed out may still
		 * have staged it (its drop waits for that build).
		 */
		unstage(c, in->which);
		goto out;
	}
	coord_fan_done(c, calls);

	pthread_rwlock_wrlock(&c->publish);
	pthread_mutex_lock(&c->mu);
	stopping = c->stopping;
	pthread_mutex_unlock(&c->mu);
	if (stopping)
		snprintf(in->why, sizeof in->why,
			 "shutting down: nothing was committed");
	if (stopping ||
	    (in->check && !in->check(in->check_ctx, in->why, sizeof in->why))) {
		pthread_rwlock_unlock(&c->publish);
		unstage(c, staged);
		res = COORD_INSTALL_CHECK_FAILED;
		goto out;
	}
	snprintf(path, sizeof path,
		 "/v1/corrector/checkpoint/commit?version=%" PRIu64,
		 in->version);
	in->bad = coord_fan_out(c, in->which, "POST", path, NULL, NULL, NULL,
				NULL, 0, CALL_TIMEOUT, calls);
	for (size_t s = 0; s < c->n; s++) {
		if (in->which && !in->which[s])
			continue;
		if (calls[s].sent && calls[s].status == 200) {
			in->committed++;
			pthread_mutex_lock(&c->mu);
			c->shards[s].version = in->version;
			pthread_mutex_unlock(&c->mu);
			continue;
		}
		if (!in->why[0])
			snprintf(in->why, sizeof in->why,
				 "shard %s could not commit version %" PRIu64
				 ": %s",
				 srv_client_url(c->shards[s].client),
				 in->version, call_why(&calls[s]));
		srv_log(SRV_WARN,
			"install: shard %s did not commit version %" PRIu64
			": %s; the health check installs it when the shard "
			"can take it",
			srv_client_url(c->shards[s].client), in->version,
			call_why(&calls[s]));
	}
	pthread_rwlock_unlock(&c->publish);
out:
	pthread_mutex_unlock(&c->install_mu);
	free(staged);
	return res;
}
