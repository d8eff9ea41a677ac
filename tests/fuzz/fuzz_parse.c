/*
 * fuzz_parse.c - request bodies (server/parse.c): srv_parse_body, then
 * the typed extraction the handlers do, on whatever fields are there.
 *
 * Unlike a handler, which stops at the first error, every extraction is
 * tried on every body, so that each is reached with every kind of value.
 * The query width is 4 (what the seeds use); at most 8 queries.
 *
 * And a differential check of the pre-scan: the bodies accepted must be
 * exactly the JSON objects (at most SRV_MAX_DEPTH deep) that jansson
 * accepts once integers above its range are cut down to size.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "parse.h"

#define DIM 4
#define MAX_QUERIES 8
#define MAX_IDS 64

static const char *const all_keys[] = {
	"vector",  "vectors", "vector_b64", "vectors_b64", "k",
	"n",	   "scoring", "method",	    "temperature", "seed",
	"exclude", "include", "ids",	    "targets",	   "queries",
	"step",	   NULL,
};
static const char *const scorings[] = {"corrected", "stale", NULL};
static const char *const methods[] = {"gumbel", "topk", "uniform", NULL};

static void check_error(const struct srv_error *e)
{
	FZ_CHECK(e->http >= 400 && e->http < 600);
	FZ_CHECK(e->code != NULL);
	FZ_CHECK(memchr(e->msg, '\0', sizeof e->msg) != NULL);
}

/* One item of "targets" or "queries", as api_updates.c reads it. */
static void read_item(json_t *item, const char *id_key)
{
	const char *keys[] = {id_key, "vector", "vector_b64", NULL};
	struct srv_error e;
	uint64_t id;
	float vec[DIM];
	json_t *v, *b;

	if (!json_is_object(item))
		return;
	if (!srv_check_keys(item, keys, &e))
		check_error(&e);
	if (!srv_get_u64(json_object_get(item, id_key), "id", &id, &e))
		check_error(&e);
	v = json_object_get(item, "vector");
	b = json_object_get(item, "vector_b64");
	if (v && !srv_get_vector(v, false, "vector", DIM, vec, &e))
		check_error(&e);
	if (b && !srv_get_vector(b, true, "vector_b64", DIM, vec, &e))
		check_error(&e);
}

static void read_items(json_t *body, const char *key, const char *id_key)
{
	json_t *list = json_object_get(body, key);

	if (!json_is_array(list))
		return;
	for (size_t i = 0; i < json_array_size(list) && i < 64; i++)
		read_item(json_array_get(list, i), id_key);
}

/* "exclude": one id list per query, as api_search.c reads it. */
static void read_lists(json_t *body, const char *key)
{
	json_t *v = json_object_get(body, key);
	struct srv_error e;

	if (!json_is_array(v))
		return;
	for (size_t i = 0; i < json_array_size(v) && i < 64; i++) {
		uint64_t *ids = NULL;
		size_t n = 0;
		if (srv_get_id_list(json_array_get(v, i), key, MAX_IDS, &ids,
				    &n, &e)) {
			FZ_CHECK(n <= MAX_IDS);
			fz_touch(ids, n * sizeof *ids);
		} else {
			check_error(&e);
			FZ_CHECK(ids == NULL);
		}
		free(ids);
	}
}

static void extract(json_t *body)
{
	struct srv_error e;
	int choice;
	int64_t i64;
	double dbl;
	float *q = NULL;
	size_t n = 0;
	uint64_t *ids = NULL, u;

	if (!srv_check_keys(body, all_keys, &e))
		check_error(&e);
	if (srv_field_choice(body, "scoring", scorings, 0, &choice, &e))
		FZ_CHECK(choice >= 0 && choice < 2);
	else
		check_error(&e);
	if (srv_field_choice(body, "method", methods, 0, &choice, &e))
		FZ_CHECK(choice >= 0 && choice < 3);
	else
		check_error(&e);
	if (srv_field_int(body, "k", 1, 1000, 10, &i64, &e))
		FZ_CHECK(i64 >= 1 && i64 <= 1000);
	else
		check_error(&e);
	if (srv_field_int(body, "n", 1, 1000, 16, &i64, &e))
		FZ_CHECK(i64 >= 1 && i64 <= 1000);
	else
		check_error(&e);
	if (srv_field_int(body, "seed", 0, INT64_MAX, -1, &i64, &e))
		FZ_CHECK(i64 >= -1);
	else
		check_error(&e);
	if (srv_field_int(body, "step", 0, INT64_MAX, -1, &i64, &e))
		FZ_CHECK(i64 >= -1);
	else
		check_error(&e);
	if (srv_field_double(body, "temperature", 1e-6, 1e6, 1.0, &dbl, &e))
		FZ_CHECK(dbl >= 1e-6 && dbl <= 1e6);
	else
		check_error(&e);

	if (srv_get_queries(body, DIM, MAX_QUERIES, &q, &n, &e)) {
		FZ_CHECK(q != NULL && n >= 1 && n <= MAX_QUERIES);
		fz_touch(q, n * DIM * sizeof *q);
	} else {
		check_error(&e);
		FZ_CHECK(q == NULL);
	}
	free(q);

	read_lists(body, "exclude");
	read_lists(body, "include");
	if (json_object_get(body, "ids")) {
		if (srv_get_id_list(json_object_get(body, "ids"), "ids",
				    MAX_IDS, &ids, &n, &e))
			fz_touch(ids, n * sizeof *ids);
		else
			check_error(&e);
		free(ids);
	}
	read_items(body, "targets", "id");
	read_items(body, "queries", "positive");

	/* Any top-level value as an id and as a number. */
	{
		const char *key;
		json_t *v;
		json_object_foreach(body, key, v)
		{
			if (!srv_get_u64(v, key, &u, &e))
				check_error(&e);
			if (!srv_get_double(v, key, &dbl, &e))
				check_error(&e);
		}
	}
}

/*
 * The body with every non-negative integer literal longer than 18
 * characters cut to its first 18 (the rest blanked): the same JSON, as far
 * as validity goes, with every integer within jansson's range. (A literal
 * with a leading zero stays invalid; a negative one too large stays too
 * large for both; reals, their exponents included, are left alone.)
 */
static char *neutralize(const uint8_t *data, size_t size)
{
	char *b = fz_memdup(data, size);
	bool in_str = false;

	for (size_t i = 0; i < size; i++) {
		size_t j;
		if (in_str) {
			if (b[i] == '\\')
				i++;
			else if (b[i] == '"')
				in_str = false;
			continue;
		}
		if (b[i] == '"') {
			in_str = true;
			continue;
		}
		if (b[i] == '-' && i + 1 < size && b[i + 1] >= '0' &&
		    b[i + 1] <= '9')
			i++; /* big negative integers are shortened the same way */
		if (b[i] < '0' || b[i] > '9')
			continue;
		for (j = i; j < size && b[j] >= '0' && b[j] <= '9'; j++)
			;
		if (j < size && (b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
			/*
			 * Not an integer: jansson reads it as a real. Skip all
			 * of it; its exponent's digits are no integer either.
			 */
			while (j < size &&
			       ((b[j] >= '0' && b[j] <= '9') || b[j] == '.' ||
				b[j] == 'e' || b[j] == 'E' || b[j] == '+' ||
				b[j] == '-'))
				j++;
			i = j - 1;
			continue;
		}
		if (j - i > 18)
			memset(b + i + 18, ' ', j - i - 18);
		i = j - 1;
	}
	return b;
}

static size_t depth_of(json_t *v)
{
	size_t d = 0;

	if (json_is_object(v)) {
		const char *key;
		json_t *x;
		json_object_foreach(v, key, x)
		{
			size_t dx = depth_of(x);
			if (dx > d)
				d = dx;
		}
		return d + 1;
	}
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			size_t dx = depth_of(json_array_get(v, i));
			if (dx > d)
				d = dx;
		}
		return d + 1;
	}
	return 0;
}

/*
 * Differential: srv_parse_body accepts exactly the JSON objects nested at
 * most SRV_MAX_DEPTH deep, integers outside int64 included (checked on
 * the neutralized body with jansson itself).
 */
static void check_same_language(const uint8_t *data, size_t size, bool ok)
{
	json_error_t jerr;
	char *plain;
	json_t *j;
	bool blank = true;

	for (size_t i = 0; i < size && blank; i++)
		blank = data[i] == ' ' || data[i] == '\n' || data[i] == '\r' ||
			data[i] == '\t';
	/*
	 * Raw NUL bytes are never valid JSON, but jansson lets one pass right
	 * after a number ("[1\0]"), where the cut-down body may differ.
	 */
	if (blank || memchr(data, '\0', size))
		return;
	plain = neutralize(data, size);
	j = json_loadb(plain, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
		       &jerr);
	free(plain);
	if (ok) {
		FZ_CHECK(j != NULL);
		FZ_CHECK(json_is_object(j));
	} else if (j) {
		FZ_CHECK(!json_is_object(j) || depth_of(j) > SRV_MAX_DEPTH);
	}
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srv_error e;
	json_t *body = NULL;
	bool empty_ok = size > 0 && (data[size - 1] == '\n');
	bool ok = srv_parse_body((const char *)data, size, empty_ok, &body, &e);

	check_same_language(data, size, ok);
	if (!ok) {
		check_error(&e);
		FZ_CHECK(body == NULL);
		return 0;
	}
	FZ_CHECK(json_is_object(body));
	extract(body);
	srv_body_release(body);
	return 0;
}
