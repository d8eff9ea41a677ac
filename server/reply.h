/*
 * reply.h - what a handler answers: status, body, content type and the
 * few headers the API needs (Allow, Retry-After). JSON replies are
 * serialized with 9 significant digits for reals, which round-trips every
 * float32 score exactly.
 */
#ifndef SRV_REPLY_H
#define SRV_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

struct srv_reply {
	int status;
	char *body; /* malloc'ed */
	size_t len;
	const char *content_type;
	char allow[64];
	int retry_after;
	const char *error_code; /* for logs and metrics, when an error */
	/* Set by the HTTP layer: errors in Qdrant's envelope, timed from t0. */
	bool qdrant;
	double t0; /* monotonic seconds at the request's start */
};

/* Serializes j (reference stolen) as the body. */
void srv_reply_json(struct srv_reply *r, int status, json_t *j);
/*
 * The API's error envelope, {"error": {"code", "message"}}; on the
 * Qdrant-compatible surface (r->qdrant) Qdrant's, {"status": {"error":
 * message}, "time": seconds}.
 */
void srv_reply_error(struct srv_reply *r, const struct srv_error *e);
/* A Qdrant success: {"result": result, "status": "ok", "time": seconds}. */
void srv_reply_qdrant(struct srv_reply *r, int status, json_t *result);
/* Seconds since the epoch (the wall clock). */
double srv_unix_now(void);
/* t (seconds since the epoch) as an ISO 8601 UTC string. */
json_t *srv_iso_time(double t);
/* Seconds on the monotonic clock. */
double srv_now(void);
/* A plain body (copied). */
void srv_reply_text(struct srv_reply *r, int status, const char *ctype,
		    const char *body, size_t len);
void srv_reply_free(struct srv_reply *r);

/* A float32 as a JSON real (or integer when whole, as jansson prints). */
json_t *srv_json_float(float x);
/* An id, exact for all 64 bits (jansson's integers are signed). */
json_t *srv_json_u64(uint64_t x);
/* A JSON array of n floats. */
json_t *srv_json_floats(const float *x, size_t n);

#endif
