/*
 * status.c - names and messages of enum fresh_status, and fresh_fail.
 */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[] = {
#define FRESH_STATUS_MSG(name, msg) msg,
	FRESH_STATUS_MAP(FRESH_STATUS_MSG)
#undef FRESH_STATUS_MSG
};

static const char *const names[] = {
#define FRESH_STATUS_NAME(name, msg) #name,
	FRESH_STATUS_MAP(FRESH_STATUS_NAME)
#undef FRESH_STATUS_NAME
};

const char *fresh_status_str(enum fresh_status s)
{
	if ((unsigned)s >= FRESH_STATUS_COUNT)
		return "unknown status";
	return messages[s];
}

const char *fresh_status_name(enum fresh_status s)
{
	if ((unsigned)s >= FRESH_STATUS_COUNT)
		return "UNKNOWN";
	return names[s];
}

enum fresh_status fresh_fail(struct fresh_error *err, enum fresh_status s,
			     const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return s;
}

void fresh_vlogf(fresh_log_fn fn, void *ctx, enum fresh_log_level level,
		 const char *fmt, va_list ap)
{
	char msg[1024];

	if (!fn)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	fn(ctx, level, msg);
}
