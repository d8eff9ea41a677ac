/*
 * coord.c - freshd --shards: the /v1 API over shard daemons (coord.h);
 * here the replies, the fan-out, starting and stopping.
 *
 * Exactness. A target's score does not depend on the other rows (one
 * fixed summation order, API.md), so each shard's top k is exact over its
 * rows, and the k best of the shards' answers, by score then id, are the
 * answer one daemon over the whole index gives. Sampling draws by
 * Gumbel-top-k with noise that depends on (seed, id) only: each shard
 * returns its n largest keys and log Z over its rows (the "detail" of
 * /v1/negatives); the n largest keys over the shards are the sample one
 * daemon draws, and log Z over the index is the log-sum-exp of the
 * shards'. Scores and keys cross the wire exactly (scores are float32
 * printed with 9 digits, keys and log Z as 17-digit strings).
 *
 * One version per answer. Every shard names the corrector version that
 * scored its part; the coordinator publishes a new corrector to every
 * shard (staged first, then committed under the write side of a lock
 * whose read side each fan-out holds: coord_install.c), so no answer
 * mixes versions that the coordinator published. A shard that restarts
 * behind (or was written to directly) shows as a version mismatch: the
 * answer is refused with 503 rather than mixed, and the newest checkpoint
 * is installed on the shards behind.
 *
 * Updates. The request is checked here in full (fields, widths, finite
 * values, every id owned by a shard) before any shard sees it, then each
 * shard gets its own targets (and the queries whose positive it owns),
 * vectors as base64. A shard that fails after another logged its part
 * leaves that part logged: the answer is 503 naming the shard, and
 * repeating the request is safe (a pair replaces the same pair).
 *
 * Threads: HTTP handlers (one per connection), the health thread (probes
 * every shard, loads their id tables, finds versions behind) and the
 * refitter (refits, and brings shards behind forward when asked).
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

#include "base64.h"
#include "coord_impl.h"
#include "log.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "vectors go to shards as little-endian float32 bytes");

double coord_mono_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double coord_wall_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int coord_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The shard that serves id, or -1. Caller holds ids_lock. */
int coord_owner_locked(const struct srv_coord *c, uint64_t id)
{
	for (size_t s = 0; s < c->n; s++) {
		const struct shard *sh = &c->shards[s];
		if (sh->n && id >= sh->ids[0] && id <= sh->ids[sh->n - 1] &&
		    bsearch(&id, sh->ids, sh->n, sizeof id, coord_cmp_u64))
			return (int)s;
	}
	return -1;
}

/* ---- replies ---------------------------------------------------------- */

void coord_reply_unavailable(struct srv_reply *r, const struct shard *sh,
			     const char *why)
{
	struct srv_error e;

	srv_fail(&e, 503, "shard_unavailable", "shard %s: %s",
		 srv_client_url(sh->client), why);
	e.retry_after = 1;
	srv_reply_error(r, &e);
}

/*
 * A shard's error answer: its own 4xx as it is (every shard checks a
 * request alike), a 5xx as shard_unavailable naming it.
 */
void coord_reply_from_shard(struct srv_reply *r, const struct shard *sh,
			    const struct srv_call *call)
{
	if (call->status >= 400 && call->status < 500) {
		srv_reply_text(r, call->status, "application/json", call->body,
			       call->len);
		r->error_code = "shard";
		return;
	}
	{
		char why[300];
		json_t *j = json_loadb(call->body, call->len, 0, NULL);
		const char *m = json_string_value(json_object_get(
			json_object_get(j, "error"), "message"));
		snprintf(why, sizeof why, "answered %d%s%s", call->status,
			 m ? ": " : "", m ? m : "");
		json_decref(j);
		coord_reply_unavailable(r, sh, why);
	}
}

void coord_reply_not_ready(struct srv_coord *c, struct srv_reply *r)
{
	struct srv_error e;

	pthread_mutex_lock(&c->mu);
	srv_fail(&e, 503, "shard_unavailable", "%s", c->not_ready);
	pthread_mutex_unlock(&c->mu);
	e.retry_after = 1;
	srv_reply_error(r, &e);
}

bool coord_is_ready(struct srv_coord *c)
{
	bool ok;

	pthread_mutex_lock(&c->mu);
	ok = c->ready;
	pthread_mutex_unlock(&c->mu);
	return ok;
}

/* ---- fan-out ---------------------------------------------------------- */

/*
 * Sends one request to each shard with which[s] (NULL: all), bodies[s]
 * (or the shared body), then reads every answer. Returns -1 when every
 * shard answered (any status), else the first that could not be reached.
 * calls[] must be srv_call_done'd by the caller either way.
 */
int coord_fan_out(struct srv_coord *c, const bool *which, const char *method,
		  const char *path, const char *ctype, char *const *bodies,
		  const size_t *lens, const char *body, size_t len,
		  double timeout, struct srv_call *calls)
{
	/* An update stops at the first shard it cannot reach: the fewer
	 * shards log a part of a failed request, the better. */
	bool stop_early = strcmp(path, "/v1/updates") == 0;
	int bad = -1;

	for (size_t s = 0; s < c->n; s++) {
		memset(&calls[s], 0, sizeof calls[s]);
		calls[s].fd = -1;
	}
	for (size_t s = 0; s < c->n; s++) {
		if (which && !which[s])
			continue;
		if (bad >= 0 && stop_early)
			break;
		if (!srv_call_send(&calls[s], c->shards[s].client, method, path,
				   ctype, bodies ? bodies[s] : body,
				   bodies ? lens[s] : len, timeout) &&
		    bad < 0)
			bad = (int)s;
	}
	for (size_t s = 0; s < c->n; s++) {
		if ((which && !which[s]) || !calls[s].sent)
			continue;
		if (!srv_call_recv(&calls[s]) && bad < 0)
			bad = (int)s;
	}
	return bad;
}

void coord_fan_done(struct srv_coord *c, struct srv_call *calls)
{
	for (size_t s = 0; s < c->n; s++)
		srv_call_done(&calls[s]);
}

/*
 * After fan_out: replies for the first failure (unreachable or non-2xx)
 * and returns false; true when every asked shard answered 2xx.
 */
bool coord_fan_check(struct srv_coord *c, const bool *which, int bad,
		     struct srv_call *calls, struct srv_reply *r)
{
	if (bad >= 0) {
		coord_reply_unavailable(r, &c->shards[bad], calls[bad].error);
		return false;
	}
	for (size_t s = 0; s < c->n; s++) {
		if (which && !which[s])
			continue;
		if (calls[s].status < 200 || calls[s].status >= 300) {
			coord_reply_from_shard(r, &c->shards[s], &calls[s]);
			return false;
		}
	}
	return true;
}

bool coord_publish_rdlock(struct srv_coord *c, struct srv_reply *r)
{
	struct timespec until;
	struct srv_error e;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += PUBLISH_WAIT;
	if (pthread_rwlock_timedrdlock(&c->publish, &until) == 0)
		return true;
	srv_fail(&e, 503, "overloaded",
		 "a new corrector is being installed on the shards; retry "
		 "shortly");
	e.retry_after = 5;
	srv_reply_error(r, &e);
	return false;
}

json_t *coord_b64(const float *v, size_t dim)
{
	size_t n = dim * sizeof(float);
	char *s = malloc(4 * ((n + 2) / 3) + 1);
	json_t *j;

	if (!s)
		return NULL;
	srv_base64_encode((const unsigned char *)v, n, s);
	j = json_string(s);
	free(s);
	return j;
}

/* JSON text of j with ids above 2^63 as plain integers (reply.c's). */
char *coord_dump(json_t *j, size_t *len)
{
	struct srv_reply tmp;

	memset(&tmp, 0, sizeof tmp);
	srv_reply_json(&tmp, 200, j); /* steals j */
	*len = tmp.len;
	return tmp.status == 200 ? tmp.body : (free(tmp.body), NULL);
}

/* ---- start and stop --------------------------------------------------- */

enum fresh_status srv_coord_start(struct srv_server *srv, char *err, size_t cap)
{
	struct srv_coord *c = calloc(1, sizeof *c);
	pthread_rwlockattr_t wa;
	const char *p = srv->cfg.shards;

	if (!c)
		return FRESH_NOMEM;
	c->srv = srv;
	pthread_rwlockattr_init(&wa);
	pthread_rwlockattr_setkind_np(
		&wa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&c->publish, &wa);
	pthread_rwlockattr_destroy(&wa);
	pthread_rwlock_init(&c->ids_lock, NULL);
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->install_mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	for (const char *q = p; *q; q++)
		c->n += *q == ',';
	c->n++;
	c->shards = calloc(c->n, sizeof *c->shards);
	if (!c->shards) {
		c->n = 0;
		srv_coord_stop(c);
		return FRESH_NOMEM;
	}
	for (size_t s = 0; s < c->n; s++) {
		size_t len = strcspn(p, ",");
		char url[300];
		if (len == 0 || len >= sizeof url) {
			snprintf(err, cap,
				 "--shards: shard %zu: expected "
				 "http://HOST:PORT",
				 s + 1);
			c->n = s;
			srv_coord_stop(c);
			return FRESH_INVALID;
		}
		memcpy(url, p, len);
		url[len] = '\0';
		c->shards[s].client =
			srv_client_create(url, srv->write_key, err, cap);
		if (!c->shards[s].client) {
			c->n = s;
			srv_coord_stop(c);
			return FRESH_INVALID;
		}
		snprintf(c->shards[s].why, sizeof c->shards[s].why,
			 "not probed yet");
		p += len + (p[len] == ',');
	}
	snprintf(c->not_ready, sizeof c->not_ready,
		 "the shards have not been probed yet");
	c->last_refit_end = coord_mono_now();
	atomic_init(&c->cancel, false);
	srv->coord = c;
	c->health_started =
		pthread_create(&c->health, NULL, coord_health_main, c) == 0;
	c->refitter_started =
		pthread_create(&c->refitter, NULL, coord_refit_main, c) == 0;
	if (!c->health_started || !c->refitter_started) {
		snprintf(err, cap, "cannot start the coordinator's threads");
		srv_coord_stop(c);
		srv->coord = NULL;
		return FRESH_NOMEM;
	}
	srv_log(SRV_INFO, "coordinator over %zu shards", c->n);
	return FRESH_OK;
}

void srv_coord_quiesce(struct srv_coord *c)
{
	if (!c)
		return;
	atomic_store(&c->cancel, true);
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void srv_coord_stop(struct srv_coord *c)
{
	if (!c)
		return;
	srv_coord_quiesce(c);
	if (c->health_started)
		pthread_join(c->health, NULL);
	if (c->refitter_started)
		pthread_join(c->refitter, NULL);
	for (size_t s = 0; s < c->n; s++) {
		srv_client_free(c->shards[s].client);
		free(c->shards[s].ids);
	}
	pthread_rwlock_destroy(&c->publish);
	pthread_rwlock_destroy(&c->ids_lock);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->install_mu);
	pthread_cond_destroy(&c->cv);
	free(c->shards);
	free(c);
}
