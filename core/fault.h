/*
 * fault.h - I/O fault injection, for tests only: a build configured with
 * `meson -Dfault_injection=true` counts every I/O call that goes through
 * fileio.h's fresh_sys_* wrappers, and fails one of them on request:
 *
 *   FRESHD_FAULT=N[:ENOSPC]   the Nth call fails with EIO (or ENOSPC)
 *   FRESHD_FAULT_TRACE=FILE   appends "N op path" for every call
 *
 * tests/integration/test_faults.py walks N over every call of a scripted
 * session. In other builds fresh_fault_hit is a constant false and the
 * wrappers are the plain system calls.
 */
#ifndef FRESH_FAULT_H
#define FRESH_FAULT_H

#include <stdbool.h>

#ifdef FRESH_FAULT_INJECTION
/*
 * Counts one I/O call (op names it: "write", "fsync", ...; what it is on,
 * for the trace); true when this call is the one to fail, with errno set.
 */
bool fresh_fault_hit(const char *op, const char *what);
#else
static inline bool fresh_fault_hit(const char *op, const char *what)
{
	(void)op;
	(void)what;
	return false;
}
#endif

#endif
