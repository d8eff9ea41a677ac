/*
 * buf.c - the growable byte buffer (see buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool srv_buf_reserve(struct srv_buf *b, size_t n)
{
	size_t cap;
	char *d;

	if (b->failed)
		return false;
	if (n < b->cap - b->len) /* cap > len always once allocated */
		return true;
	if (n > (size_t)-1 / 4 - b->len) {
		b->failed = true;
		return false;
	}
	/* Doubling keeps appends amortized O(1); a first large reserve
	 * (a body of known length) gets exactly what it asks. */
	cap = b->cap ? 2 * b->cap : 4096;
	if (cap < b->len + n + 1)
		cap = b->len + n + 1;
	d = realloc(b->data, cap);
	if (!d) {
		b->failed = true;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void srv_buf_append(struct srv_buf *b, const void *p, size_t n)
{
	if (!srv_buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void srv_buf_printf(struct srv_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->data ? b->data + b->len : NULL,
		      b->data ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (b->data && (size_t)n < b->cap - b->len) {
		b->len += (size_t)n;
		return;
	}
	if (!srv_buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void srv_buf_free(struct srv_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
