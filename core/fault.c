/*
 * fault.c - I/O fault injection for test builds (see fault.h).
 */
#include "fault.h"

#ifdef FRESH_FAULT_INJECTION

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_ulong calls;
static unsigned long target; /* 0: none */
static int fail_errno = EIO;
static FILE *trace;
static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;

static void init(void)
{
	const char *f = getenv("FRESHD_FAULT");
	const char *t = getenv("FRESHD_FAULT_TRACE");

	if (f) {
		char *end;
		target = strtoul(f, &end, 10);
		if (strcmp(end, ":ENOSPC") == 0)
			fail_errno = ENOSPC;
	}
	if (t && *t)
		trace = fopen(t, "a");
}

bool fresh_fault_hit(const char *op, const char *what)
{
	unsigned long n;

	pthread_once(&once, init);
	n = atomic_fetch_add(&calls, 1) + 1;
	if (trace) {
		pthread_mutex_lock(&trace_mu);
		fprintf(trace, "%lu %s %s\n", n, op, what ? what : "-");
		fflush(trace);
		pthread_mutex_unlock(&trace_mu);
	}
	if (n != target)
		return false;
	fprintf(stderr, "fault injection: I/O call %lu (%s %s) fails with %s\n",
		n, op, what ? what : "-", strerror(fail_errno));
	errno = fail_errno;
	return true;
}

#endif
