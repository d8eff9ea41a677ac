/*
 * jscan.c - the pre-scan (see jscan.h).
 *
 * Design: one pass, copying the body to a growable output and replacing
 * what jansson handles slowly. A candidate array is parsed speculatively
 * into the side table and rolled back if anything in it is not a plain
 * number (then jansson sees it as written and reports any error itself).
 * Numbers are validated against JSON's grammar before strtod sees them.
 */
#include "jscan.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <sys/random.h>
#include <time.h>

#include "buf.h"

#define MARK_LEN 17   /* "\x01" + 16 hex digits, as decoded by jansson */
#define MIN_ARRAY 8   /* shorter numeric arrays are left to jansson */
#define MIN_STRING 32 /* shorter strings too */
#define MAX_TOKEN 64  /* longer numbers are left to jansson */

static char mark[MARK_LEN + 1];
static pthread_once_t mark_once = PTHREAD_ONCE_INIT;

struct span {
	size_t off, n; /* arrays: into the value pools; strings: body text */
	const char *text;
};

struct table {
	struct jscan_num *num;
	size_t nv, capv;
	struct span *arrays, *strings;
	size_t na, capa, ns, caps;
};

static __thread struct table *tls;

static void make_mark(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint64_t)time(NULL) * UINT64_C(0x9e3779b97f4a7c15);
	mark[0] = '\001';
	snprintf(mark + 1, sizeof mark - 1, "%016" PRIx64, r);
}

/* Writes "\u0001<nonce><type><payload>" as a JSON string. */
static void put_mark(struct srv_buf *o, char type, const char *payload,
		     size_t n)
{
	char head[32];
	int h = snprintf(head, sizeof head, "\"\\u0001%s%c", mark + 1, type);

	srv_buf_append(o, head, (size_t)h);
	srv_buf_append(o, payload, n);
	srv_buf_append(o, "\"", 1);
}

static void put_index_mark(struct srv_buf *o, char type, size_t index)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%zu", index);

	put_mark(o, type, num, (size_t)n);
}

static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return true;
	while (c < need)
		c *= 2;
	q = realloc(*p, c * size);
	if (!q)
		return false;
	*p = q;
	*cap = c;
	return true;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_b64(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       is_digit((char)c) || c == '+' || c == '/' || c == '=';
}

/*
 * Whether every byte of s[0..n) is a base64 character (the strings this
 * is asked about are megabytes long: 16 bytes a step where SSE2 is).
 */
static bool all_b64(const char *s, size_t n)
{
	size_t i = 0;
#ifdef __SSE2__
	/* Signed bytes: >= 0x80 is negative and falls outside every range. */
	const __m128i a0 = _mm_set1_epi8('A' - 1), a1 = _mm_set1_epi8('Z' + 1);
	const __m128i l0 = _mm_set1_epi8('a' - 1), l1 = _mm_set1_epi8('z' + 1);
	const __m128i d0 = _mm_set1_epi8('0' - 1), d1 = _mm_set1_epi8('9' + 1);
	const __m128i plus = _mm_set1_epi8('+'), slash = _mm_set1_epi8('/');
	const __m128i eq = _mm_set1_epi8('=');

	for (; i + 16 <= n; i += 16) {
		__m128i v =
			_mm_loadu_si128((const __m128i *)(const void *)(s + i));
		__m128i ok = _mm_and_si128(_mm_cmpgt_epi8(v, a0),
					   _mm_cmplt_epi8(v, a1));
		ok = _mm_or_si128(ok, _mm_and_si128(_mm_cmpgt_epi8(v, l0),
						    _mm_cmplt_epi8(v, l1)));
		ok = _mm_or_si128(ok, _mm_and_si128(_mm_cmpgt_epi8(v, d0),
						    _mm_cmplt_epi8(v, d1)));
		ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, plus));
		ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, slash));
		ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, eq));
		if (_mm_movemask_epi8(ok) != 0xffff)
			return false;
	}
#endif
	for (; i < n; i++)
		if (!is_b64((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * A number at b[i] by JSON's grammar: returns its end, or i when it is
 * not one. *integer: no fraction or exponent; *neg: a leading minus.
 */
static size_t number_at(const char *b, size_t len, size_t i, bool *integer,
			bool *neg)
{
	size_t k = i;

	*integer = true;
	*neg = false;
	if (k < len && b[k] == '-') {
		*neg = true;
		k++;
	}
	if (k < len && b[k] == '0') {
		k++;
	} else if (k < len && b[k] >= '1' && b[k] <= '9') {
		while (k < len && is_digit(b[k]))
			k++;
	} else {
		return i;
	}
	if (k < len && b[k] == '.') {
		*integer = false;
		if (++k >= len || !is_digit(b[k]))
			return i;
		while (k < len && is_digit(b[k]))
			k++;
	}
	if (k < len && (b[k] == 'e' || b[k] == 'E')) {
		*integer = false;
		k++;
		if (k < len && (b[k] == '+' || b[k] == '-'))
			k++;
		if (k >= len || !is_digit(b[k]))
			return i;
		while (k < len && is_digit(b[k]))
			k++;
	}
	return k;
}

/*
 * Whether an integer literal (optional minus, no leading zero) lies
 * outside int64, which jansson cannot hold.
 */
static bool outside_int64(const char *s, size_t n)
{
	static const char max[] = "9223372036854775807";
	static const char min[] = "9223372036854775808"; /* after the minus */
	const char *lim = max;

	if (*s == '-') {
		s++;
		n--;
		lim = min;
	}
	if (n > 1 && *s == '0')
		return false;
	if (n != sizeof max - 1)
		return n > sizeof max - 1;
	return memcmp(s, lim, n) > 0;
}

/*
 * Tries b[i] == '[' as an array of plain numbers. Returns its end (one past
 * ']') with the numbers appended to t, or i (t unchanged) when it is not
 * one or is too short. *overflow when a number overflows a double.
 */
static size_t numeric_array(struct table *t, const char *b, size_t len,
			    size_t i, bool *overflow, bool *nomem)
{
	size_t k = i + 1, start = t->nv;

	for (;;) {
		bool integer, neg;
		size_t end;
		char tok[MAX_TOKEN];
		struct jscan_num num;

		while (k < len && is_space(b[k]))
			k++;
		end = number_at(b, len, k, &integer, &neg);
		if (end == k || end - k >= MAX_TOKEN)
			break;
		memcpy(tok, b + k, end - k);
		tok[end - k] = '\0';
		errno = 0;
		num.v = strtod(tok, NULL);
		num.u = 0;
		if (errno == ERANGE && (num.v > 1.0 || num.v < -1.0)) {
			*overflow = true;
			break;
		}
		if (!integer) {
			num.kind = JSCAN_REAL;
		} else if (neg) {
			num.kind = JSCAN_NEGATIVE;
		} else {
			errno = 0;
			num.u = strtoull(tok, NULL, 10);
			num.kind = errno == ERANGE ? JSCAN_HUGE : JSCAN_UINT;
		}
		if (!grow((void **)&t->num, &t->capv, t->nv + 1,
			  sizeof *t->num)) {
			*nomem = true;
			break;
		}
		t->num[t->nv++] = num;
		k = end;
		while (k < len && is_space(b[k]))
			k++;
		if (k < len && b[k] == ',') {
			k++;
			continue;
		}
		if (k < len && b[k] == ']' && t->nv - start >= MIN_ARRAY)
			return k + 1;
		break;
	}
	t->nv = start;
	return i;
}

static void table_free(struct table *t)
{
	if (!t)
		return;
	free(t->num);
	free(t->arrays);
	free(t->strings);
	free(t);
}

void jscan_release(void)
{
	table_free(tls);
	tls = NULL;
}

enum jscan_status jscan_run(const char *b, size_t len, int max_depth,
			    char **out_p, size_t *out_len, size_t *where)
{
	struct table *t = calloc(1, sizeof *t);
	struct srv_buf o = SRV_BUF_INIT;
	int depth = 0;
	size_t i = 0;
	enum jscan_status st = JSCAN_OK;

	pthread_once(&mark_once, make_mark);
	jscan_release();
	if (!t)
		return JSCAN_NOMEM;
	while (i < len && st == JSCAN_OK && !o.failed) {
		char c = b[i];
		if (c == '"') {
			size_t j = i + 1, k;
			bool escaped = false, b64 = true;
			const char *q = memchr(b + j, '"', len - j);

			if (q && !memchr(b + j, '\\', (size_t)(q - b) - j)) {
				/* No escapes: the string ends at the first quote. */
				b64 = all_b64(b + j, (size_t)(q - b) - j);
				j = (size_t)(q - b);
			} else {
				while (j < len && b[j] != '"') {
					if (b[j] == '\\') {
						escaped = true;
						j++;
					} else if (!is_b64((unsigned char)
								   b[j])) {
						b64 = false;
					}
					j++;
				}
			}
			if (j >= len) { /* unterminated: jansson will say */
				srv_buf_append(&o, b + i, len - i);
				break;
			}
			for (k = j + 1; k < len && is_space(b[k]); k++)
				;
			if (!escaped && b64 && j - i - 1 >= MIN_STRING &&
			    !(k < len && b[k] == ':') &&
			    grow((void **)&t->strings, &t->caps, t->ns + 1,
				 sizeof *t->strings)) {
				t->strings[t->ns].text = b + i + 1;
				t->strings[t->ns].n = j - i - 1;
				put_index_mark(&o, 'S', t->ns++);
			} else {
				srv_buf_append(&o, b + i, j + 1 - i);
			}
			i = j + 1;
		} else if (c == '[' || c == '{') {
			bool overflow = false, nomem = false;
			size_t end = i, first = t->nv;
			if (++depth > max_depth) {
				st = JSCAN_TOO_DEEP;
				*where = i;
				break;
			}
			if (c == '[')
				end = numeric_array(t, b, len, i, &overflow,
						    &nomem);
			if (overflow) {
				st = JSCAN_OVERFLOW;
				*where = i;
			} else if (nomem) {
				st = JSCAN_NOMEM;
			} else if (end > i &&
				   grow((void **)&t->arrays, &t->capa,
					t->na + 1, sizeof *t->arrays)) {
				t->arrays[t->na].off = first;
				t->arrays[t->na].n = t->nv - first;
				t->arrays[t->na].text = NULL;
				put_index_mark(&o, 'A', t->na++);
				depth--;
				i = end;
			} else {
				srv_buf_append(&o, &c, 1);
				i++;
			}
		} else if (c == ']' || c == '}') {
			depth--;
			srv_buf_append(&o, &c, 1);
			i++;
		} else if (c == '-' || is_digit(c)) {
			bool integer, neg;
			size_t end = number_at(b, len, i, &integer, &neg);
			if (end == i) { /* not a number: jansson will say */
				srv_buf_append(&o, &c, 1);
				i++;
				continue;
			}
			if (integer && outside_int64(b + i, end - i))
				put_mark(&o, 'I', b + i, end - i);
			else
				srv_buf_append(&o, b + i, end - i);
			i = end;
		} else {
			srv_buf_append(&o, &c, 1);
			i++;
		}
	}
	if (st == JSCAN_OK && !srv_buf_reserve(&o, 0))
		st = JSCAN_NOMEM;
	if (st != JSCAN_OK) {
		srv_buf_free(&o);
		table_free(t);
		return st;
	}
	o.data[o.len] = '\0';
	tls = t;
	*out_p = o.data;
	*out_len = o.len;
	return JSCAN_OK;
}

bool jscan_is_marked(const char *s, size_t len)
{
	return len >= MARK_LEN && mark[0] && memcmp(s, mark, MARK_LEN) == 0;
}

/* The payload of a mark of the given type, or NULL. */
static const char *payload(const char *s, size_t len, char type)
{
	if (!jscan_is_marked(s, len) || len < MARK_LEN + 2 ||
	    s[MARK_LEN] != type)
		return NULL;
	return s + MARK_LEN + 1;
}

static bool index_of(const char *p, size_t limit, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(p, &end, 10);
	if (errno || *end || end == p || v >= limit)
		return false;
	*out = (size_t)v;
	return true;
}

const char *jscan_big_integer(const char *s, size_t len)
{
	return payload(s, len, 'I');
}

bool jscan_array(const char *s, size_t len, struct jscan_array *a)
{
	const char *p = payload(s, len, 'A');
	size_t k;

	if (!p || !tls || !index_of(p, tls->na, &k))
		return false;
	a->n = tls->arrays[k].n;
	a->num = tls->num + tls->arrays[k].off;
	return true;
}

bool jscan_string(const char *s, size_t len, const char **text,
		  size_t *text_len)
{
	const char *p = payload(s, len, 'S');
	size_t k;

	if (!p || !tls || !index_of(p, tls->ns, &k))
		return false;
	*text = tls->strings[k].text;
	*text_len = tls->strings[k].n;
	return true;
}
