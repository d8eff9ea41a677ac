/*
 * log.c - stderr logging (see log.h). Each line is formatted into a
 * buffer and written with one write(2), so concurrent lines never mix.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static bool as_json;
static enum srv_level min_level = SRV_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

void srv_log_setup(bool json, enum srv_level min)
{
	as_json = json;
	min_level = min;
}

/* Appends s escaped for a JSON string or a quoted logfmt value. */
static size_t escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return o;
}

static void emit(enum srv_level level, uint64_t rid, const char *fmt,
		 va_list ap)
{
	char msg[2048], esc[4200], line[4600], ts[40], rid_field[48] = "";
	struct timeval tv;
	struct tm tm;
	int n;

	if (level < min_level)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	escape(esc, sizeof esc, msg);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	if (rid)
		snprintf(rid_field, sizeof rid_field,
			 as_json ? ",\"request_id\":%llu" : " request_id=%llu",
			 (unsigned long long)rid);
	if (as_json)
		n = snprintf(line, sizeof line,
			     "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\"%s,"
			     "\"msg\":\"%s\"}\n",
			     ts, (long)(tv.tv_usec / 1000), names[level],
			     rid_field, esc);
	else
		n = snprintf(line, sizeof line,
			     "ts=%s.%03ldZ level=%s%s msg=\"%s\"\n", ts,
			     (long)(tv.tv_usec / 1000), names[level], rid_field,
			     esc);
	if (n > 0) {
		size_t len =
			(size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
		ssize_t w = write(STDERR_FILENO, line, len);
		(void)w;
	}
}

void srv_log(enum srv_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(level, 0, fmt, ap);
	va_end(ap);
}

void srv_log_req(enum srv_level level, uint64_t request_id, const char *fmt,
		 ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(level, request_id, fmt, ap);
	va_end(ap);
}
