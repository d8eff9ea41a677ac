/*
 * routes.c - the route tables: for each path and method, its handler, the
 * key it needs and whether its body is JSON; one table for a daemon, one
 * for the coordinator (--shards). Metrics count per route (names here).
 */
#include <stdio.h>
#include <string.h>

#include "coord.h"
#include "routes.h"

static const struct srv_route_def routes[] = {
	{"/healthz", false, "GET", SRV_ROUTE_HEALTHZ, srv_api_healthz,
	 SRV_AUTH_NONE, false},
	{"/readyz", false, "GET", SRV_ROUTE_READYZ, srv_api_readyz,
	 SRV_AUTH_NONE, false},
	{"/metrics", false, "GET", SRV_ROUTE_METRICS, srv_api_metrics,
	 SRV_AUTH_NONE, false},
	{"/v1/info", false, "GET", SRV_ROUTE_INFO, srv_api_info, SRV_AUTH_READ,
	 false},
	{"/v1/search", false, "POST", SRV_ROUTE_SEARCH, srv_api_search,
	 SRV_AUTH_READ, true},
	{"/v1/negatives", false, "POST", SRV_ROUTE_NEGATIVES, srv_api_negatives,
	 SRV_AUTH_READ, true},
	{"/v1/updates", false, "POST", SRV_ROUTE_UPDATES, srv_api_updates,
	 SRV_AUTH_WRITE, true},
	{"/v1/refit", false, "POST", SRV_ROUTE_REFIT, srv_api_refit,
	 SRV_AUTH_WRITE, true},
	{"/v1/corrector", false, "GET", SRV_ROUTE_CORRECTOR, srv_api_corrector,
	 SRV_AUTH_READ, false},
	{"/v1/corrector/reset", false, "POST", SRV_ROUTE_RESET, srv_api_reset,
	 SRV_AUTH_WRITE, true},
	{"/v1/corrector/checkpoint", false, "GET", SRV_ROUTE_CHECKPOINT,
	 srv_api_checkpoint_get, SRV_AUTH_READ, false},
	{"/v1/corrector/checkpoint", false, "PUT", SRV_ROUTE_CHECKPOINT,
	 srv_api_checkpoint_put, SRV_AUTH_WRITE, false},
	{"/v1/corrector/checkpoint/commit", false, "POST", SRV_ROUTE_CHECKPOINT,
	 srv_api_checkpoint_commit, SRV_AUTH_WRITE, false},
	{"/v1/corrector/checkpoint/staged", false, "DELETE",
	 SRV_ROUTE_CHECKPOINT, srv_api_checkpoint_unstage, SRV_AUTH_WRITE,
	 false},
	{"/v1/targets/", true, "GET", SRV_ROUTE_TARGET, srv_api_target,
	 SRV_AUTH_READ, false},
	{"/v1/corrected", false, "POST", SRV_ROUTE_CORRECTED, srv_api_corrected,
	 SRV_AUTH_READ, true},
	{"/v1/pairs", false, "DELETE", SRV_ROUTE_PAIRS, srv_api_pairs_delete,
	 SRV_AUTH_WRITE, false},
	{"/v1/pairs", false, "GET", SRV_ROUTE_PAIRS, srv_api_pairs_get,
	 SRV_AUTH_READ, false},
	{"/v1/ids", false, "GET", SRV_ROUTE_IDS, srv_api_ids, SRV_AUTH_READ,
	 false},
	{"/v1/index/reload", false, "POST", SRV_ROUTE_RELOAD, srv_api_reload,
	 SRV_AUTH_WRITE, true},
	{"/v1/demo/fresh", false, "POST", SRV_ROUTE_DEMO_FRESH,
	 srv_api_demo_fresh, SRV_AUTH_READ, true},
	{"/v1/demo/truth", false, "POST", SRV_ROUTE_DEMO_TRUTH,
	 srv_api_demo_truth, SRV_AUTH_READ, true},
	{"/v1/corrector/query-map", false, "GET", SRV_ROUTE_QUERY_MAP,
	 srv_api_query_map, SRV_AUTH_READ, false},
	{"/openapi.json", false, "GET", SRV_ROUTE_OPENAPI, srv_api_openapi,
	 SRV_AUTH_NONE, false},
	/* The Qdrant-compatible surface: the version check is open, as in
	 * Qdrant; api_qdrant.c routes what is under /collections/ itself. */
	{"/", false, "GET", SRV_ROUTE_QDRANT_ROOT, srv_api_qdrant_root,
	 SRV_AUTH_NONE, false},
	{"/collections", false, "GET", SRV_ROUTE_QDRANT, srv_api_qdrant,
	 SRV_AUTH_READ, false},
	{"/collections/", true, "*", SRV_ROUTE_QDRANT, srv_api_qdrant,
	 SRV_AUTH_READ, true},
};

#define NROUTES (sizeof routes / sizeof *routes)

/* --shards: the same API over the shards (coord.h). */
static const struct srv_route_def coord_routes[] = {
	{"/healthz", false, "GET", SRV_ROUTE_HEALTHZ, srv_coord_healthz,
	 SRV_AUTH_NONE, false},
	{"/readyz", false, "GET", SRV_ROUTE_READYZ, srv_coord_readyz,
	 SRV_AUTH_NONE, false},
	{"/metrics", false, "GET", SRV_ROUTE_METRICS, srv_coord_metrics,
	 SRV_AUTH_NONE, false},
	{"/v1/info", false, "GET", SRV_ROUTE_INFO, srv_coord_info,
	 SRV_AUTH_READ, false},
	{"/v1/search", false, "POST", SRV_ROUTE_SEARCH, srv_coord_search,
	 SRV_AUTH_READ, true},
	{"/v1/negatives", false, "POST", SRV_ROUTE_NEGATIVES,
	 srv_coord_negatives, SRV_AUTH_READ, true},
	{"/v1/updates", false, "POST", SRV_ROUTE_UPDATES, srv_coord_updates,
	 SRV_AUTH_WRITE, true},
	{"/v1/refit", false, "POST", SRV_ROUTE_REFIT, srv_coord_refit,
	 SRV_AUTH_WRITE, true},
	{"/v1/corrector", false, "GET", SRV_ROUTE_CORRECTOR,
	 srv_coord_corrector, SRV_AUTH_READ, false},
	{"/v1/corrector/reset", false, "POST", SRV_ROUTE_RESET, srv_coord_reset,
	 SRV_AUTH_WRITE, true},
	{"/v1/corrector/checkpoint", false, "GET", SRV_ROUTE_CHECKPOINT,
	 srv_coord_checkpoint_get, SRV_AUTH_READ, false},
	{"/v1/corrector/checkpoint", false, "PUT", SRV_ROUTE_CHECKPOINT,
	 srv_coord_checkpoint_put, SRV_AUTH_WRITE, false},
	{"/v1/targets/", true, "GET", SRV_ROUTE_TARGET, srv_coord_target,
	 SRV_AUTH_READ, false},
	{"/v1/corrected", false, "POST", SRV_ROUTE_CORRECTED,
	 srv_coord_corrected, SRV_AUTH_READ, true},
	{"/v1/pairs", false, "DELETE", SRV_ROUTE_PAIRS, srv_coord_pairs_delete,
	 SRV_AUTH_WRITE, false},
	{"/v1/index/reload", false, "POST", SRV_ROUTE_RELOAD, srv_coord_reload,
	 SRV_AUTH_WRITE, true},
	{"/v1/corrector/query-map", false, "GET", SRV_ROUTE_QUERY_MAP,
	 srv_coord_query_map, SRV_AUTH_READ, false},
	{"/openapi.json", false, "GET", SRV_ROUTE_OPENAPI, srv_api_openapi,
	 SRV_AUTH_NONE, false},
};

#define NCOORD_ROUTES (sizeof coord_routes / sizeof *coord_routes)

const char *const srv_route_names[SRV_ROUTE_COUNT] = {"healthz",
						      "readyz",
						      "metrics",
						      "info",
						      "search",
						      "negatives",
						      "updates",
						      "refit",
						      "corrector",
						      "corrector_reset",
						      "corrector_checkpoint",
						      "targets",
						      "corrected",
						      "pairs",
						      "index_reload",
						      "demo_fresh",
						      "demo_truth",
						      "corrector_query_map",
						      "qdrant_root",
						      "qdrant",
						      "openapi",
						      "ids",
						      "unknown"};

/* Codes counted per route, in srv_route_stats.by_code order. */
const int srv_counted_codes[SRV_CODES] = {200, 202, 400, 401, 403, 404,
					  405, 409, 413, 415, 431, 500,
					  503, 0,   0,	 0};

const struct srv_route_def *srv_find_route(const struct srv_server *srv,
					   const char *url, const char *method,
					   char *allow, size_t cap,
					   bool *path_known)
{
	const struct srv_route_def *hit = NULL, *table = routes;
	size_t count = NROUTES;

	if (srv->coord) {
		table = coord_routes;
		count = NCOORD_ROUTES;
	}
	allow[0] = '\0';
	*path_known = false;
	for (size_t i = 0; i < count; i++) {
		const struct srv_route_def *d = &table[i];
		bool match = d->is_prefix ? strncmp(url, d->path,
						    strlen(d->path)) == 0 &&
						    url[strlen(d->path)] != '\0'
					  : strcmp(url, d->path) == 0;
		if (!match)
			continue;
		*path_known = true;
		snprintf(allow + strlen(allow), cap - strlen(allow), "%s%s",
			 allow[0] ? ", " : "", d->method);
		if (strcmp(d->method, "*") == 0 ||
		    strcmp(method, d->method) == 0)
			hit = d;
	}
	return hit;
}
