/*
 * status.h - the one status enum of the freshd core.
 *
 * Every fallible core function returns an enum fresh_status. The list below
 * is the single source of both the codes and their default messages; the
 * mapping from status to HTTP status lives once, in the server. Functions
 * that can say more (which file, which row, expected vs found) also fill a
 * struct fresh_error supplied by the caller.
 */
#ifndef FRESH_STATUS_H
#define FRESH_STATUS_H

#include <stdarg.h>

#include <stddef.h>

#define FRESH_STATUS_MAP(X)              \
	X(OK, "ok")                      \
	X(NOMEM, "out of memory")        \
	X(IO, "input/output error")      \
	X(FORMAT, "malformed file")      \
	X(CHECKSUM, "checksum mismatch") \
	X(INVALID, "invalid argument")   \
	X(NOT_FOUND, "not found")        \
	X(CONFLICT, "conflict")          \
	X(TOO_LARGE, "too large")        \
	X(NOT_READY, "not ready")        \
	X(BUSY, "busy")                  \
	X(CANCELLED, "cancelled")        \
	X(NO_SPACE, "no space left on device")

enum fresh_status {
#define FRESH_STATUS_ENUM(name, msg) FRESH_##name,
	FRESH_STATUS_MAP(FRESH_STATUS_ENUM)
#undef FRESH_STATUS_ENUM
		FRESH_STATUS_COUNT
};

/* The code's fixed message, e.g. "out of memory". Never NULL. */
const char *fresh_status_str(enum fresh_status s);
/* The code's name, e.g. "NOT_FOUND". Never NULL. */
const char *fresh_status_name(enum fresh_status s);

/*
 * Details of a failure, written by the function that fails. msg is always
 * NUL-terminated; empty means "nothing beyond the status".
 */
struct fresh_error {
	char msg[512];
};

/*
 * Sets err->msg from a printf format (when err is not NULL) and returns s,
 * so that a failure reads `return fresh_fail(err, FRESH_FORMAT, "...", ...)`.
 */
enum fresh_status fresh_fail(struct fresh_error *err, enum fresh_status s,
			     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

enum fresh_log_level { FRESH_LOG_INFO, FRESH_LOG_WARN, FRESH_LOG_ERROR };

/* Receives the core's events (the core does not print). Thread-safe. */
typedef void (*fresh_log_fn)(void *ctx, enum fresh_log_level level,
			     const char *msg);

/* Formats a message (up to 1 KiB) and hands it to fn; no-op if fn is NULL. */
void fresh_vlogf(fresh_log_fn fn, void *ctx, enum fresh_log_level level,
		 const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

#endif
