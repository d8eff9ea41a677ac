/*
 * npy.c - a strict parser for .npy headers.
 *
 * Design: the header is a Python dict literal; we accept exactly the three
 * keys NumPy writes ('descr', 'fortran_order', 'shape') in any order, with
 * Python's literal syntax for strings, booleans and tuples of integers.
 * Anything else is refused: a loose parser here would turn a malformed file
 * into a wrongly shaped index.
 */
#include "npy.h"

#include <stdint.h>
#include <string.h>

struct cursor {
	const char *p, *end;
};

static void skip_space(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' ||
				 *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static bool eat(struct cursor *c, char ch)
{
	skip_space(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

/* A quoted Python string without escapes, copied into out[cap]. */
static bool parse_string(struct cursor *c, char *out, size_t cap)
{
	char q;
	size_t n = 0;

	skip_space(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return false;
	q = *c->p++;
	while (c->p < c->end && *c->p != q) {
		if (*c->p == '\\' || n + 1 >= cap)
			return false;
		out[n++] = *c->p++;
	}
	if (c->p >= c->end)
		return false;
	c->p++;
	out[n] = '\0';
	return true;
}

static bool parse_word(struct cursor *c, const char *word)
{
	size_t n = strlen(word);

	skip_space(c);
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

static bool parse_size(struct cursor *c, size_t *out)
{
	size_t v = 0;
	bool any = false;

	skip_space(c);
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		size_t digit = (size_t)(*c->p - '0');
		if (v > (SIZE_MAX - digit) / 10)
			return false;
		v = v * 10 + digit;
		c->p++;
		any = true;
	}
	/* NumPy on some platforms writes 3L; accept the suffix. */
	if (any && c->p < c->end && *c->p == 'L')
		c->p++;
	*out = v;
	return any;
}

static bool parse_shape(struct cursor *c, struct fresh_npy_header *h)
{
	h->ndim = 0;
	if (!eat(c, '('))
		return false;
	if (eat(c, ')'))
		return true;
	for (;;) {
		if (h->ndim == FRESH_NPY_MAX_DIMS)
			return false;
		if (!parse_size(c, &h->shape[h->ndim]))
			return false;
		h->ndim++;
		if (eat(c, ')'))
			return true;
		if (!eat(c, ','))
			return false;
		if (eat(c, ')'))
			return true;
	}
}

enum fresh_status fresh_npy_parse(const void *buf, size_t len,
				  struct fresh_npy_header *h,
				  struct fresh_error *err)
{
	static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
	const unsigned char *b = buf;
	size_t hlen, pre;
	struct cursor c;
	bool have_descr = false, have_order = false, have_shape = false;

	memset(h, 0, sizeof *h);
	if (len < 10 || memcmp(b, magic, sizeof magic) != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "not a .npy file (bad magic)");
	if (b[6] == 1) {
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
		pre = 10;
	} else if (b[6] == 2 || b[6] == 3) {
		if (len < 12)
			return fresh_fail(err, FRESH_FORMAT,
					  "truncated header");
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
		       (size_t)b[11] << 24;
		pre = 12;
	} else {
		return fresh_fail(err, FRESH_FORMAT,
				  "unsupported .npy version %u",
				  (unsigned)b[6]);
	}
	if (hlen > FRESH_NPY_MAX_HEADER || len - pre < hlen)
		return fresh_fail(err, FRESH_FORMAT,
				  "truncated header (%zu bytes announced)",
				  hlen);
	h->data_offset = pre + hlen;

	c.p = (const char *)b + pre;
	c.end = c.p + hlen;
	if (!eat(&c, '{'))
		goto bad;
	while (!eat(&c, '}')) {
		char key[32];
		if (!parse_string(&c, key, sizeof key) || !eat(&c, ':'))
			goto bad;
		if (strcmp(key, "descr") == 0 && !have_descr) {
			if (!parse_string(&c, h->descr, sizeof h->descr))
				goto bad;
			have_descr = true;
		} else if (strcmp(key, "fortran_order") == 0 && !have_order) {
			if (parse_word(&c, "True"))
				h->fortran_order = true;
			else if (!parse_word(&c, "False"))
				goto bad;
			have_order = true;
		} else if (strcmp(key, "shape") == 0 && !have_shape) {
			if (!parse_shape(&c, h))
				goto bad;
			have_shape = true;
		} else {
			return fresh_fail(err, FRESH_FORMAT,
					  "unexpected header key '%s'", key);
		}
		if (!eat(&c, ',')) {
			if (!eat(&c, '}'))
				goto bad;
			break;
		}
	}
	if (!have_descr || !have_order || !have_shape)
		return fresh_fail(err, FRESH_FORMAT,
				  "header lacks descr, fortran_order or shape");
	return FRESH_OK;
bad:
	return fresh_fail(err, FRESH_FORMAT, "malformed header dictionary");
}

bool fresh_npy_count(const struct fresh_npy_header *h, size_t *count)
{
	size_t n = 1;

	for (size_t i = 0; i < h->ndim; i++) {
		if (h->shape[i] != 0 && n > SIZE_MAX / h->shape[i])
			return false;
		n *= h->shape[i];
	}
	*count = n;
	return true;
}
