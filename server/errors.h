/*
 * errors.h - an HTTP error as the API reports it: status, code, message
 * naming the field (API.md's table), and the one mapping from a core
 * status to it.
 */
#ifndef SRV_ERRORS_H
#define SRV_ERRORS_H

#include <stdbool.h>

#include "status.h"

struct srv_error {
	int http;
	const char *code;
	char msg[512];
	int retry_after; /* seconds, for 503; 0 = none */
};

/* Sets e and returns false, so that a check reads `return srv_fail(...)`. */
bool srv_fail(struct srv_error *e, int http, const char *code, const char *fmt,
	      ...) __attribute__((format(printf, 4, 5)));
/* 400 invalid_argument. */
bool srv_bad(struct srv_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * For a failure to read corrected vectors: srv_error_from_status, saying
 * why when it is FRESH_NOT_READY (a new fresh width, no corrector yet).
 */
void srv_error_corrected(struct srv_error *e, enum fresh_status st);

/* The HTTP status and code for a core status (FRESH_OK is 200). */
void srv_error_from_status(struct srv_error *e, enum fresh_status st,
			   const char *msg);

#endif
