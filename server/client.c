/*
 * client.c - the coordinator's HTTP/1.1 client (client.h).
 *
 * Design: blocking sockets with poll() against the call's deadline. A
 * pooled connection may have been closed by the shard while idle; a call
 * that finds so (the send fails, or the connection ends before any byte
 * of the answer) is sent once more on a new connection. Every request the
 * coordinator sends may be repeated: searches read, updates replace a
 * target's pair with the same pair, checkpoints install the same version.
 * Answers are read by Content-Length or chunked; any other framing reads
 * to the end and does not return the connection to the pool.
 */
/* Messages that name a shard may be cut to their buffers; that is fine. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"

#define POOL_MAX 16

struct srv_client {
	char url[256], host[256], port[16], hostport[280];
	char auth[300]; /* the Authorization header line, or "" */
	pthread_mutex_t mu;
	int idle[POOL_MAX];
	size_t nidle;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool failf(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return false;
}

struct srv_client *srv_client_create(const char *url, const char *key,
				     char *err, size_t cap)
{
	struct srv_client *c;
	const char *h = url, *colon, *end;
	size_t hl;

	if (strncmp(h, "http://", 7) != 0) {
		failf(err, cap, "%s: expected http://HOST:PORT", url);
		return NULL;
	}
	h += 7;
	end = h + strcspn(h, "/");
	if (*end && strcmp(end, "/") != 0) {
		failf(err, cap, "%s: expected http://HOST:PORT, no path", url);
		return NULL;
	}
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
	}
	if (!colon || colon + 1 >= end || (size_t)(end - colon - 1) >= 16 ||
	    strspn(colon + 1, "0123456789") != (size_t)(end - colon - 1)) {
		failf(err, cap, "%s: expected http://HOST:PORT", url);
		return NULL;
	}
	hl = (size_t)(colon - h);
	if (hl == 0 || hl >= 256 || strlen(url) >= 256) {
		failf(err, cap, "%s: host too long or empty", url);
		return NULL;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		failf(err, cap, "out of memory");
		return NULL;
	}
	snprintf(c->url, sizeof c->url, "%.*s", (int)(end - url), url);
	memcpy(c->hostport, h, (size_t)(end - h));
	if (*h == '[') {
		memcpy(c->host, h + 1, hl - 2);
	} else {
		memcpy(c->host, h, hl);
	}
	memcpy(c->port, colon + 1, (size_t)(end - colon - 1));
	if (key && key[0])
		snprintf(c->auth, sizeof c->auth,
			 "Authorization: Bearer %s\r\n", key);
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

void srv_client_free(struct srv_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nidle; i++)
		close(c->idle[i]);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

const char *srv_client_url(const struct srv_client *c)
{
	return c->url;
}

static int pool_take(struct srv_client *c)
{
	int fd = -1;

	pthread_mutex_lock(&c->mu);
	if (c->nidle)
		fd = c->idle[--c->nidle];
	pthread_mutex_unlock(&c->mu);
	return fd;
}

static void pool_give(struct srv_client *c, int fd)
{
	pthread_mutex_lock(&c->mu);
	if (c->nidle < POOL_MAX) {
		c->idle[c->nidle++] = fd;
		fd = -1;
	}
	pthread_mutex_unlock(&c->mu);
	if (fd >= 0)
		close(fd);
}

/* Waits until fd is ready for events or the deadline passes. */
static bool wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		struct pollfd p = {fd, events, 0};
		double left = deadline - now();
		int rc;

		if (left <= 0)
			return false;
		rc = poll(&p, 1, (int)(left * 1000) + 1);
		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return false;
	}
}

static int dial(struct srv_client *c, double deadline, char *err, size_t cap)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, rc, one = 1;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(c->host, c->port, &hints, &res);
	if (rc != 0) {
		failf(err, cap, "%s: %s", c->url, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int soerr = 0;
		socklen_t sl = sizeof soerr;

		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (rc != 0 && errno == EINPROGRESS &&
		    wait_fd(fd, POLLOUT, deadline) &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
		    soerr == 0)
			rc = 0;
		else if (rc != 0)
			errno = soerr ? soerr : errno;
		if (rc == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		failf(err, cap, "%s: cannot connect: %s", c->url,
		      strerror(errno));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static bool send_all(int fd, const char *p, size_t n, double deadline)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!wait_fd(fd, POLLOUT, deadline))
				return false;
		} else {
			return false;
		}
	}
	return true;
}

static bool send_request(struct srv_call *call)
{
	struct srv_client *c = call->client;
	char head[1024];
	int n;

	n = snprintf(head, sizeof head,
		     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%sContent-Length: "
		     "%zu\r\nAccept: */*\r\n\r\n",
		     call->method, call->path, c->hostport, c->auth,
		     call->ctype ? "Content-Type: " : "",
		     call->ctype ? call->ctype : "", call->ctype ? "\r\n" : "",
		     call->req_len);
	if (n < 0 || (size_t)n >= sizeof head)
		return false;
	return send_all(call->fd, head, (size_t)n, call->deadline) &&
	       send_all(call->fd, call->req_body, call->req_len,
			call->deadline);
}

/* A connection for the call: pooled when reuse, else a new one. */
static bool connect_call(struct srv_call *call, bool reuse)
{
	call->fd = reuse ? pool_take(call->client) : -1;
	call->reused = call->fd >= 0;
	if (call->fd < 0)
		call->fd = dial(call->client, call->deadline, call->error,
				sizeof call->error);
	return call->fd >= 0;
}

bool srv_call_send(struct srv_call *call, struct srv_client *c,
		   const char *method, const char *path, const char *ctype,
		   const void *body, size_t len, double timeout_s)
{
	memset(call, 0, sizeof *call);
	call->client = c;
	call->fd = -1;
	call->deadline = now() + timeout_s;
	call->method = method;
	call->path = path;
	call->ctype = ctype;
	call->req_body = body ? body : "";
	call->req_len = len;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!connect_call(call, attempt == 0))
			return false;
		if (send_request(call)) {
			call->sent = true;
			return true;
		}
		close(call->fd);
		call->fd = -1;
		if (!call->reused)
			break;
	}
	snprintf(call->error, sizeof call->error, "%s: cannot send: %s", c->url,
		 strerror(errno));
	return false;
}

/* Appends what arrives on fd to b (at least 64 KiB of room a read). */
static bool recv_some(int fd, struct srv_buf *b, double deadline, bool *eof)
{
	ssize_t r;

	if (!srv_buf_reserve(b, 65536))
		return false;
	for (;;) {
		r = recv(fd, b->data + b->len, b->cap - b->len - 1, 0);
		if (r > 0) {
			b->len += (size_t)r;
			b->data[b->len] = '\0';
			return true;
		}
		if (r == 0) {
			*eof = true;
			return true;
		}
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
		    wait_fd(fd, POLLIN, deadline))
			continue;
		return false;
	}
}

static const char *find_header(const char *head, const char *end,
			       const char *name)
{
	size_t n = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l && l < end;
	     l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
			const char *v = l + 3 + n;
			while (*v == ' ' || *v == '\t')
				v++;
			return v;
		}
	}
	return NULL;
}

/*
 * Walks a chunked body: true once it is complete (then, with compact, the
 * data is moved to the front and *out_len set); false while incomplete,
 * or with *broken set when it cannot be one.
 */
static bool chunks(char *p, size_t len, bool compact, size_t *out_len,
		   bool *broken)
{
	size_t r = 0, w = 0;

	*broken = false;
	for (;;) {
		char *end;
		unsigned long long n;
		const char *crlf = memmem(p + r, len - r, "\r\n", 2);

		if (!crlf)
			return false;
		n = strtoull(p + r, &end, 16);
		if (end == p + r || n > len) {
			*broken = end == p + r || n > ((size_t)1 << 40);
			return false;
		}
		r = (size_t)(crlf - p) + 2;
		if (n == 0) {
			/* Trailers end with an empty line. */
			if (!memmem(p + r - 2, len - r + 2, "\r\n\r\n", 4))
				return false;
			if (compact) {
				*out_len = w;
				p[w] = '\0';
			}
			return true;
		}
		if (len - r < n + 2)
			return false;
		if (compact)
			memmove(p + w, p + r, n);
		w += n;
		r += n + 2;
	}
}

/* Decodes a chunked body in place once it is whole. */
static bool dechunk(char *p, size_t len, size_t *out_len, bool *broken)
{
	return chunks(p, len, false, out_len, broken) &&
	       chunks(p, len, true, out_len, broken);
}

static bool read_answer(struct srv_call *call, bool *nothing)
{
	struct srv_buf b = SRV_BUF_INIT;
	const char *hend = NULL, *v;
	size_t hlen = 0, clen = 0;
	bool eof = false, chunked = false, has_len = false, keep = true;

	*nothing = false;
	for (;;) {
		if (!recv_some(call->fd, &b, call->deadline, &eof)) {
			*nothing = b.len == 0 && now() < call->deadline;
			goto fail;
		}
		if (b.len == 0 && eof) {
			*nothing = true;
			goto fail;
		}
		if (!hend && b.len && (hend = strstr(b.data, "\r\n\r\n"))) {
			int status;
			hlen = (size_t)(hend - b.data) + 4;
			if (sscanf(b.data, "HTTP/1.%*d %d", &status) != 1)
				goto fail;
			call->status = status;
			v = find_header(b.data, hend, "Content-Length");
			if (v) {
				has_len = true;
				clen = strtoull(v, NULL, 10);
			}
			v = find_header(b.data, hend, "Transfer-Encoding");
			chunked = v && strncasecmp(v, "chunked", 7) == 0;
			v = find_header(b.data, hend, "Connection");
			keep = !(v && strncasecmp(v, "close", 5) == 0);
		}
		if (hend) {
			size_t got = b.len - hlen;
			bool broken;

			if (chunked &&
			    dechunk(b.data + hlen, got, &call->len, &broken))
				break;
			if (chunked && broken)
				goto fail;
			if (!chunked && has_len && got >= clen) {
				call->len = clen;
				break;
			}
			if (!chunked && !has_len && eof) {
				call->len = got;
				keep = false;
				break;
			}
		}
		if (eof)
			goto fail;
	}
	/* The answer keeps the receive buffer: no second copy of a big body. */
	memmove(b.data, b.data + hlen, call->len);
	b.data[call->len] = '\0';
	call->body = realloc(b.data, call->len + 1);
	if (!call->body)
		call->body = b.data;
	if (keep && !eof)
		pool_give(call->client, call->fd);
	else
		close(call->fd);
	call->fd = -1;
	return true;
fail:
	free(b.data);
	snprintf(call->error, sizeof call->error, "%s: %s",
		 srv_client_url(call->client),
		 now() >= call->deadline ? "no answer before the deadline"
		 : *nothing		 ? "closed the connection"
					 : "broken answer");
	close(call->fd);
	call->fd = -1;
	return false;
}

bool srv_call_recv(struct srv_call *call)
{
	bool nothing;

	if (!call->sent)
		return false;
	if (read_answer(call, &nothing))
		return true;
	if (!(nothing && call->reused))
		return false;
	/* The pooled connection had been closed: once more, on a new one. */
	if (!connect_call(call, false) || !send_request(call)) {
		if (call->fd >= 0)
			close(call->fd);
		call->fd = -1;
		if (!call->error[0])
			snprintf(call->error, sizeof call->error,
				 "%s: cannot send",
				 srv_client_url(call->client));
		return false;
	}
	return read_answer(call, &nothing);
}

void srv_call_done(struct srv_call *call)
{
	free(call->body);
	call->body = NULL;
	if (call->fd >= 0)
		close(call->fd);
	call->fd = -1;
}

bool srv_call(struct srv_call *call, struct srv_client *c, const char *method,
	      const char *path, const char *ctype, const void *body, size_t len,
	      double timeout_s)
{
	return srv_call_send(call, c, method, path, ctype, body, len,
			     timeout_s) &&
	       srv_call_recv(call);
}
