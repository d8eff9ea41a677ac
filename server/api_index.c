/*
 * api_index.c - the index as a resource: POST /v1/index/reload.
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

/* A string field into buf (NUL-ended); false when too long. */
static bool string_field(json_t *v, char *buf, size_t cap)
{
	size_t len;
	const char *s = srv_string(v, &len);

	if (!s || len >= cap || memchr(s, '\0', len))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return true;
}

void srv_api_reload(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"path", "ids_path", NULL};
	char path[4096], ids[4096];
	struct fresh_error ferr;
	struct srv_error e;
	json_t *body = NULL, *pv, *iv;
	enum fresh_status st;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e))
		goto fail;
	pv = json_object_get(body, "path");
	iv = json_object_get(body, "ids_path");
	if (!json_is_string(pv) || !string_field(pv, path, sizeof path)) {
		srv_bad(&e, "path: %s",
			pv ? "expected a file name" : "missing");
		goto fail;
	}
	if (iv && !json_is_null(iv) &&
	    (!json_is_string(iv) || !string_field(iv, ids, sizeof ids))) {
		srv_bad(&e, "ids_path: expected a file name");
		goto fail;
	}
	st = fresh_engine_reload(req->srv->engine, path,
				 json_is_string(iv) ? ids : NULL, &ferr);
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		goto fail;
	}
	srv_reply_json(r, 202, json_pack("{s:s}", "state", "loading"));
	srv_body_release(body);
	return;
fail:
	srv_reply_error(r, &e);
	srv_body_release(body);
}
