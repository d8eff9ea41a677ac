/*
 * parse.c - request parsing (see parse.h).
 *
 * Design: the pre-scan walks the body once, tracking strings and escapes,
 * to measure nesting and find integer literals above INT64_MAX; only when
 * there are such literals is the body copied, with each rewritten as a
 * string carrying a per-process random prefix that no client can forge.
 * Everything after jansson is typed extraction; each failure names the
 * field (and index) it is about.
 */
#include "parse.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base64.h"

#define MARK_LEN 17 /* "\u0001" + 16 hex digits, decoded length */

static char mark[MARK_LEN + 1];
static pthread_once_t mark_once = PTHREAD_ONCE_INIT;

static void make_mark(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint64_t)time(NULL) * UINT64_C(0x9e3779b97f4a7c15);
	mark[0] = '\001';
	snprintf(mark + 1, sizeof mark - 1, "%016" PRIx64, r);
}

/*
 * Whether digits s[0..n) (no sign) exceed INT64_MAX. A literal with a
 * leading zero is not JSON: it is left alone, for jansson to refuse.
 */
static bool above_int64(const char *s, size_t n)
{
	static const char max[] = "9223372036854775807";

	if (n > 1 && *s == '0')
		return false;
	if (n != sizeof max - 1)
		return n > sizeof max - 1;
	return memcmp(s, max, n) > 0;
}

/*
 * A number token starting at b[i] (a digit or '-'): returns its end and
 * whether it is a non-negative integer literal above INT64_MAX.
 */
static size_t number_token(const char *b, size_t len, size_t i, bool *big)
{
	size_t j = i, digits;
	bool neg = false, integer = true;

	if (b[j] == '-') {
		neg = true;
		j++;
	}
	digits = j;
	while (j < len && b[j] >= '0' && b[j] <= '9')
		j++;
	*big = false;
	if (j < len && b[j] == '.') {
		integer = false;
		for (j++; j < len && b[j] >= '0' && b[j] <= '9'; j++)
			;
	}
	if (j < len && (b[j] == 'e' || b[j] == 'E')) {
		integer = false;
		j++;
		if (j < len && (b[j] == '+' || b[j] == '-'))
			j++;
		while (j < len && b[j] >= '0' && b[j] <= '9')
			j++;
	}
	if (integer && !neg && j > digits)
		*big = above_int64(b + digits, j - digits);
	return j;
}

/*
 * Pre-scan. Returns false on nesting too deep; *big counts integer
 * literals above INT64_MAX.
 */
static bool prescan(const char *b, size_t len, size_t *big)
{
	int depth = 0;
	bool in_str = false;

	*big = 0;
	for (size_t i = 0; i < len; i++) {
		char c = b[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '[' || c == '{') {
			if (++depth > SRV_MAX_DEPTH)
				return false;
		} else if (c == ']' || c == '}') {
			depth--;
		} else if ((c >= '0' && c <= '9') || c == '-') {
			bool is_big;
			i = number_token(b, len, i, &is_big) - 1;
			*big += is_big;
		}
	}
	return true;
}

/* Copies b, turning big integer literals into marked strings. */
static char *rewrite(const char *b, size_t len, size_t big, size_t *out_len)
{
	/* Each literal grows by 2 quotes + the escaped mark ("\\u0001" + 16). */
	size_t cap = len + big * (2 + 6 + 16) + 1, o = 0;
	char *r = malloc(cap);
	bool in_str = false;

	if (!r)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = b[i];
		if (in_str) {
			r[o++] = c;
			if (c == '\\' && i + 1 < len)
				r[o++] = b[++i];
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"')
			in_str = true;
		if ((c >= '0' && c <= '9') || c == '-') {
			bool is_big;
			size_t j = number_token(b, len, i, &is_big);
			if (is_big)
				o += (size_t)sprintf(r + o, "\"\\u0001%s",
						     mark + 1);
			memcpy(r + o, b + i, j - i);
			o += j - i;
			if (is_big)
				r[o++] = '"';
			i = j - 1;
			continue;
		}
		r[o++] = c;
	}
	r[o] = '\0';
	*out_len = o;
	return r;
}

/*
 * Whether an object key in v is a marked string: a big integer literal
 * where JSON wants a key (the rewrite made it a string). Depth is bounded
 * by the pre-scan.
 */
static bool marked_key(json_t *v)
{
	const char *key;
	json_t *x;

	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++)
			if (marked_key(json_array_get(v, i)))
				return true;
		return false;
	}
	json_object_foreach(v, key, x)
	{
		if (strncmp(key, mark, MARK_LEN) == 0 || marked_key(x))
			return true;
	}
	return false;
}

bool srv_parse_body(const char *body, size_t len, bool empty_ok,
		    json_t **out, struct srv_error *e)
{
	json_error_t jerr;
	char *copy = NULL;
	size_t big, n = len;
	json_t *j;

	pthread_once(&mark_once, make_mark);
	*out = NULL;
	while (n > 0 && (body[n - 1] == ' ' || body[n - 1] == '\n' ||
			 body[n - 1] == '\r' || body[n - 1] == '\t'))
		n--;
	if (n == 0) {
		if (!empty_ok)
			return srv_fail(e, 400, "invalid_json",
					"the body is empty; expected a JSON "
					"object");
		*out = json_object();
		return *out != NULL ||
		       srv_fail(e, 503, "overloaded", "out of memory");
	}
	if (!prescan(body, len, &big))
		return srv_fail(e, 400, "invalid_json",
				"JSON nested deeper than %d levels",
				SRV_MAX_DEPTH);
	if (big) {
		copy = rewrite(body, len, big, &len);
		if (!copy)
			return srv_fail(e, 503, "overloaded", "out of memory");
		body = copy;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
		       &jerr);
	free(copy);
	if (!j)
		return srv_fail(e, 400, "invalid_json",
				"invalid JSON at line %d, column %d: %s",
				jerr.line, jerr.column, jerr.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return srv_fail(e, 400, "invalid_json",
				"the body is not a JSON object");
	}
	if (big && marked_key(j)) {
		json_decref(j);
		return srv_fail(e, 400, "invalid_json",
				"invalid JSON: a number where a key is expected");
	}
	*out = j;
	return true;
}

bool srv_check_keys(json_t *obj, const char *const *allowed,
		    struct srv_error *e)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(key, allowed[i]) == 0;
		if (!ok)
			return srv_bad(e, "unknown field '%.100s'", key);
	}
	return true;
}

/* The digits of a marked big integer, or NULL. */
static const char *marked(json_t *v)
{
	const char *s;

	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	if (json_string_length(v) <= MARK_LEN ||
	    memcmp(s, mark, MARK_LEN) != 0)
		return NULL;
	return s + MARK_LEN;
}

bool srv_get_u64(json_t *v, const char *path, uint64_t *out,
		 struct srv_error *e)
{
	const char *digits = marked(v);

	if (digits) {
		char *end;
		errno = 0;
		*out = strtoull(digits, &end, 10);
		if (errno == ERANGE || *end)
			return srv_bad(e, "%s: %.40s is out of range 0..2^64-1",
				       path, digits);
		return true;
	}
	if (!json_is_integer(v))
		return srv_bad(e, "%s: expected an integer id", path);
	if (json_integer_value(v) < 0)
		return srv_bad(e, "%s: %" JSON_INTEGER_FORMAT
				  " is negative; ids are 0..2^64-1",
			       path, json_integer_value(v));
	*out = (uint64_t)json_integer_value(v);
	return true;
}

bool srv_get_double(json_t *v, const char *path, double *out,
		    struct srv_error *e)
{
	const char *digits = marked(v);

	if (digits)
		*out = strtod(digits, NULL);
	else if (json_is_number(v))
		*out = json_number_value(v);
	else
		return srv_bad(e, "%s: expected a number", path);
	if (!isfinite(*out))
		return srv_bad(e, "%s: not a finite number", path);
	return true;
}

bool srv_field_int(json_t *obj, const char *key, int64_t lo, int64_t hi,
		   int64_t def, int64_t *out, struct srv_error *e)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		*out = def;
		return true;
	}
	if (marked(v))
		return srv_bad(e, "%s: out of range %" PRId64 "..%" PRId64, key,
			       lo, hi);
	if (!json_is_integer(v))
		return srv_bad(e, "%s: expected an integer", key);
	*out = json_integer_value(v);
	if (*out < lo || *out > hi)
		return srv_bad(e, "%s: %" PRId64 " is out of range %" PRId64
				  "..%" PRId64,
			       key, *out, lo, hi);
	return true;
}

bool srv_field_double(json_t *obj, const char *key, double lo, double hi,
		      double def, double *out, struct srv_error *e)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		*out = def;
		return true;
	}
	if (!srv_get_double(v, key, out, e))
		return false;
	if (*out < lo || *out > hi)
		return srv_bad(e, "%s: %g is out of range %g..%g", key, *out, lo,
			       hi);
	return true;
}

bool srv_field_choice(json_t *obj, const char *key, const char *const *choices,
		      int def, int *out, struct srv_error *e)
{
	json_t *v = json_object_get(obj, key);
	char list[256] = "";

	if (!v || json_is_null(v)) {
		*out = def;
		return true;
	}
	for (int i = 0; choices[i]; i++) {
		if (json_is_string(v) &&
		    strcmp(json_string_value(v), choices[i]) == 0) {
			*out = i;
			return true;
		}
		snprintf(list + strlen(list), sizeof list - strlen(list),
			 "%s\"%s\"", i ? ", " : "", choices[i]);
	}
	return srv_bad(e, "%s: expected one of %s", key, list);
}

static bool to_float(double d, const char *path, size_t i, float *out,
		     struct srv_error *e)
{
	float f = (float)d;

	if (!isfinite(f))
		return srv_bad(e, "%s[%zu]: %g is not a finite float32", path, i,
			       d);
	*out = f;
	return true;
}

bool srv_get_vector(json_t *v, bool b64, const char *path, size_t dim,
		    float *out, struct srv_error *e)
{
	if (b64) {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v), bytes;

		if (!json_is_string(v))
			return srv_bad(e, "%s: expected a base64 string", path);
		if (!srv_base64_decoded_len(s, len, &bytes))
			return srv_bad(e, "%s: not valid base64 (length %zu)",
				       path, len);
		if (bytes != dim * sizeof(float))
			return srv_bad(e, "%s: %zu bytes, expected %zu (%zu "
					  "float32)",
				       path, bytes, dim * sizeof(float), dim);
		if (!srv_base64_decode(s, len, (unsigned char *)out))
			return srv_bad(e, "%s: not valid base64", path);
		for (size_t i = 0; i < dim; i++)
			if (!isfinite(out[i]))
				return srv_bad(e, "%s[%zu]: not a finite "
						  "float32",
					       path, i);
		return true;
	}
	if (!json_is_array(v))
		return srv_bad(e, "%s: expected an array of numbers", path);
	if (json_array_size(v) != dim)
		return srv_bad(e, "%s: %zu numbers, expected %zu", path,
			       json_array_size(v), dim);
	for (size_t i = 0; i < dim; i++) {
		json_t *x = json_array_get(v, i);
		const char *digits = marked(x);
		double d;
		if (json_is_real(x))
			d = json_real_value(x);
		else if (json_is_integer(x))
			d = (double)json_integer_value(x);
		else if (digits)
			d = strtod(digits, NULL);
		else
			return srv_bad(e, "%s[%zu]: expected a number", path, i);
		if (!to_float(d, path, i, out + i, e))
			return false;
	}
	return true;
}

bool srv_get_queries(json_t *obj, size_t dim, size_t max, float **out,
		     size_t *n, struct srv_error *e)
{
	static const char *const names[] = {"vector", "vectors", "vector_b64",
					    "vectors_b64"};
	json_t *v = NULL;
	int which = -1;
	char path[64];
	float *q;

	*out = NULL;
	*n = 0;
	for (int i = 0; i < 4; i++) {
		json_t *x = json_object_get(obj, names[i]);
		if (!x)
			continue;
		if (v)
			return srv_bad(e, "give only one of %s and %s",
				       names[which], names[i]);
		v = x;
		which = i;
	}
	if (!v)
		return srv_bad(e, "vectors: missing (give vector, vectors, "
				  "vector_b64 or vectors_b64)");
	if (which == 0 || which == 2) {
		*n = 1;
	} else {
		if (!json_is_array(v))
			return srv_bad(e, "%s: expected an array", names[which]);
		*n = json_array_size(v);
		if (*n == 0)
			return srv_bad(e, "%s: empty; at least one query is "
					  "needed",
				       names[which]);
		if (*n > max)
			return srv_bad(e, "%s: %zu queries, at most %zu",
				       names[which], *n, max);
	}
	q = malloc(*n * dim * sizeof *q);
	if (!q)
		return srv_fail(e, 503, "overloaded", "out of memory");
	for (size_t i = 0; i < *n; i++) {
		json_t *x = which == 0 || which == 2 ? v : json_array_get(v, i);
		if (which == 0 || which == 2)
			snprintf(path, sizeof path, "%s", names[which]);
		else
			snprintf(path, sizeof path, "%s[%zu]", names[which], i);
		if (!srv_get_vector(x, which >= 2, path, dim, q + i * dim, e)) {
			free(q);
			return false;
		}
	}
	*out = q;
	return true;
}

bool srv_get_id_list(json_t *v, const char *path, size_t max, uint64_t **ids,
		     size_t *n, struct srv_error *e)
{
	char p[96];

	*ids = NULL;
	*n = 0;
	if (!json_is_array(v))
		return srv_bad(e, "%s: expected an array of ids", path);
	*n = json_array_size(v);
	if (*n > max)
		return srv_bad(e, "%s: %zu ids, at most %zu", path, *n, max);
	*ids = malloc((*n ? *n : 1) * sizeof **ids);
	if (!*ids)
		return srv_fail(e, 503, "overloaded", "out of memory");
	for (size_t i = 0; i < *n; i++) {
		snprintf(p, sizeof p, "%s[%zu]", path, i);
		if (!srv_get_u64(json_array_get(v, i), p, *ids + i, e)) {
			free(*ids);
			*ids = NULL;
			return false;
		}
	}
	return true;
}
