/*
 * api_qdrant.c - the Qdrant-compatible surface (API.md "Qdrant-compatible
 * subset"): one collection, named by --collection, whose points are the
 * targets, whose default vector is the corrected one and whose vector
 * named "stale" is the cached one. Searches go through the same
 * dispatcher as /v1/search and give the same ids and scores; an upsert is
 * a training update, logged exactly as /v1/updates logs one.
 *
 * Shapes are Qdrant's own: {"result", "status": "ok", "time"} around a
 * success, {"status": {"error"}, "time"} around an error (reply.c), point
 * ids unsigned integers. freshd keeps no payloads: a payload asked for is
 * {}, a payload given is refused, and a filter is refused rather than
 * ignored.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_qdrant.h"
#include "parse.h"
#include "server.h"

/* The Qdrant release whose REST shapes this surface follows. */
#define QDRANT_VERSION "1.19.0"

static bool is_collection(struct srv_server *srv, const char *name, size_t len)
{
	return strlen(srv->cfg.collection) == len &&
	       memcmp(srv->cfg.collection, name, len) == 0;
}

static bool no_collection(struct srv_error *e, const char *name, size_t len)
{
	return srv_fail(e, 404, "not_found",
			"Not found: Collection `%.*s` doesn't exist!",
			(int)(len > 255 ? 255 : len), name);
}

/* A point id: an unsigned integer (freshd has no UUID ids). */
bool srv_qdrant_point_id(json_t *v, const char *path, uint64_t *id,
			 struct srv_error *e)
{
	if (srv_is_text(v))
		return srv_bad(e,
			       "%s: freshd's point ids are unsigned "
			       "integers (the target ids); UUIDs are not "
			       "supported",
			       path);
	return srv_get_u64(v, path, id, e);
}

/* Refuses UUIDs in a list of point ids with point_id's message. */
bool srv_qdrant_uuid_free(json_t *list, const char *path, struct srv_error *e)
{
	for (size_t i = 0; json_is_array(list) && i < json_array_size(list);
	     i++) {
		char at[48];
		uint64_t id;
		snprintf(at, sizeof at, "%s[%zu]", path, i);
		if (srv_is_text(json_array_get(list, i)))
			return srv_qdrant_point_id(json_array_get(list, i), at,
						   &id, e);
	}
	return true;
}

/* with_payload / with_vector: a bool, or a selector (a list, include/exclude). */
bool srv_qdrant_selector(json_t *obj, const char *key, bool def, bool *out,
			 struct srv_error *e)
{
	json_t *v = json_object_get(obj, key);
	size_t n;

	*out = def;
	if (!v || json_is_null(v))
		return true;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return true;
	}
	if (srv_is_list(v, &n)) {
		*out = n > 0;
		return true;
	}
	if (json_is_object(v)) {
		*out = true;
		return true;
	}
	return srv_bad(e, "%s: expected a boolean or a selector", key);
}

size_t srv_qdrant_width(struct srv_server *srv, enum fresh_scoring scoring)
{
	return scoring == FRESH_SCORING_STALE
		       ? fresh_engine_dim(srv->engine)
		       : fresh_engine_fresh_dim(srv->engine);
}

/*
 * CollectionInfo in Qdrant 1.19's shape. freshd keeps no graph (m = 0 is
 * Qdrant's "no HNSW": every search is an exact scan), no payloads and one
 * segment; the optimizer figures are Qdrant's defaults, reported because
 * typed clients require the fields.
 */
static json_t *collection_info(struct srv_server *srv)
{
	struct fresh_engine_info info;

	fresh_engine_info(srv->engine, &info);
	return json_pack(
		"{s:s,s:s,s:I,s:I,s:i,"
		"s:{s:{s:{s:I,s:s},s:i,s:i,s:i,s:b},"
		"s:{s:i,s:i,s:i,s:i},"
		"s:{s:f,s:i,s:i,s:n,s:n,s:n,s:i,s:n},"
		"s:{s:i,s:i},s:n},"
		"s:{},s:{s:i}}",
		"status", "green", "optimizer_status", "ok", "points_count",
		(json_int_t)info.targets, "indexed_vectors_count",
		(json_int_t)0, "segments_count", 1, "config", "params",
		"vectors", "size", (json_int_t)info.fresh_dim, "distance",
		"Dot", "shard_number", 1, "replication_factor", 1,
		"write_consistency_factor", 1, "on_disk_payload", 1,
		"hnsw_config", "m", 0, "ef_construct", 100,
		"full_scan_threshold", 10000, "max_indexing_threads", 0,
		"optimizer_config", "deleted_threshold", 0.2,
		"vacuum_min_vector_number", 1000, "default_segment_number", 0,
		"max_segment_size", "memmap_threshold", "indexing_threshold",
		"flush_interval_sec", 5, "max_optimization_threads",
		"wal_config", "wal_capacity_mb", 32, "wal_segments_ahead", 0,
		"quantization_config", "payload_schema", "update_queue",
		"length", 0);
}

void srv_api_qdrant_root(struct srv_request *req, struct srv_reply *r)
{
	(void)req;
	srv_reply_json(r, 200,
		       json_pack("{s:s,s:s,s:s}", "title",
				 "qdrant - vector search engine", "version",
				 QDRANT_VERSION, "freshd", FRESHD_VERSION));
}

void srv_api_qdrant(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	const char *url = req->url, *name, *rest;
	const char *m = req->method;
	struct srv_error e;
	size_t len;

	if (strcmp(url, "/collections") == 0) {
		srv_reply_qdrant(r, 200,
				 json_pack("{s:[{s:s}]}", "collections", "name",
					   srv->cfg.collection));
		return;
	}
	name = url + strlen("/collections/");
	len = strcspn(name, "/");
	rest = name + len;
	if (strcmp(rest, "/exists") == 0 && strcmp(m, "GET") == 0) {
		srv_reply_qdrant(r, 200,
				 json_pack("{s:b}", "exists",
					   is_collection(srv, name, len)));
		return;
	}
	if (!is_collection(srv, name, len)) {
		no_collection(&e, name, len);
		srv_reply_error(r, &e);
		return;
	}
	if (strcmp(rest, "") == 0 && strcmp(m, "GET") == 0)
		srv_reply_qdrant(r, 200, collection_info(srv));
	else if (strcmp(rest, "/points/query") == 0 && strcmp(m, "POST") == 0)
		srv_qdrant_search(req, r, true, false);
	else if (strcmp(rest, "/points/query/batch") == 0 &&
		 strcmp(m, "POST") == 0)
		srv_qdrant_search(req, r, true, true);
	else if (strcmp(rest, "/points/search") == 0 && strcmp(m, "POST") == 0)
		srv_qdrant_search(req, r, false, false);
	else if (strcmp(rest, "/points/search/batch") == 0 &&
		 strcmp(m, "POST") == 0)
		srv_qdrant_search(req, r, false, true);
	else if (strcmp(rest, "/points") == 0 && strcmp(m, "POST") == 0)
		srv_qdrant_retrieve(req, r);
	else if (strcmp(rest, "/points") == 0 && strcmp(m, "PUT") == 0)
		srv_qdrant_upsert(req, r);
	else if (strcmp(rest, "") == 0 || strcmp(rest, "/points") == 0 ||
		 strcmp(rest, "/points/query") == 0 ||
		 strcmp(rest, "/points/query/batch") == 0 ||
		 strcmp(rest, "/points/search") == 0 ||
		 strcmp(rest, "/points/search/batch") == 0) {
		const char *allow = strcmp(rest, "") == 0	   ? "GET"
				    : strcmp(rest, "/points") == 0 ? "POST, PUT"
								   : "POST";
		srv_fail(&e, 405, "method_not_allowed",
			 "freshd does not implement %s %.300s (allowed: %s)", m,
			 url, allow);
		snprintf(r->allow, sizeof r->allow, "%s", allow);
		srv_reply_error(r, &e);
	} else {
		srv_fail(
			&e, 404, "not_found",
			"freshd does not implement %s %.300s (its Qdrant-"
			"compatible subset: GET "
			"/collections[/{name}[/exists]], "
			"POST /collections/{name}/points[/query[/batch]|/search"
			"[/batch]], PUT /collections/{name}/points)",
			m, url);
		srv_reply_error(r, &e);
	}
}
