/*
 * swap.h - the one pointer through which models are published.
 *
 * A reader takes a counted reference to the current model (acquire) and
 * drops it when done (fresh_model_release); a writer publishes a finished
 * model by swapping the pointer. The mutex is held only for the pointer
 * load plus the reference increment (doing those two without it lets a
 * publish free the model in between: a use-after-free ASan caught), so a
 * reader never waits for training or materialization.
 */
#ifndef FRESH_SWAP_H
#define FRESH_SWAP_H

#include <pthread.h>

#include "model.h"

struct fresh_swap {
	pthread_mutex_t mu;
	struct fresh_model *current; /* guarded by mu */
};

/* Takes ownership of the reference initial carries. */
void fresh_swap_init(struct fresh_swap *s, struct fresh_model *initial);
/* Releases the current model. No reader may still call acquire. */
void fresh_swap_destroy(struct fresh_swap *s);

/* A new reference to the current model; release it when done. */
struct fresh_model *fresh_swap_acquire(struct fresh_swap *s);

/*
 * Makes m current, taking ownership of its reference, and drops the
 * swap's reference to the previous model (freed once readers let go).
 */
void fresh_swap_publish(struct fresh_swap *s, struct fresh_model *m);

#endif
