/*
 * clock.h - the core's two clocks, in seconds as doubles: monotonic for
 * durations and deadlines, wall (unix time) for what is reported.
 */
#ifndef FRESH_CLOCK_H
#define FRESH_CLOCK_H

#include <time.h>

static inline double fresh_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double fresh_walltime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
