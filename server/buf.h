/*
 * buf.h - the server's one growable byte buffer: request bodies
 * (http.c), rewritten JSON (jscan.c), metrics text (metrics.c), answers
 * received from shards (client.c). The bytes are kept NUL-terminated.
 * An allocation failure sets failed and makes every later append a no-op,
 * so a writer checks once, at the end.
 */
#ifndef SRV_BUF_H
#define SRV_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct srv_buf {
	char *data; /* owned; NULL until the first append */
	size_t len, cap;
	bool failed;
};

#define SRV_BUF_INIT              \
	{                         \
		NULL, 0, 0, false \
	}

/* Room for n more bytes (and the NUL) without moving; false on failure. */
bool srv_buf_reserve(struct srv_buf *b, size_t n);
void srv_buf_append(struct srv_buf *b, const void *p, size_t n);
void srv_buf_printf(struct srv_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void srv_buf_free(struct srv_buf *b);

#endif
