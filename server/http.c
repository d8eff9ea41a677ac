/*
 * http.c - libmicrohttpd glue: authentication, body limits, content
 * types, replies, per-route metrics. The route tables are routes.c's,
 * the --listen address listen.c's.
 *
 * Design: the access handler is called first with the headers only. Every
 * decision that does not need the body is made then, before any of it is
 * read: the route (404, 405 with Allow), the key (401, 403), the content
 * type (415) and the announced length (413). The body is then gathered
 * into one buffer, never past --max-body, and the handler runs on the
 * final call. A reply is queued exactly once per request.
 *
 * Threads: one per connection (see server.h); request contexts are owned
 * by their connection's thread and freed in the completion callback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "listen.h"
#include "routes.h"
#include "server.h"

struct srv_http {
	struct MHD_Daemon *mhd;
	struct srv_server *srv;
};

struct ctx {
	struct srv_request req;
	const struct srv_route_def *def;
	struct timespec start;
	struct srv_buf body; /* the request's, as it arrives */
	bool replied;	     /* a reply was queued before the body was read */
	double t0;	     /* srv_now() at the start */
	int status;
};

static double elapsed(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

const char *srv_query_arg(const struct srv_request *req, const char *key)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
					   key);
}

bool srv_query_flag(const struct srv_request *req, const char *key)
{
	const char *v = srv_query_arg(req, key);
	return v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* Queues r on the connection; frees r's body. */
static enum MHD_Result send_reply(struct ctx *c, struct srv_reply *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char rid[32], retry[16];

	resp = MHD_create_response_from_buffer(r->len, r->body,
					       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		srv_reply_free(r);
		return MHD_NO;
	}
	r->body = NULL;
	MHD_add_response_header(resp, "Content-Type",
				r->content_type ? r->content_type
						: "application/json");
	snprintf(rid, sizeof rid, "%" PRIu64, c->req.id);
	MHD_add_response_header(resp, "X-Request-Id", rid);
	if (r->allow[0])
		MHD_add_response_header(resp, "Allow", r->allow);
	if (r->retry_after > 0) {
		snprintf(retry, sizeof retry, "%d", r->retry_after);
		MHD_add_response_header(resp, "Retry-After", retry);
	}
	if (r->status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	c->status = r->status;
	if (r->status >= 500)
		srv_log_req(r->status == 500 ? SRV_ERROR : SRV_WARN, c->req.id,
			    "%s %s -> %d %s", c->req.method,
			    c->def ? c->def->path : "?", r->status,
			    r->error_code ? r->error_code : "");
	ret = MHD_queue_response(c->req.conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_error(struct ctx *c, int http, const char *code,
				  const char *allow, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result send_error(struct ctx *c, int http, const char *code,
				  const char *allow, const char *fmt, ...)
{
	struct srv_error e;
	struct srv_reply r;
	va_list ap;

	memset(&r, 0, sizeof r);
	r.qdrant = c->req.qdrant;
	r.t0 = c->t0;
	e.http = http;
	e.code = code;
	e.retry_after = http == 503 ? 1 : 0;
	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof e.msg, fmt, ap);
	va_end(ap);
	srv_reply_error(&r, &e);
	if (allow)
		snprintf(r.allow, sizeof r.allow, "%s", allow);
	c->replied = true;
	return send_reply(c, &r);
}

/* Constant-time comparison of a presented key with a configured one. */
static bool key_equal(const char *given, size_t glen, const char *want)
{
	size_t wlen = strlen(want);
	unsigned char diff = (unsigned char)(glen != wlen);

	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)(want[i] ^ (i < glen ? given[i] : 0));
	return diff == 0 && wlen > 0;
}

static enum srv_auth authenticate(struct srv_server *srv,
				  struct MHD_Connection *conn)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						    "Authorization");
	const char *key;
	size_t len;

	if (!srv->write_key[0])
		return SRV_AUTH_WRITE; /* no key configured: open */
	if (h && strncasecmp(h, "Bearer ", 7) == 0) {
		key = h + 7;
	} else {
		/* Qdrant's clients send the key in an api-key header. */
		key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						  "api-key");
		if (!key)
			return SRV_AUTH_NONE;
	}
	while (*key == ' ')
		key++;
	len = strlen(key);
	while (len > 0 && key[len - 1] == ' ')
		len--;
	/* Compare against both keys, always, so timing says nothing. */
	{
		bool w = key_equal(key, len, srv->write_key);
		bool r = srv->read_key[0] && key_equal(key, len, srv->read_key);
		return w ? SRV_AUTH_WRITE : r ? SRV_AUTH_READ : SRV_AUTH_NONE;
	}
}

static bool json_content_type(struct MHD_Connection *conn)
{
	const char *t = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						    "Content-Type");
	size_t n;

	if (!t || !*t)
		return true;
	n = strcspn(t, ";");
	while (n > 0 && t[n - 1] == ' ')
		n--;
	return (n == 16 && strncasecmp(t, "application/json", 16) == 0) ||
	       (n == 33 &&
		strncasecmp(t, "application/x-www-form-urlencoded", 33) == 0);
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind,
				       const char *key, const char *value)
{
	size_t *total = cls;

	(void)kind;
	*total += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* The first call: everything decided before the body is read. */
static enum MHD_Result on_headers(struct srv_server *srv, struct ctx *c,
				  const char *url, const char *method)
{
	char allow[64];
	bool known;
	const char *len_s;
	enum srv_auth auth = SRV_AUTH_WRITE;
	size_t header_bytes = strlen(url) + strlen(method) + 12;

	/*
	 * libmicrohttpd answers headers past its buffer itself (with HTML);
	 * its buffer is larger than --max-header-bytes, so that up to there
	 * the answer is ours and in the API's form.
	 */
	MHD_get_connection_values(c->req.conn, MHD_HEADER_KIND, add_header_size,
				  &header_bytes);
	if (header_bytes > srv->cfg.max_header)
		return send_error(
			c, 431, "request_header_fields_too_large", NULL,
			"request headers of %zu bytes exceed the limit "
			"of %zu (--max-header-bytes)",
			header_bytes, srv->cfg.max_header);

	c->req.url = url;
	c->req.qdrant = strcmp(url, "/") == 0 ||
			strcmp(url, "/collections") == 0 ||
			strncmp(url, "/collections/", 13) == 0;
	if (strncmp(url, "/v1/", 4) == 0 ||
	    (c->req.qdrant && strcmp(url, "/") != 0)) {
		auth = authenticate(srv, c->req.conn);
		if (auth == SRV_AUTH_NONE)
			return send_error(
				c, 401, "unauthorized", NULL,
				"a valid 'Authorization: Bearer <key>' "
				"or 'api-key: <key>' header is "
				"required");
	}
	c->req.auth = auth;
	c->def = srv_find_route(srv, url, method, allow, sizeof allow, &known);
	if (!c->def) {
		c->req.route = SRV_ROUTE_UNKNOWN;
		if (known)
			return send_error(
				c, 405, "method_not_allowed", allow,
				"%s is not allowed on %s (allowed: %s)", method,
				url, allow);
		return send_error(c, 404, "not_found", NULL, "no such path: %s",
				  url);
	}
	c->req.route = c->def->route;
	if (c->def->auth == SRV_AUTH_WRITE && auth == SRV_AUTH_READ)
		return send_error(c, 403, "forbidden", NULL,
				  "the read-only key cannot %s %s", method,
				  c->def->path);
	if (c->def->json && !json_content_type(c->req.conn))
		return send_error(c, 415, "unsupported_media_type", NULL,
				  "Content-Type must be application/json");
	len_s = MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND,
					    "Content-Length");
	if (len_s) {
		char *end;
		unsigned long long n;
		errno = 0;
		n = strtoull(len_s, &end, 10);
		if (errno == 0 && *end == '\0' && n > srv->cfg.max_body)
			return send_error(
				c, 413, "payload_too_large", NULL,
				"body of %llu bytes exceeds the limit "
				"of %zu (--max-body)",
				n, srv->cfg.max_body);
		if (errno == 0 && *end == '\0' && n > 0 &&
		    !srv_buf_reserve(&c->body, (size_t)n))
			return send_error(c, 503, "overloaded", NULL,
					  "out of memory");
	}
	if (c->def->route == SRV_ROUTE_TARGET) {
		const char *s = url + strlen(c->def->path);
		char *end;
		errno = 0;
		c->req.target_id = strtoull(s, &end, 10);
		if (*s < '0' || *s > '9' || errno == ERANGE || *end)
			return send_error(c, 404, "not_found", NULL,
					  "no target with id '%.64s'", s);
	}
	return MHD_YES;
}

/*
 * A body without Content-Length (chunked) passed --max-body. libmicrohttpd
 * 0.9.75 refuses to queue a response while a body is being received, so
 * the 413 is written to the socket directly and the connection is closed
 * (returning MHD_NO): the body is cut off where it passed the limit.
 */
static void cut_off(struct ctx *c, size_t limit)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		c->req.conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	char body[256], head[512];
	int nb, nh;

	c->replied = true;
	c->status = 413;
	if (!ci)
		return;
	nb = snprintf(body, sizeof body,
		      "{\"error\":{\"code\":\"payload_too_large\",\"message\":"
		      "\"body exceeds the limit of %zu bytes (--max-body)\"}}",
		      limit);
	nh = snprintf(head, sizeof head,
		      "HTTP/1.1 413 Payload Too Large\r\n"
		      "Content-Type: application/json\r\n"
		      "Content-Length: %d\r\nX-Request-Id: %" PRIu64 "\r\n"
		      "Connection: close\r\n\r\n",
		      nb, c->req.id);
	if (send(ci->connect_fd, head, (size_t)nh, MSG_NOSIGNAL) == nh)
		(void)send(ci->connect_fd, body, (size_t)nb, MSG_NOSIGNAL);
	(void)shutdown(ci->connect_fd, SHUT_WR);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct srv_server *srv = cls;
	struct ctx *c = *con_cls;
	struct srv_reply r;

	(void)version;
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c)
			return MHD_NO;
		*con_cls = c;
		clock_gettime(CLOCK_MONOTONIC, &c->start);
		c->t0 = srv_now();
		c->req.srv = srv;
		c->req.conn = conn;
		c->req.method = method;
		c->req.route = SRV_ROUTE_UNKNOWN;
		c->req.id = atomic_fetch_add(&srv->request_ids, 1) + 1;
		return on_headers(srv, c, url, method);
	}
	if (c->replied) {
		*upload_size = 0; /* discard: the answer is already out */
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (c->body.len + *upload_size > srv->cfg.max_body) {
			*upload_size = 0;
			cut_off(c, srv->cfg.max_body);
			return MHD_NO; /* close the connection */
		}
		srv_buf_append(&c->body, upload, *upload_size);
		if (c->body.failed) {
			*upload_size = 0;
			return send_error(c, 503, "overloaded", NULL,
					  "out of memory");
		}
		*upload_size = 0;
		return MHD_YES;
	}
	c->req.body = c->body.data ? c->body.data : "";
	c->req.body_len = c->body.len;
	memset(&r, 0, sizeof r);
	r.qdrant = c->req.qdrant;
	r.t0 = c->t0;
	atomic_fetch_add(&srv->routes[c->req.route].in_handler, 1);
	c->def->handler(&c->req, &r);
	atomic_fetch_sub(&srv->routes[c->req.route].in_handler, 1);
	c->replied = true;
	return send_reply(c, &r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct srv_server *srv = cls;
	struct ctx *c = *con_cls;
	struct srv_route_stats *rs;

	(void)conn;
	(void)toe;
	if (!c)
		return;
	rs = &srv->routes[c->req.route];
	for (int i = 0; i < SRV_CODES && srv_counted_codes[i]; i++)
		if (srv_counted_codes[i] == c->status)
			atomic_fetch_add_explicit(&rs->by_code[i], 1,
						  memory_order_relaxed);
	srv_hist_observe(&rs->latency, elapsed(&c->start));
	srv_buf_free(&c->body);
	free(c);
	*con_cls = NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	srv_log(SRV_DEBUG, "http: %s", msg);
}

enum fresh_status srv_http_start(struct srv_server *srv, struct srv_http **out,
				 char *err, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char host[256];
	const union MHD_DaemonInfo *info;
	struct srv_http *h;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG;

	for (int i = 0; i < SRV_ROUTE_COUNT; i++) {
		srv_hist_init(&srv->routes[i].latency, srv_latency_bounds);
		atomic_init(&srv->routes[i].in_handler, 0);
	}
	if (!srv_resolve_listen(srv->cfg.listen, &ss, &sslen, host, sizeof host,
				err, cap))
		return FRESH_INVALID;
	if (!srv_is_loopback(&ss) && !srv->write_key[0] && !srv->cfg.insecure) {
		snprintf(err, cap,
			 "refusing to listen on non-loopback %s without "
			 "--api-key-file (or pass --insecure)",
			 srv->cfg.listen);
		return FRESH_INVALID;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h = calloc(1, sizeof *h);
	if (!h)
		return FRESH_NOMEM;
	h->srv = srv;
	h->mhd = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, srv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->cfg.max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)srv->cfg.max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
		srv->cfg.connection_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)(4 * srv->cfg.max_header + (256 << 10)),
		MHD_OPTION_LISTENING_ADDRESS_REUSE, 1U, MHD_OPTION_END);
	if (!h->mhd) {
		snprintf(err, cap, "cannot listen on %s: %s", srv->cfg.listen,
			 strerror(errno));
		free(h);
		return FRESH_IO;
	}
	info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (ss.ss_family == AF_INET6)
		printf("freshd: listening on http://[%s]:%u\n", host,
		       info ? info->port : 0);
	else
		printf("freshd: listening on http://%s:%u\n",
		       host[0] ? host : "0.0.0.0", info ? info->port : 0);
	fflush(stdout);
	*out = h;
	return FRESH_OK;
}

void srv_http_quiesce(struct srv_http *h)
{
	MHD_socket fd;

	if (!h)
		return;
	fd = MHD_quiesce_daemon(h->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void srv_http_stop(struct srv_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->mhd);
	free(h);
}
