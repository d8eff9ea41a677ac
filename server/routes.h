/*
 * routes.h - which handler serves a request (routes.c).
 */
#ifndef SRV_ROUTES_H
#define SRV_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "server.h"

struct srv_route_def {
	const char *path; /* exact, or prefix ending in '/' with is_prefix */
	bool is_prefix;
	const char *method;
	enum srv_route route;
	srv_handler handler;
	enum srv_auth auth; /* needed; NONE = open */
	bool json;	    /* body is JSON (content type checked) */
};

/*
 * The route of method on url in the server's table (the coordinator's
 * with --shards), or NULL. *path_known says whether some method serves
 * the path; allow (cap bytes) gets those methods, for a 405's Allow.
 */
const struct srv_route_def *srv_find_route(const struct srv_server *srv,
					   const char *url, const char *method,
					   char *allow, size_t cap,
					   bool *path_known);

#endif
