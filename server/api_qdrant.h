/*
 * api_qdrant.h - the Qdrant-compatible surface's parts (api_qdrant.c
 * routes, api_qdrant_search.c searches, api_qdrant_points.c retrieves and
 * upserts) and the request helpers they share. Internal to server/.
 */
#ifndef SRV_API_QDRANT_H
#define SRV_API_QDRANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server.h"

/* A point id: an unsigned integer (freshd has no UUID ids). */
bool srv_qdrant_point_id(json_t *v, const char *path, uint64_t *id,
			 struct srv_error *e);
/* Refuses UUIDs in a list of point ids with point_id's message. */
bool srv_qdrant_uuid_free(json_t *list, const char *path, struct srv_error *e);
/* with_payload / with_vector: a bool, or a selector (a list,
 * include/exclude). */
bool srv_qdrant_selector(json_t *obj, const char *key, bool def, bool *out,
			 struct srv_error *e);
/* The width of vectors scored the given way. */
size_t srv_qdrant_width(struct srv_server *srv, enum fresh_scoring scoring);

/* .../points/query (query) or .../points/search, one or a batch. */
void srv_qdrant_search(struct srv_request *req, struct srv_reply *r,
		       bool query_shape, bool batch);
/* POST .../points */
void srv_qdrant_retrieve(struct srv_request *req, struct srv_reply *r);
/* PUT .../points */
void srv_qdrant_upsert(struct srv_request *req, struct srv_reply *r);

#endif
