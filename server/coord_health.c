/*
 * coord_health.c - the coordinator's health thread: probes every shard,
 * loads its id table when its index is new, decides readiness, and asks
 * for the newest corrector on shards found behind (installed by
 * coord_repair_versions on the refitter's thread, so probes never wait
 * for a shard's build).
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

/* ---- the health thread ------------------------------------------------ */

struct facts {
	size_t dim, fresh_dim;
	uint64_t fingerprint, version, fresh_rows;
	bool is_shard;
};

/* A shard's facts from GET /v1/info; false with why. */
static bool read_info(struct shard *sh, struct facts *f, char *why, size_t cap)
{
	struct srv_call call;
	json_t *j, *corr, *idx;
	const char *fp;
	bool ok = false;

	if (!srv_call(&call, sh->client, "GET", "/v1/info", NULL, NULL, 0,
		      10.0)) {
		snprintf(why, cap, "%s", call.error);
		srv_call_done(&call);
		return false;
	}
	j = call.status == 200 ? json_loadb(call.body, call.len, 0, NULL)
			       : NULL;
	corr = json_object_get(j, "corrector");
	idx = json_object_get(j, "index");
	fp = json_string_value(json_object_get(idx, "fingerprint"));
	if (j && json_is_integer(json_object_get(j, "dim")) &&
	    json_is_integer(json_object_get(j, "fresh_dim")) &&
	    json_is_integer(json_object_get(corr, "version")) && fp) {
		f->dim = (size_t)json_integer_value(json_object_get(j, "dim"));
		f->fresh_dim = (size_t)json_integer_value(
			json_object_get(j, "fresh_dim"));
		f->version = (uint64_t)json_integer_value(
			json_object_get(corr, "version"));
		f->fingerprint = strtoull(fp, NULL, 16);
		/* 0 from a shard that predates the field. */
		f->fresh_rows = (uint64_t)json_integer_value(
			json_object_get(corr, "fresh_rows"));
		f->is_shard = json_is_true(json_object_get(j, "shard"));
		ok = true;
	} else {
		snprintf(why, cap, "GET /v1/info answered %d", call.status);
	}
	json_decref(j);
	srv_call_done(&call);
	return ok;
}

/* Loads a shard's id table (sorted) from GET /v1/ids. */
static bool read_ids(struct shard *sh, uint64_t **ids, size_t *n,
		     uint64_t *fingerprint, char *why, size_t cap)
{
	struct srv_call call;
	const unsigned char *p;
	uint64_t count;
	bool ok = false;

	*ids = NULL;
	if (!srv_call(&call, sh->client, "GET", "/v1/ids", NULL, NULL, 0,
		      LONG_TIMEOUT)) {
		snprintf(why, cap, "%s", call.error);
		srv_call_done(&call);
		return false;
	}
	p = (const unsigned char *)call.body;
	if (call.status != 200 || call.len < 24 ||
	    memcmp(p, "FRSHIDS1", 8) != 0 ||
	    (count = srv_get64(p + 8)) != (call.len - 24) / 8 ||
	    call.len != 24 + count * 8) {
		snprintf(why, cap, "GET /v1/ids answered %d with %zu bytes",
			 call.status, call.len);
	} else if (!(*ids = malloc((count ? count : 1) * sizeof **ids))) {
		snprintf(why, cap, "out of memory for %" PRIu64 " ids", count);
	} else {
		for (size_t i = 0; i < count; i++)
			(*ids)[i] = srv_get64(p + 24 + 8 * i);
		qsort(*ids, count, sizeof **ids, coord_cmp_u64);
		*n = count;
		*fingerprint = srv_get64(p + 16);
		ok = true;
	}
	srv_call_done(&call);
	return ok;
}

static void set_why(struct srv_coord *c, struct shard *sh, const char *fmt,
		    const char *arg)
{
	pthread_mutex_lock(&c->mu);
	sh->up = false;
	snprintf(sh->why, sizeof sh->why, fmt, arg);
	pthread_mutex_unlock(&c->mu);
}

/* Probes one shard; loads its ids when its index is new to us. */
static void probe(struct srv_coord *c, struct shard *sh)
{
	struct srv_call call;
	struct facts f;
	char why[300];
	bool up;

	up = srv_call(&call, sh->client, "GET", "/readyz", NULL, NULL, 0, 5.0);
	if (!up || call.status != 200) {
		snprintf(why, sizeof why, "%s",
			 up ? "not ready (still loading?)" : call.error);
		srv_call_done(&call);
		set_why(c, sh, "%s", why);
		return;
	}
	srv_call_done(&call);
	if (!read_info(sh, &f, why, sizeof why)) {
		set_why(c, sh, "%s", why);
		return;
	}
	if (!f.is_shard) {
		set_why(c, sh, "%s",
			"not started with --shard (it would refit by itself)");
		return;
	}
	if (!sh->known || sh->fingerprint != f.fingerprint) {
		uint64_t *ids, fp;
		size_t n;
		if (!read_ids(sh, &ids, &n, &fp, why, sizeof why)) {
			set_why(c, sh, "%s", why);
			return;
		}
		pthread_rwlock_wrlock(&c->ids_lock);
		free(sh->ids);
		sh->ids = ids;
		sh->n = n;
		pthread_rwlock_unlock(&c->ids_lock);
		f.fingerprint = fp;
		srv_log(SRV_INFO, "shard %s: %zu targets, index %016" PRIx64,
			srv_client_url(sh->client), n, fp);
	}
	pthread_mutex_lock(&c->mu);
	sh->known = true;
	sh->up = true;
	sh->why[0] = '\0';
	sh->fingerprint = f.fingerprint;
	sh->version = f.version;
	sh->fresh_rows = f.fresh_rows;
	sh->dim = f.dim;
	sh->fresh_dim = f.fresh_dim;
	pthread_mutex_unlock(&c->mu);
}

/* Whether two shards serve an id both (caller holds ids_lock). */
static bool overlap(const struct shard *a, const struct shard *b, uint64_t *id)
{
	size_t i = 0, j = 0;

	if (!a->n || !b->n || a->ids[a->n - 1] < b->ids[0] ||
	    b->ids[b->n - 1] < a->ids[0])
		return false;
	while (i < a->n && j < b->n) {
		if (a->ids[i] == b->ids[j]) {
			*id = a->ids[i];
			return true;
		}
		if (a->ids[i] < b->ids[j])
			i++;
		else
			j++;
	}
	return false;
}

/* Decides readiness from the probes; true when versions need repair. */
static bool judge(struct srv_coord *c)
{
	char why[400] = "";
	size_t targets = 0;
	bool skew = false;
	uint64_t dup;

	pthread_rwlock_rdlock(&c->ids_lock);
	pthread_mutex_lock(&c->mu);
	for (size_t s = 0; s < c->n && !why[0]; s++) {
		struct shard *sh = &c->shards[s];
		if (!sh->up) {
			snprintf(why, sizeof why, "shard %s: %s",
				 srv_client_url(sh->client),
				 sh->why[0] ? sh->why : "not probed yet");
			break;
		}
		targets += sh->n;
		if (sh->dim != c->shards[0].dim ||
		    sh->fresh_dim != c->shards[0].fresh_dim)
			snprintf(why, sizeof why,
				 "shard %s serves width %zu (fresh %zu), "
				 "shard %s %zu (fresh %zu)",
				 srv_client_url(sh->client), sh->dim,
				 sh->fresh_dim,
				 srv_client_url(c->shards[0].client),
				 c->shards[0].dim, c->shards[0].fresh_dim);
		if (sh->version != c->shards[0].version)
			skew = true;
		for (size_t t = 0; t < s && !why[0]; t++)
			if (overlap(&c->shards[t], sh, &dup))
				snprintf(why, sizeof why,
					 "shards %s and %s both serve id "
					 "%" PRIu64,
					 srv_client_url(c->shards[t].client),
					 srv_client_url(sh->client), dup);
	}
	if (!c->ready && !why[0])
		srv_log(SRV_INFO, "every shard is ready: %zu targets", targets);
	else if (c->ready && why[0])
		srv_log(SRV_WARN, "not ready: %s", why);
	c->ready = !why[0];
	snprintf(c->not_ready, sizeof c->not_ready, "%s", why);
	if (c->ready) {
		c->dim = c->shards[0].dim;
		c->fresh_dim = c->shards[0].fresh_dim;
		c->targets = targets;
	}
	pthread_mutex_unlock(&c->mu);
	pthread_rwlock_unlock(&c->ids_lock);
	return !why[0] && skew;
}

/*
 * Installs the newest shard's checkpoint on the shards behind it, one
 * shard at a time in two phases (coord_install.c), so searches wait only
 * for a commit and one shard that cannot take it holds up no other.
 */
void coord_repair_versions(struct srv_coord *c)
{
	struct srv_call get, *calls = calloc(c->n, sizeof *calls);
	bool *which = calloc(c->n, sizeof *which);
	size_t newest = 0, due = 0;
	double now = coord_mono_now();
	uint64_t v;

	memset(&get, 0, sizeof get);
	get.fd = -1;
	if (!calls || !which)
		goto out;
	pthread_mutex_lock(&c->mu);
	for (size_t s = 1; s < c->n; s++)
		if (c->shards[s].version > c->shards[newest].version)
			newest = s;
	v = c->shards[newest].version;
	for (size_t s = 0; s < c->n; s++)
		due += c->shards[s].version < v &&
		       c->shards[s].repair_at <= now;
	pthread_mutex_unlock(&c->mu);
	if (due == 0)
		goto out; /* every shard behind is backing off */
	if (!srv_call(&get, c->shards[newest].client, "GET",
		      "/v1/corrector/checkpoint", NULL, NULL, 0, 60.0) ||
	    get.status != 200 ||
	    fresh_engine_checkpoint_version(get.body, get.len) != v)
		goto out; /* it moved on, or is down: the next round sees */
	for (size_t s = 0; s < c->n; s++) {
		struct shard *sh = &c->shards[s];
		struct coord_install in = {0};
		enum coord_install_result res;
		uint64_t have;

		pthread_mutex_lock(&c->mu);
		have = sh->version;
		pthread_mutex_unlock(&c->mu);
		if (have >= v || sh->repair_at > now)
			continue;
		srv_log(SRV_WARN,
			"shard %s serves corrector version %" PRIu64
			", shard %s %" PRIu64 ": installing the newer",
			srv_client_url(sh->client), have,
			srv_client_url(c->shards[newest].client), v);
		memset(which, 0, c->n * sizeof *which);
		which[s] = true;
		in.ckpt = get.body;
		in.len = get.len;
		in.version = v;
		in.which = which;
		/* A refit's install may take minutes: probes go on. */
		in.if_idle = true;
		res = coord_install(c, &in, calls);
		if (res == COORD_INSTALL_BUSY)
			break; /* the next round sees what it installed */
		if (res == COORD_INSTALL_DONE && in.committed == 1) {
			sh->repair_wait = 0;
		} else {
			sh->repair_wait =
				sh->repair_wait > 0 ? 2 * sh->repair_wait : 1.0;
			if (sh->repair_wait > 60)
				sh->repair_wait = 60;
			sh->repair_at = coord_mono_now() + sh->repair_wait;
			srv_log(SRV_ERROR,
				"shard %s: could not install version %" PRIu64
				" (next try in %.0f s): %s",
				srv_client_url(sh->client), v, sh->repair_wait,
				in.why);
		}
		coord_fan_done(c, calls);
	}
out:
	srv_call_done(&get);
	free(calls);
	free(which);
}

void *coord_health_main(void *arg)
{
	struct srv_coord *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		struct timespec until;
		double t;
		bool skew;

		pthread_mutex_unlock(&c->mu);
		for (size_t s = 0; s < c->n; s++)
			probe(c, &c->shards[s]);
		skew = judge(c);
		pthread_mutex_lock(&c->mu);
		if (skew && !c->repair) {
			/* The refitter's thread repairs (coord_refit.c). */
			c->repair = true;
			pthread_cond_broadcast(&c->cv);
		}
		c->rounds++;
		pthread_cond_broadcast(&c->cv);
		if (c->stopping)
			break;
		clock_gettime(CLOCK_REALTIME, &until);
		t = (double)until.tv_nsec * 1e-9 + HEALTH_PERIOD;
		until.tv_sec += (time_t)t;
		until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
		pthread_cond_timedwait(&c->cv, &c->mu, &until);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/*
 * Wakes the health thread and waits (10 s at most) for a probe round that
 * started after the call: a shard found behind has been repaired then.
 */
void coord_await_round(struct srv_coord *c)
{
	uint64_t target;
	double end = coord_mono_now() + 10.0;

	pthread_mutex_lock(&c->mu);
	target = c->rounds + 2;
	pthread_cond_broadcast(&c->cv);
	while (c->rounds < target && !c->stopping && coord_mono_now() < end) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&c->cv, &c->mu, &until);
	}
	pthread_mutex_unlock(&c->mu);
}
