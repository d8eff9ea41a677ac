/*
 * api_shard.c - what a coordinator reads of a shard (API.md --shards):
 * GET /v1/ids, the ids this daemon serves, and GET /v1/pairs, its
 * buffered pairs with their stale rows (the coordinator's refit trains on
 * them). Both are application/octet-stream, little-endian.
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "wire.h"

#define IDS_MAGIC "FRSHIDS1"

/* "FRSHIDS1", u64 n, u64 the index's fingerprint, n x u64 ids. */
void srv_api_ids(struct srv_request *req, struct srv_reply *r)
{
	uint64_t *ids, fp;
	size_t n;
	unsigned char *buf;
	struct srv_error e;
	enum fresh_status st =
		fresh_engine_ids(req->srv->engine, &ids, &n, &fp);

	if (st == FRESH_OK) {
		buf = malloc(24 + n * 8);
		if (!buf) {
			free(ids);
			st = FRESH_NOMEM;
		}
	}
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, NULL);
		srv_reply_error(r, &e);
		return;
	}
	memcpy(buf, IDS_MAGIC, 8);
	srv_put64(buf + 8, n);
	srv_put64(buf + 16, fp);
	for (size_t i = 0; i < n; i++)
		srv_put64(buf + 24 + 8 * i, ids[i]);
	free(ids);
	srv_reply_text(r, 200, "application/octet-stream", (char *)buf,
		       24 + n * 8);
	free(buf);
}

void srv_api_pairs_get(struct srv_request *req, struct srv_reply *r)
{
	void *buf;
	size_t len;
	struct srv_error e;
	enum fresh_status st =
		fresh_engine_export_pairs(req->srv->engine, &buf, &len);

	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, NULL);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_text(r, 200, "application/octet-stream", buf, len);
	free(buf);
}
