/*
 * log.h - one event a line on stderr, logfmt (default) or JSON, with a
 * level and, for request errors, the request id. Thread-safe.
 */
#ifndef SRV_LOG_H
#define SRV_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum srv_level { SRV_DEBUG, SRV_INFO, SRV_WARN, SRV_ERROR };

void srv_log_setup(bool json, enum srv_level min);
/* msg is free text; kv, when not NULL, is extra "key=value ..." fields. */
void srv_log(enum srv_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* As srv_log, tagged with a request id. */
void srv_log_req(enum srv_level level, uint64_t request_id, const char *fmt,
		 ...) __attribute__((format(printf, 3, 4)));

#endif
