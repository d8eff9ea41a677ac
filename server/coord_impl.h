/*
 * coord_impl.h - the coordinator's state and the helpers its files share
 * (coord.c: replies, fan-out, start and stop; coord_health.c: probes and
 * version repair; coord_score.c: search and negatives; coord_updates.c:
 * updates and corrected vectors; coord_refit.c: the one trainer;
 * coord_api.c: probes, info, metrics, what is forwarded as it is).
 */
#ifndef SRV_COORD_IMPL_H
#define SRV_COORD_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "coord.h"

#define HEALTH_PERIOD 0.5   /* seconds between probes */
#define CALL_TIMEOUT 120.0  /* searches, updates */
#define LONG_TIMEOUT 3600.0 /* id tables, pairs, installing a corrector */
#define VERSION_TRIES 3
#define PUBLISH_WAIT 30 /* seconds a request waits for an install */

struct shard {
	struct srv_client *client;
	/* Written by the health thread; (c->mu). */
	bool up, known, is_shard;
	char why[320];
	uint64_t fingerprint, version;
	uint64_t fresh_rows; /* served by their fresh row, at the probe */
	size_t dim, fresh_dim;
	/* The ids it serves, sorted; swapped under c->ids_lock. */
	uint64_t *ids;
	size_t n;
	/* Re-installs that failed back off (the health thread's own). */
	double repair_at, repair_wait;
	/* From its last answers; (c->mu). */
	uint64_t seq, buffered;
};

struct srv_coord {
	struct srv_server *srv;
	size_t n;
	struct shard *shards;
	pthread_rwlock_t ids_lock;  /* the id tables */
	pthread_rwlock_t publish;   /* read: a fan-out; write: a publish */
	pthread_mutex_t install_mu; /* one install at a time (coord_install) */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* health and refit wake-ups, refit done */
	bool stopping;
	uint64_t rounds;     /* (mu) probe rounds finished */
	bool ready;	     /* (mu) every shard up, known, agreeing */
	char not_ready[400]; /* (mu) why not */
	size_t dim, fresh_dim, targets; /* (mu) once ready */
	/* The refitter; (mu). */
	bool running, want;
	bool want_full, running_full; /* training, not rows only */
	bool repair; /* the health thread found a shard behind */
	uint64_t gen_started, gen_done;
	uint64_t pairs_since;
	double last_refit_end;
	enum fresh_refit_state state;
	struct fresh_refit_outcome last;
	uint64_t started, accepted, rejected, failed;
	atomic_bool cancel;
	pthread_t health, refitter;
	bool health_started, refitter_started;
};

double coord_mono_now(void);
double coord_wall_now(void);
int coord_cmp_u64(const void *a, const void *b);
/* The shard that serves id, or -1. Caller holds ids_lock. */
int coord_owner_locked(const struct srv_coord *c, uint64_t id);

/* 503 shard_unavailable naming the shard. */
void coord_reply_unavailable(struct srv_reply *r, const struct shard *sh,
			     const char *why);
/* A shard's error answer: its 4xx as it is, a 5xx as shard_unavailable. */
void coord_reply_from_shard(struct srv_reply *r, const struct shard *sh,
			    const struct srv_call *call);
void coord_reply_not_ready(struct srv_coord *c, struct srv_reply *r);
bool coord_is_ready(struct srv_coord *c);

/*
 * Sends one request to each shard with which[s] (NULL: all), bodies[s]
 * (or the shared body), then reads every answer. Returns -1 when every
 * shard answered (any status), else the first that could not be reached.
 * calls[] must be coord_fan_done'd by the caller either way.
 */
int coord_fan_out(struct srv_coord *c, const bool *which, const char *method,
		  const char *path, const char *ctype, char *const *bodies,
		  const size_t *lens, const char *body, size_t len,
		  double timeout, struct srv_call *calls);
void coord_fan_done(struct srv_coord *c, struct srv_call *calls);
/* Replies for the first failure and returns false; true when all 2xx. */
bool coord_fan_check(struct srv_coord *c, const bool *which, int bad,
		     struct srv_call *calls, struct srv_reply *r);

/* A float32 vector as a base64 JSON string (NULL: out of memory). */
json_t *coord_b64(const float *v, size_t dim);
/* JSON text of j (stolen) with ids above 2^63 as plain integers. */
char *coord_dump(json_t *j, size_t *len);

/*
 * The publish lock's read side for a fan-out, waiting PUBLISH_WAIT
 * seconds at most while a corrector is installed; false (503 replied)
 * after that.
 */
bool coord_publish_rdlock(struct srv_coord *c, struct srv_reply *r);
/* Waits (10 s at most) for a probe round that started after the call. */
void coord_await_round(struct srv_coord *c);
void *coord_health_main(void *arg);
/*
 * Installs the newest shard's corrector on the shards behind it (run by
 * the refitter's thread when the health thread asks, so that probes go on
 * while a shard builds it).
 */
void coord_repair_versions(struct srv_coord *c);
void *coord_refit_main(void *arg);
/*
 * A checkpoint installed on the shards in two phases (coord_install.c):
 * every shard in which (NULL: all) stages it with no lock held, then
 * under the publish lock's write side, if check (may be NULL) agrees,
 * every one commits it.
 */
struct coord_install {
	const void *ckpt;
	size_t len;
	bool force;
	uint64_t version; /* the checkpoint's */
	const bool *which;
	bool if_idle; /* COORD_INSTALL_BUSY rather than wait for another */
	bool (*check)(void *ctx, char *why, size_t cap);
	void *check_ctx;
	/*
	 * Out: the first shard of the last phase that could not be reached
	 * (-1: all answered; coord_fan_check's bad), how many committed, and
	 * why the first failure failed.
	 */
	int bad;
	size_t committed;
	char why[400];
};
enum coord_install_result {
	COORD_INSTALL_DONE,	    /* committed (in->committed shards) */
	COORD_INSTALL_STAGE_FAILED, /* nothing changed; calls: the stages */
	COORD_INSTALL_CHECK_FAILED, /* nothing changed: check, or stopping */
	COORD_INSTALL_BUSY,	    /* if_idle, and another was running */
};
/*
 * Installs as described; calls[] (c->n) holds the last phase's answers
 * and must be coord_fan_done'd by the caller.
 */
enum coord_install_result coord_install(struct srv_coord *c,
					struct coord_install *in,
					struct srv_call *calls);

/* GET /v1/corrector's object over every shard; NULL after replying. */
json_t *coord_corrector_json(struct srv_coord *c, struct srv_reply *r);

#endif
