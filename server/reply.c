/*
 * reply.c - building replies (see reply.h).
 *
 * Ids above INT64_MAX cannot be jansson integers; they are emitted as a
 * placeholder real and patched into the text after serialization, so the
 * JSON carries the exact integer. Below that, ids are plain integers.
 */
#include "reply.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char overload_body[] = "{\"error\": {\"code\": \"overloaded\", "
				    "\"message\": \"out of memory\"}}";

void srv_reply_text(struct srv_reply *r, int status, const char *ctype,
		    const char *body, size_t len)
{
	r->status = status;
	r->content_type = ctype;
	r->body = malloc(len ? len : 1);
	if (!r->body) {
		r->status = 503;
		r->body = strdup(overload_body);
		r->len = r->body ? strlen(r->body) : 0;
		r->content_type = "application/json";
		return;
	}
	memcpy(r->body, body, len);
	r->len = len;
}

/* Big ids travel as "\u0002<digits>" strings, unquoted after dumping. */
#define BIG_TAG "\002"

static char *unquote_big_ids(char *s)
{
	char *p = strstr(s, "\"\\u0002");
	char *w;

	if (!p)
		return s;
	for (w = p; *p;) {
		if (strncmp(p, "\"\\u0002", 7) == 0) {
			p += 7;
			while (*p && *p != '"')
				*w++ = *p++;
			if (*p)
				p++;
		} else {
			*w++ = *p++;
		}
	}
	*w = '\0';
	return s;
}

void srv_reply_json(struct srv_reply *r, int status, json_t *j)
{
	char *s =
		j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;

	json_decref(j);
	r->status = status;
	r->content_type = "application/json";
	if (!s) {
		r->status = 503;
		r->body = strdup(overload_body);
		r->len = r->body ? strlen(r->body) : 0;
		return;
	}
	r->body = unquote_big_ids(s);
	r->len = strlen(r->body);
}

double srv_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double took(const struct srv_reply *r)
{
	return r->t0 > 0 ? srv_now() - r->t0 : 0.0;
}

void srv_reply_qdrant(struct srv_reply *r, int status, json_t *result)
{
	srv_reply_json(r, status,
		       result ? json_pack("{s:o,s:s,s:f}", "result", result,
					  "status", "ok", "time", took(r))
			      : NULL);
}

void srv_reply_error(struct srv_reply *r, const struct srv_error *e)
{
	json_t *j = r->qdrant ? json_pack("{s:{s:s},s:f}", "status", "error",
					  e->msg, "time", took(r))
			      : json_pack("{s:{s:s,s:s}}", "error", "code",
					  e->code, "message", e->msg);

	srv_reply_json(r, e->http, j);
	r->error_code = e->code;
	r->retry_after = e->retry_after;
}

void srv_reply_free(struct srv_reply *r)
{
	free(r->body);
	r->body = NULL;
}

json_t *srv_json_float(float x)
{
	return json_real((double)x);
}

json_t *srv_json_u64(uint64_t x)
{
	char buf[32];

	if (x <= (uint64_t)INT64_MAX)
		return json_integer((json_int_t)x);
	snprintf(buf, sizeof buf, BIG_TAG "%" PRIu64, x);
	return json_string(buf);
}

json_t *srv_json_floats(const float *x, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_real((double)x[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

double srv_unix_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

json_t *srv_iso_time(double t)
{
	char buf[40];
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}
