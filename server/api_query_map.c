/*
 * api_query_map.c - GET /v1/corrector/query-map: an affine corrector
 * handed out as a map of queries, so that a store holding only the stale
 * vectors answers corrected queries: <q, h(s)> = <Wᵀq, s> + <q, b>.
 *
 * Forms: JSON with W and b in base64 float32 (default), JSON with nested
 * arrays (?format=json), or one .npy of float32 [W | b], d_out x (d_in +
 * 1), when the client accepts application/octet-stream.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "server.h"

static const char formula[] =
	"corrected score = <q, W s + b> = <W^T q, s> + <q, b>; W is d_out x "
	"d_in (row i: output i), s a stale vector, q a query of width d_out";

static json_t *b64_floats(const float *x, size_t n)
{
	size_t len = 4 * ((n * sizeof *x + 2) / 3);
	char *s = malloc(len + 1);
	json_t *j;

	if (!s)
		return NULL;
	srv_base64_encode((const unsigned char *)x, n * sizeof *x, s);
	s[len] = '\0';
	j = json_string(s);
	free(s);
	return j;
}

static bool wants_npy(struct srv_request *req)
{
	const char *a = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
						    "Accept");
	return a && strstr(a, "application/octet-stream") != NULL;
}

/* [W | b] as one .npy (version 1.0, little-endian float32, C order). */
static void reply_npy(struct srv_reply *r, const struct fresh_query_map *qm)
{
	char head[128];
	size_t cols = qm->d_in + 1, hl, total;
	int n = snprintf(head, sizeof head,
			 "{'descr': '<f4', 'fortran_order': False, "
			 "'shape': (%zu, %zu), }",
			 qm->d_out, cols);
	char *buf;

	hl = (size_t)n + 1; /* the newline */
	while ((10 + hl) % 64)
		hl++;
	total = 10 + hl + qm->d_out * cols * sizeof(float);
	buf = malloc(total);
	if (!buf) {
		struct srv_error e;
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
		return;
	}
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (char)(hl & 0xff);
	buf[9] = (char)(hl >> 8);
	memset(buf + 10, ' ', hl);
	memcpy(buf + 10, head, (size_t)n);
	buf[10 + hl - 1] = '\n';
	for (size_t i = 0; i < qm->d_out; i++) {
		float *row = (float *)(void *)(buf + 10 + hl) + i * cols;
		memcpy(row, qm->w + i * qm->d_in, qm->d_in * sizeof(float));
		row[qm->d_in] = qm->b[i];
	}
	r->status = 200;
	r->content_type = "application/octet-stream";
	r->body = buf;
	r->len = total;
}

void srv_api_query_map(struct srv_request *req, struct srv_reply *r)
{
	static const char *const formats[] = {"b64", "json", NULL};
	struct srv_server *srv = req->srv;
	const char *f = srv_query_arg(req, "format");
	struct fresh_query_map qm;
	struct srv_error e;
	enum fresh_status st;
	json_t *j, *w, *b;
	int format = 0;

	if (f) {
		for (format = 0; formats[format]; format++)
			if (strcmp(f, formats[format]) == 0)
				break;
		if (!formats[format]) {
			srv_bad(&e, "format: '%.32s' is not one of b64, json",
				f);
			srv_reply_error(r, &e);
			return;
		}
	}
	st = fresh_engine_query_map(srv->engine, &qm);
	if (st == FRESH_CONFLICT) {
		srv_fail(&e, 409, "not_affine",
			 "the published corrector (%s%s, version %llu) is not "
			 "affine in the stale vector, so it has no query map",
			 qm.kind, qm.normalize ? ", normalized output" : "",
			 (unsigned long long)qm.version);
		srv_reply_error(r, &e);
		return;
	}
	if (st != FRESH_OK) {
		srv_error_corrected(&e, st);
		srv_reply_error(r, &e);
		return;
	}
	if (wants_npy(req)) {
		reply_npy(r, &qm);
		free(qm.w);
		free(qm.b);
		return;
	}
	if (format == 1) {
		w = json_array();
		for (size_t i = 0; w && i < qm.d_out; i++)
			json_array_append_new(
				w,
				srv_json_floats(qm.w + i * qm.d_in, qm.d_in));
		b = srv_json_floats(qm.b, qm.d_out);
	} else {
		w = b64_floats(qm.w, qm.d_out * qm.d_in);
		b = b64_floats(qm.b, qm.d_out);
	}
	j = json_pack("{s:I,s:s,s:I,s:I,s:s,s:o,s:o,s:s}", "version",
		      (json_int_t)qm.version, "kind", qm.kind, "d_in",
		      (json_int_t)qm.d_in, "d_out", (json_int_t)qm.d_out,
		      "encoding", format == 1 ? "json" : "base64 float32",
		      format == 1 ? "w" : "w_b64", w,
		      format == 1 ? "b" : "b_b64", b, "formula", formula);
	srv_reply_json(r, 200, j);
	free(qm.w);
	free(qm.b);
}
