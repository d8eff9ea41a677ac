/*
 * parse.h - request bodies: JSON per API.md's "Parsing" rules, and typed
 * fields with errors that name the field and index.
 *
 * jansson does the parsing; a pre-scan in front of it (jscan.h) enforces
 * what jansson cannot be told (nesting at most 32 deep, integers up to
 * 2^64-1) and takes over long numeric arrays and base64 strings, which
 * jansson parses slowly. Values may therefore be marked strings: read
 * them only through the getters below (and srv_string for strings), and
 * end with srv_body_release, which frees the pre-scan's side table.
 */
#ifndef SRV_PARSE_H
#define SRV_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define SRV_MAX_DEPTH 32

/*
 * Parses body[0..len) into a JSON object (*out; release it with
 * srv_body_release). An empty body is {} when empty_ok. On failure e is
 * 400 invalid_json. body must stay alive until the release (base64 text
 * is read from it in place).
 */
bool srv_parse_body(const char *body, size_t len, bool empty_ok, json_t **out,
		    struct srv_error *e);
/* Drops a parsed body (accepts NULL). */
void srv_body_release(json_t *body);

/* A JSON string's text (marked or not), *len its length; NULL if not one. */
const char *srv_string(json_t *v, size_t *len);

/* Refuses keys of obj not in allowed (NULL-ended): "unknown field 'x'". */
bool srv_check_keys(json_t *obj, const char *const *allowed,
		    struct srv_error *e);

/* An unsigned 64-bit integer; path names it in errors ("exclude[2][0]"). */
bool srv_get_u64(json_t *v, const char *path, uint64_t *out,
		 struct srv_error *e);
/* A finite number (integer or real) as double. */
bool srv_get_double(json_t *v, const char *path, double *out,
		    struct srv_error *e);

/* Optional integer field in [lo, hi]; def when absent. */
bool srv_field_int(json_t *obj, const char *key, int64_t lo, int64_t hi,
		   int64_t def, int64_t *out, struct srv_error *e);
/* Optional number field in [lo, hi]; def when absent. */
bool srv_field_double(json_t *obj, const char *key, double lo, double hi,
		      double def, double *out, struct srv_error *e);
/* Optional string field among choices (NULL-ended); index of the match. */
bool srv_field_choice(json_t *obj, const char *key, const char *const *choices,
		      int def, int *out, struct srv_error *e);

/*
 * Reads one vector of dim floats from a JSON array (path names it) or a
 * base64 string of little-endian float32 (b64 true). Every value must be
 * a finite float32.
 */
bool srv_get_vector(json_t *v, bool b64, const char *path, size_t dim,
		    float *out, struct srv_error *e);

/*
 * The query vectors of a request: exactly one of "vector", "vectors",
 * "vector_b64", "vectors_b64". *out (n x dim, caller frees) with
 * 1 <= n <= max.
 */
bool srv_get_queries(json_t *obj, size_t dim, size_t max, float **out,
		     size_t *n, struct srv_error *e);

/* Whether v is a list (parsed or pre-scanned), with its length (n may be NULL). */
bool srv_is_list(json_t *v, size_t *n);
/* Whether v is a string of text (not a pre-scanned number or list). */
bool srv_is_text(json_t *v);

/* A list of ids (path names it); *ids caller frees (may be empty). */
bool srv_get_id_list(json_t *v, const char *path, size_t max, uint64_t **ids,
		     size_t *n, struct srv_error *e);

#endif
