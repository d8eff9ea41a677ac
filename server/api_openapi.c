/*
 * api_openapi.c - GET /openapi.json: this API (and the Qdrant-compatible
 * subset) as an OpenAPI 3 document, server/openapi.json compiled in.
 * tests/integration/test_openapi.py keeps it true: every route the server
 * answers is in it, and API.md's examples validate against it.
 */
#include <stddef.h>

#include "server.h"

extern const char srv_openapi_doc[];
extern const size_t srv_openapi_doc_len;

void srv_api_openapi(struct srv_request *req, struct srv_reply *r)
{
	(void)req;
	srv_reply_text(r, 200, "application/json", srv_openapi_doc,
		       srv_openapi_doc_len);
}
