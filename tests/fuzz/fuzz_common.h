/*
 * fuzz_common.h - what the fuzz harnesses share: the entry point every
 * harness defines, a per-process scratch directory for the parsers that
 * take a path, and checks that abort (so that the fuzzer, or the replay
 * test, reports them as crashes).
 *
 * Harnesses are deterministic (the same input always takes the same path)
 * and leak-free: everything allocated in one call is freed before it
 * returns, and every file written is removed.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Defined by each harness; called by libFuzzer or by replay.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The scratch directory of this process: created on first use under
 * $TMPDIR (else /tmp), removed with its contents at exit.
 */
const char *fz_tmpdir(void);
/* buf = <scratch dir>/name; aborts if it does not fit. */
void fz_path(char *buf, size_t cap, const char *name);
/* Writes data to path (created or truncated); aborts on failure. */
void fz_write(const char *path, const void *data, size_t size);
/* Removes everything inside dir (recursively), keeping dir itself. */
void fz_clear_dir(const char *dir);
/* A malloc'ed copy of exactly size bytes (at least 1 allocated). */
void *fz_memdup(const void *data, size_t size);
/* Reads every byte of p[0..n), so that a bad range is reported. */
void fz_touch(const void *p, size_t n);

/* Reports a broken invariant and aborts. */
_Noreturn void fz_fail(const char *what, const char *file, int line);
#define FZ_CHECK(cond)                                                    \
	do {                                                              \
		if (!(cond))                                              \
			fz_fail(#cond, __FILE__, __LINE__);               \
	} while (0)

#endif
