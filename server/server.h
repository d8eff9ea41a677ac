/*
 * server.h - freshd's HTTP server: the configuration it runs with, the
 * state handlers share, and the request a handler sees.
 *
 * Threads: libmicrohttpd runs one thread per connection (handlers block
 * on the dispatcher or on the update log's group commit, and that
 * blocking is what lets concurrent requests share a scan or an fsync);
 * the connection limit bounds the threads. Handlers share srv_server,
 * whose fields are set before the daemon starts and read-only after,
 * except the atomics.
 */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "demo.h"
#include "dispatch.h"
#include "engine.h"
#include "errors.h"
#include "metrics.h"
#include "reply.h"

struct srv_config {
	/* Index. */
	bool demo;
	size_t demo_size, demo_dim;
	uint64_t seed;
	const char *index_path, *ids_path;
	/* Sharding: this daemon is a shard, or coordinates these. */
	bool shard;
	const char *shards;
	/* Network and limits. */
	const char *listen;
	const char *collection; /* the Qdrant-compatible surface's one */
	size_t max_body, max_queries, max_connections, max_per_ip;
	unsigned connection_timeout;
	size_t max_batch, max_queue;
	size_t max_header;
	/* Auth. */
	const char *api_key_file, *read_key_file;
	bool insecure;
	/* Logs. */
	bool log_json;
	int log_level;
	/* The engine's own settings. */
	struct fresh_engine_config engine;
};

enum srv_auth { SRV_AUTH_NONE, SRV_AUTH_READ, SRV_AUTH_WRITE };

/* The routes; each has a handler and its own metrics. */
enum srv_route {
	SRV_ROUTE_HEALTHZ,
	SRV_ROUTE_READYZ,
	SRV_ROUTE_METRICS,
	SRV_ROUTE_INFO,
	SRV_ROUTE_SEARCH,
	SRV_ROUTE_NEGATIVES,
	SRV_ROUTE_UPDATES,
	SRV_ROUTE_REFIT,
	SRV_ROUTE_CORRECTOR,
	SRV_ROUTE_RESET,
	SRV_ROUTE_CHECKPOINT,
	SRV_ROUTE_TARGET,
	SRV_ROUTE_CORRECTED,
	SRV_ROUTE_PAIRS,
	SRV_ROUTE_RELOAD,
	SRV_ROUTE_DEMO_FRESH,
	SRV_ROUTE_DEMO_TRUTH,
	SRV_ROUTE_QUERY_MAP,
	SRV_ROUTE_QDRANT_ROOT,
	SRV_ROUTE_QDRANT,
	SRV_ROUTE_OPENAPI,
	SRV_ROUTE_IDS,
	SRV_ROUTE_UNKNOWN,
	SRV_ROUTE_COUNT
};

#define SRV_CODES 16

/* Metric labels of the routes, and the status codes counted per route. */
extern const char *const srv_route_names[SRV_ROUTE_COUNT];
extern const int srv_counted_codes[SRV_CODES];

struct srv_route_stats {
	atomic_ullong by_code[SRV_CODES];
	atomic_ullong in_handler; /* requests whose handler is running */
	struct srv_hist latency;
};

struct srv_server {
	struct srv_config cfg;
	struct fresh_engine *engine;
	struct fresh_demo *demo; /* --demo only */
	struct srv_dispatch *dispatch;
	struct srv_coord *coord;	    /* --shards only (no engine then) */
	char write_key[256], read_key[256]; /* empty: none */
	double started_at;		    /* unix time */
	char index_source[4096];
	double index_loaded_at;
	struct srv_route_stats routes[SRV_ROUTE_COUNT];
	atomic_ullong request_ids;
};

struct srv_request {
	struct srv_server *srv;
	enum srv_route route;
	const char *method;
	uint64_t id;
	struct MHD_Connection *conn;
	const char *body;
	size_t body_len;
	uint64_t target_id; /* SRV_ROUTE_TARGET */
	const char *url;    /* the path, without the query string */
	enum srv_auth auth; /* what the presented key may do */
	bool qdrant;	    /* errors in Qdrant's envelope */
};

/* The query-string argument key, or NULL. */
const char *srv_query_arg(const struct srv_request *req, const char *key);
/* Whether ?key=true (or 1). */
bool srv_query_flag(const struct srv_request *req, const char *key);

typedef void (*srv_handler)(struct srv_request *req, struct srv_reply *r);

/* Handlers, by file. */
void srv_api_healthz(struct srv_request *req, struct srv_reply *r);
void srv_api_readyz(struct srv_request *req, struct srv_reply *r);
void srv_api_metrics(struct srv_request *req, struct srv_reply *r);
void srv_api_info(struct srv_request *req, struct srv_reply *r);
void srv_api_target(struct srv_request *req, struct srv_reply *r);
void srv_api_corrected(struct srv_request *req, struct srv_reply *r);
void srv_api_search(struct srv_request *req, struct srv_reply *r);
void srv_api_negatives(struct srv_request *req, struct srv_reply *r);
void srv_api_updates(struct srv_request *req, struct srv_reply *r);
void srv_api_pairs_delete(struct srv_request *req, struct srv_reply *r);
void srv_api_pairs_get(struct srv_request *req, struct srv_reply *r);
void srv_api_ids(struct srv_request *req, struct srv_reply *r);
void srv_api_refit(struct srv_request *req, struct srv_reply *r);
void srv_api_corrector(struct srv_request *req, struct srv_reply *r);
void srv_api_reset(struct srv_request *req, struct srv_reply *r);
void srv_api_checkpoint_get(struct srv_request *req, struct srv_reply *r);
void srv_api_checkpoint_put(struct srv_request *req, struct srv_reply *r);
void srv_api_checkpoint_commit(struct srv_request *req, struct srv_reply *r);
void srv_api_checkpoint_unstage(struct srv_request *req, struct srv_reply *r);
void srv_api_reload(struct srv_request *req, struct srv_reply *r);
void srv_api_demo_fresh(struct srv_request *req, struct srv_reply *r);
void srv_api_demo_truth(struct srv_request *req, struct srv_reply *r);
void srv_api_query_map(struct srv_request *req, struct srv_reply *r);
void srv_api_qdrant_root(struct srv_request *req, struct srv_reply *r);
void srv_api_qdrant(struct srv_request *req, struct srv_reply *r);
void srv_api_openapi(struct srv_request *req, struct srv_reply *r);

/*
 * Runs a search or negatives job through the dispatcher (allocating its
 * outputs); false with e set on failure. srv_job_free frees the outputs.
 */
bool srv_run_query_job(struct srv_server *srv, struct srv_job *job,
		       struct srv_error *e);
void srv_job_free(struct srv_job *job);

/* The corrector's state as GET /v1/corrector shows it (also in /v1/info). */
json_t *srv_corrector_json(struct srv_server *srv);
/* A refit outcome as POST /v1/refit?wait=true answers it. */
/* One item of an update's "targets" or "queries" (api_updates.c). */
bool srv_update_item(json_t *item, const char *list, size_t i,
		     const char *id_key, size_t dim, uint64_t *id, float *vec,
		     struct srv_error *e);
/* The per-route request counts, latencies and in-progress gauges. */
void srv_route_metrics(struct srv_server *srv, struct srv_buf *b);
json_t *srv_refit_json(const struct fresh_refit_outcome *o);
/* POST /v1/refit?rows_only=true needs --serve-fresh-rows (else 409). */
bool srv_rows_only_allowed(const struct srv_request *req, bool rows_only,
			   struct srv_error *e);

/* Starts HTTP on cfg.listen; prints the listening line. */
struct srv_http;
enum fresh_status srv_http_start(struct srv_server *srv, struct srv_http **out,
				 char *err, size_t cap);
/* Stops accepting, finishes in-flight requests. */
void srv_http_quiesce(struct srv_http *h);
void srv_http_stop(struct srv_http *h);

#endif
