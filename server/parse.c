/*
 * parse.c - request parsing (see parse.h).
 *
 * Design: jscan (the pre-scan) turns what jansson parses slowly or cannot
 * represent into marked strings backed by a side table; jansson parses
 * the rest; the getters below read either form, so handlers never see a
 * mark. Each failure names the field (and index) it is about.
 */
#include "parse.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "jscan.h"

/* Whether an object key anywhere in v carries the mark (never valid). */
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
		if (jscan_is_marked(key, strlen(key)) || marked_key(x))
			return true;
	}
	return false;
}

bool srv_parse_body(const char *body, size_t len, bool empty_ok, json_t **out,
		    struct srv_error *e)
{
	json_error_t jerr;
	char *scanned = NULL;
	size_t n = len, scanned_len, where = 0;
	json_t *j;

	*out = NULL;
	while (n > 0 && (body[n - 1] == ' ' || body[n - 1] == '\n' ||
			 body[n - 1] == '\r' || body[n - 1] == '\t'))
		n--;
	if (n == 0) {
		jscan_release();
		if (!empty_ok)
			return srv_fail(e, 400, "invalid_json",
					"the body is empty; expected a JSON "
					"object");
		*out = json_object();
		return *out != NULL ||
		       srv_fail(e, 503, "overloaded", "out of memory");
	}
	switch (jscan_run(body, len, SRV_MAX_DEPTH, &scanned, &scanned_len,
			  &where)) {
	case JSCAN_OK:
		break;
	case JSCAN_TOO_DEEP:
		return srv_fail(
			e, 400, "invalid_json",
			"JSON nested deeper than %d levels (at byte %zu)",
			SRV_MAX_DEPTH, where);
	case JSCAN_OVERFLOW:
		return srv_fail(e, 400, "invalid_json",
				"a number overflows a double (in the array at "
				"byte %zu)",
				where);
	case JSCAN_NOMEM:
		return srv_fail(e, 503, "overloaded", "out of memory");
	}
	j = json_loadb(scanned, scanned_len,
		       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	free(scanned);
	if (!j) {
		jscan_release();
		return srv_fail(e, 400, "invalid_json",
				"invalid JSON at line %d, column %d: %s",
				jerr.line, jerr.column, jerr.text);
	}
	if (!json_is_object(j) || marked_key(j)) {
		bool object = json_is_object(j);
		json_decref(j);
		jscan_release();
		return srv_fail(
			e, 400, "invalid_json",
			object ? "invalid JSON: a number where a key is "
				 "expected"
			       : "the body is not a JSON object");
	}
	*out = j;
	return true;
}

void srv_body_release(json_t *body)
{
	json_decref(body);
	jscan_release();
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

/* The mark a JSON string carries, and its text: 'I', 'A', 'S' or 0. */
static char mark_of(json_t *v)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	struct jscan_array a;
	const char *t;
	size_t n;

	if (!s || !jscan_is_marked(s, len))
		return 0;
	if (jscan_big_integer(s, len))
		return 'I';
	if (jscan_array(s, len, &a))
		return 'A';
	if (jscan_string(s, len, &t, &n))
		return 'S';
	return 0;
}

const char *srv_string(json_t *v, size_t *len)
{
	const char *s = json_string_value(v), *t;
	size_t n;

	if (!s)
		return NULL;
	if (jscan_string(s, json_string_length(v), &t, &n)) {
		*len = n;
		return t;
	}
	*len = json_string_length(v);
	return s;
}

bool srv_get_u64(json_t *v, const char *path, uint64_t *out,
		 struct srv_error *e)
{
	const char *digits = json_is_string(v)
				     ? jscan_big_integer(json_string_value(v),
							 json_string_length(v))
				     : NULL;

	if (digits) {
		errno = 0;
		*out = digits[0] == '-' ? 0 : strtoull(digits, NULL, 10);
		if (digits[0] == '-')
			return srv_bad(e,
				       "%s: %.40s is negative; ids are "
				       "0..2^64-1",
				       path, digits);
		if (errno == ERANGE)
			return srv_bad(e, "%s: %.40s is out of range 0..2^64-1",
				       path, digits);
		return true;
	}
	if (!json_is_integer(v))
		return srv_bad(e, "%s: expected an integer id", path);
	if (json_integer_value(v) < 0)
		return srv_bad(e,
			       "%s: %" JSON_INTEGER_FORMAT
			       " is negative; ids are 0..2^64-1",
			       path, json_integer_value(v));
	*out = (uint64_t)json_integer_value(v);
	return true;
}

bool srv_get_double(json_t *v, const char *path, double *out,
		    struct srv_error *e)
{
	const char *digits = json_is_string(v)
				     ? jscan_big_integer(json_string_value(v),
							 json_string_length(v))
				     : NULL;

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
	if (mark_of(v) == 'I')
		return srv_bad(e, "%s: out of range %" PRId64 "..%" PRId64, key,
			       lo, hi);
	if (!json_is_integer(v))
		return srv_bad(e, "%s: expected an integer", key);
	*out = json_integer_value(v);
	if (*out < lo || *out > hi)
		return srv_bad(e,
			       "%s: %" PRId64 " is out of range %" PRId64
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
		return srv_bad(e, "%s: %g is out of range %g..%g", key, *out,
			       lo, hi);
	return true;
}

bool srv_field_choice(json_t *obj, const char *key, const char *const *choices,
		      int def, int *out, struct srv_error *e)
{
	json_t *v = json_object_get(obj, key);
	const char *s;
	size_t len = 0;
	char list[256] = "";

	if (!v || json_is_null(v)) {
		*out = def;
		return true;
	}
	s = srv_string(v, &len);
	for (int i = 0; choices[i]; i++) {
		if (s && strlen(choices[i]) == len &&
		    memcmp(s, choices[i], len) == 0) {
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
		return srv_bad(e, "%s[%zu]: %g is not a finite float32", path,
			       i, d);
	*out = f;
	return true;
}

static bool b64_vector(json_t *v, const char *path, size_t dim, float *out,
		       struct srv_error *e)
{
	size_t len = 0, bytes;
	const char *s = json_is_string(v) ? srv_string(v, &len) : NULL;

	if (!s || mark_of(v) == 'I' || mark_of(v) == 'A')
		return srv_bad(e, "%s: expected a base64 string", path);
	if (!srv_base64_decoded_len(s, len, &bytes))
		return srv_bad(e, "%s: not valid base64 (length %zu)", path,
			       len);
	if (bytes != dim * sizeof(float))
		return srv_bad(e, "%s: %zu bytes, expected %zu (%zu float32)",
			       path, bytes, dim * sizeof(float), dim);
	if (!srv_base64_decode(s, len, (unsigned char *)out))
		return srv_bad(e, "%s: not valid base64", path);
	for (size_t i = 0; i < dim; i++)
		if (!isfinite(out[i]))
			return srv_bad(e, "%s[%zu]: not a finite float32", path,
				       i);
	return true;
}

bool srv_get_vector(json_t *v, bool b64, const char *path, size_t dim,
		    float *out, struct srv_error *e)
{
	struct jscan_array a;

	if (b64)
		return b64_vector(v, path, dim, out, e);
	if (json_is_string(v) &&
	    jscan_array(json_string_value(v), json_string_length(v), &a)) {
		if (a.n != dim)
			return srv_bad(e, "%s: %zu numbers, expected %zu", path,
				       a.n, dim);
		for (size_t i = 0; i < dim; i++)
			if (!to_float(a.num[i].v, path, i, out + i, e))
				return false;
		return true;
	}
	if (!json_is_array(v))
		return srv_bad(e, "%s: expected an array of numbers", path);
	if (json_array_size(v) != dim)
		return srv_bad(e, "%s: %zu numbers, expected %zu", path,
			       json_array_size(v), dim);
	for (size_t i = 0; i < dim; i++) {
		json_t *x = json_array_get(v, i);
		const char *digits =
			json_is_string(x)
				? jscan_big_integer(json_string_value(x),
						    json_string_length(x))
				: NULL;
		double d;
		if (json_is_real(x))
			d = json_real_value(x);
		else if (json_is_integer(x))
			d = (double)json_integer_value(x);
		else if (digits)
			d = strtod(digits, NULL);
		else
			return srv_bad(e, "%s[%zu]: expected a number", path,
				       i);
		if (!to_float(d, path, i, out + i, e))
			return false;
	}
	return true;
}

/* Whether v is a list (a JSON array or a marked one) and its length. */
static bool list_length(json_t *v, size_t *n)
{
	struct jscan_array a;

	if (json_is_array(v)) {
		*n = json_array_size(v);
		return true;
	}
	if (json_is_string(v) &&
	    jscan_array(json_string_value(v), json_string_length(v), &a)) {
		*n = a.n;
		return true;
	}
	return false;
}

bool srv_is_list(json_t *v, size_t *n)
{
	size_t dummy;
	return list_length(v, n ? n : &dummy);
}

bool srv_is_text(json_t *v)
{
	char m = mark_of(v);
	return json_is_string(v) && m != 'I' && m != 'A';
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
		/* A list of lists is never marked; a marked list is numbers. */
		if (!json_is_array(v))
			return srv_bad(
				e, "%s: expected an array of %s", names[which],
				which == 1 ? "vectors" : "base64 strings");
		*n = json_array_size(v);
		if (*n == 0)
			return srv_bad(e,
				       "%s: empty; at least one query is "
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
	struct jscan_array a;
	bool fast = json_is_string(v) && jscan_array(json_string_value(v),
						     json_string_length(v), &a);
	char p[96];

	*ids = NULL;
	*n = 0;
	if (!list_length(v, n))
		return srv_bad(e, "%s: expected an array of ids", path);
	if (*n > max)
		return srv_bad(e, "%s: %zu ids, at most %zu", path, *n, max);
	*ids = malloc((*n ? *n : 1) * sizeof **ids);
	if (!*ids)
		return srv_fail(e, 503, "overloaded", "out of memory");
	for (size_t i = 0; i < *n; i++) {
		bool ok = true;
		snprintf(p, sizeof p, "%s[%zu]", path, i);
		if (!fast) {
			ok = srv_get_u64(json_array_get(v, i), p, *ids + i, e);
		} else if (a.num[i].kind == JSCAN_UINT) {
			(*ids)[i] = a.num[i].u;
		} else {
			ok = a.num[i].kind == JSCAN_NEGATIVE
				     ? srv_bad(e,
					       "%s: %.0f is negative; ids are "
					       "0..2^64-1",
					       p, a.num[i].v)
			     : a.num[i].kind == JSCAN_HUGE
				     ? srv_bad(e,
					       "%s: %.0f is out of range "
					       "0..2^64-1",
					       p, a.num[i].v)
				     : srv_bad(e, "%s: expected an integer id",
					       p);
		}
		if (!ok) {
			free(*ids);
			*ids = NULL;
			return false;
		}
	}
	return true;
}
