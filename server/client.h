/*
 * client.h - the coordinator's HTTP/1.1 client to its shards: keep-alive
 * connections pooled per shard, a deadline on every call, and calls split
 * in two (send, then receive) so that one request can be sent to every
 * shard before any answer is read.
 *
 * Threads: a client is shared; each call owns its connection from
 * srv_call_send to srv_call_recv.
 */
#ifndef SRV_CLIENT_H
#define SRV_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct srv_client;

/* url: http://HOST:PORT (a trailing '/' is allowed); key may be "". */
struct srv_client *srv_client_create(const char *url, const char *key,
				     char *err, size_t cap);
void srv_client_free(struct srv_client *c);
const char *srv_client_url(const struct srv_client *c);

struct srv_call {
	/* The answer, after srv_call_recv returned true. */
	int status;
	char *body; /* malloc'ed, NUL-ended; caller frees (srv_call_done) */
	size_t len;
	char error[512]; /* why the shard could not be reached */
	/* Internal. */
	struct srv_client *client;
	int fd;
	bool reused, sent;
	double deadline;
	const char *method, *path, *ctype;
	const void *req_body;
	size_t req_len;
};

/*
 * Sends method path with the body (ctype may be NULL when len is 0). The
 * body must stay valid until srv_call_recv returns. False (call->error)
 * when the shard cannot be reached; srv_call_recv then reports it too.
 */
bool srv_call_send(struct srv_call *call, struct srv_client *c,
		   const char *method, const char *path, const char *ctype,
		   const void *body, size_t len, double timeout_s);
/* Reads the answer. False (call->error) when the shard failed. */
bool srv_call_recv(struct srv_call *call);
/* Frees the answer's body. */
void srv_call_done(struct srv_call *call);

/* send + recv. */
bool srv_call(struct srv_call *call, struct srv_client *c, const char *method,
	      const char *path, const char *ctype, const void *body, size_t len,
	      double timeout_s);

#endif
