/*
 * progress.h - a thread that logs long work while it runs: a refit's
 * training (epochs) and materialization (rows), every few seconds, with
 * done/total, rate and ETA. The same numbers are in GET /v1/corrector.
 */
#ifndef SRV_PROGRESS_H
#define SRV_PROGRESS_H

#include "engine.h"

struct srv_progress;

struct srv_progress *srv_progress_start(struct fresh_engine *e,
					double every_seconds);
void srv_progress_stop(struct srv_progress *p);

#endif
