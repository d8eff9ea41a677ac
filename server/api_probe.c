/*
 * api_probe.c - GET /healthz and /readyz.
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

void srv_api_healthz(struct srv_request *req, struct srv_reply *r)
{
	(void)req;
	srv_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void srv_api_readyz(struct srv_request *req, struct srv_reply *r)
{
	/* The engine publishes its model before HTTP starts. */
	(void)req;
	srv_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}
