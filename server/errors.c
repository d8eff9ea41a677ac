/*
 * errors.c - the status mapping. The only place that decides which HTTP
 * status a core failure becomes.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "errors.h"

bool srv_fail(struct srv_error *e, int http, const char *code, const char *fmt,
	      ...)
{
	va_list ap;

	e->http = http;
	e->code = code;
	e->retry_after = http == 503 ? 1 : 0;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return false;
}

bool srv_bad(struct srv_error *e, const char *fmt, ...)
{
	va_list ap;

	e->http = 400;
	e->code = "invalid_argument";
	e->retry_after = 0;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return false;
}

void srv_error_from_status(struct srv_error *e, enum fresh_status st,
			   const char *msg)
{
	static const struct {
		enum fresh_status st;
		int http;
		const char *code;
	} map[] = {
		{FRESH_OK, 200, "ok"},
		{FRESH_INVALID, 400, "invalid_argument"},
		{FRESH_FORMAT, 400, "invalid_argument"},
		{FRESH_CHECKSUM, 400, "invalid_argument"},
		{FRESH_NOT_FOUND, 404, "not_found"},
		{FRESH_CONFLICT, 409, "conflict"},
		{FRESH_TOO_LARGE, 413, "payload_too_large"},
		{FRESH_NOT_READY, 503, "not_ready"},
		{FRESH_CANCELLED, 503, "not_ready"},
		{FRESH_IO, 503, "not_ready"},
		{FRESH_NO_SPACE, 503, "insufficient_storage"},
		{FRESH_BUSY, 503, "overloaded"},
		{FRESH_NOMEM, 503, "overloaded"},
	};
	e->http = 500;
	e->code = "internal";
	for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
		if (map[i].st == st) {
			e->http = map[i].http;
			e->code = map[i].code;
		}
	}
	e->retry_after = e->http == 503 ? 1 : 0;
	snprintf(e->msg, sizeof e->msg, "%s",
		 msg && msg[0] ? msg : fresh_status_str(st));
}

void srv_error_corrected(struct srv_error *e, enum fresh_status st)
{
	srv_error_from_status(e, st,
			      st == FRESH_NOT_READY
				      ? "corrected vectors are not ready: no "
					"corrector has been fitted for the "
					"fresh width yet"
				      : NULL);
}
