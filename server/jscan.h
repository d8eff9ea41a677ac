/*
 * jscan.h - the pre-scan in front of jansson.
 *
 * jansson parses every number of a vector into its own heap object and
 * every base64 string byte by byte; a request of a few thousand 768-wide
 * vectors then spends its time there. The pre-scan walks the body once
 * and hands jansson a lighter copy in which
 *   - an array of 8 or more plain numbers becomes a marked string that
 *     refers to the numbers, parsed here into a side table;
 *   - a long string of base64 characters (not a key, no escapes) becomes a
 *     marked string that refers to the text in the original body;
 *   - an integer literal outside int64 (jansson's integers are signed
 *     64-bit) becomes a marked string holding its digits (and sign).
 * Marks start with "\u0001" and a per-process random 16-hex-digit nonce,
 * so no client can forge one; any key that carries the mark is refused.
 * The pre-scan also enforces the nesting limit and refuses numbers that
 * overflow a double, as jansson would.
 *
 * The side table belongs to the document and lives in thread-local
 * storage from jscan_run until jscan_release: a request is parsed and
 * handled on one thread (server.h).
 */
#ifndef SRV_JSCAN_H
#define SRV_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a number of a marked array is. */
enum jscan_kind {
	JSCAN_REAL,	/* has a fraction or exponent */
	JSCAN_UINT,	/* integer in 0..2^64-1: u holds it exactly */
	JSCAN_NEGATIVE, /* integer below zero */
	JSCAN_HUGE,	/* integer above 2^64-1 */
};

struct jscan_num {
	double v;   /* the value (as strtod reads it) */
	uint64_t u; /* exact, for JSCAN_UINT */
	enum jscan_kind kind;
};

struct jscan_array {
	size_t n;
	const struct jscan_num *num;
};

enum jscan_status { JSCAN_OK, JSCAN_TOO_DEEP, JSCAN_OVERFLOW, JSCAN_NOMEM };

/*
 * Scans body[0..len) with at most max_depth nesting. On JSCAN_OK, *out
 * (malloc'ed, NUL-ended, *out_len bytes) is what jansson should parse and
 * the side table is installed for this thread. *where is the offset of the
 * problem otherwise.
 */
enum jscan_status jscan_run(const char *body, size_t len, int max_depth,
			    char **out, size_t *out_len, size_t *where);
/* Drops this thread's side table. */
void jscan_release(void);

/* The mark every marked string starts with (17 bytes, not NUL-free). */
bool jscan_is_marked(const char *s, size_t len);

/* Marked big integer: its digits, maybe with a minus (NUL-ended). */
const char *jscan_big_integer(const char *s, size_t len);
/* Marked numeric array: true and *a, else false. */
bool jscan_array(const char *s, size_t len, struct jscan_array *a);
/* Marked long string: its text in the original body, else false. */
bool jscan_string(const char *s, size_t len, const char **text,
		  size_t *text_len);

#endif
