/*
 * coord.h - freshd --shards: the coordinator. It serves the /v1 API over
 * shard daemons, each serving one id range of the index (API.md
 * --shards): searches and negatives are merged exactly, updates are
 * routed to the shard that owns each target, and the one corrector is
 * trained here, on the pairs the shards buffered, and installed on every
 * shard. The coordinator keeps no state on disk: the shards' data dirs
 * hold the pairs and the checkpoints.
 */
#ifndef SRV_COORD_H
#define SRV_COORD_H

#include <stddef.h>

#include "server.h"

/* Starts the coordinator over srv->cfg.shards (health and refit threads). */
enum fresh_status srv_coord_start(struct srv_server *srv, char *err,
				  size_t cap);
/*
 * Shutdown, first step: a running refit is abandoned and requests waiting
 * for one are answered, so that the HTTP server can stop. Accepts NULL.
 */
void srv_coord_quiesce(struct srv_coord *c);
/* Abandons a running refit, stops the threads, frees. Accepts NULL. */
void srv_coord_stop(struct srv_coord *c);

void srv_coord_healthz(struct srv_request *req, struct srv_reply *r);
void srv_coord_readyz(struct srv_request *req, struct srv_reply *r);
void srv_coord_metrics(struct srv_request *req, struct srv_reply *r);
void srv_coord_info(struct srv_request *req, struct srv_reply *r);
void srv_coord_search(struct srv_request *req, struct srv_reply *r);
void srv_coord_negatives(struct srv_request *req, struct srv_reply *r);
void srv_coord_updates(struct srv_request *req, struct srv_reply *r);
void srv_coord_refit(struct srv_request *req, struct srv_reply *r);
void srv_coord_corrector(struct srv_request *req, struct srv_reply *r);
void srv_coord_reset(struct srv_request *req, struct srv_reply *r);
void srv_coord_checkpoint_get(struct srv_request *req, struct srv_reply *r);
void srv_coord_checkpoint_put(struct srv_request *req, struct srv_reply *r);
void srv_coord_target(struct srv_request *req, struct srv_reply *r);
void srv_coord_corrected(struct srv_request *req, struct srv_reply *r);
void srv_coord_pairs_delete(struct srv_request *req, struct srv_reply *r);
void srv_coord_reload(struct srv_request *req, struct srv_reply *r);
void srv_coord_query_map(struct srv_request *req, struct srv_reply *r);

#endif
