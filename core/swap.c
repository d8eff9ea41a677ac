/*
 * swap.c - see swap.h. The old model is released after the mutex is
 * dropped, so freeing a large matrix never happens under the lock.
 */
#include "swap.h"

void fresh_swap_init(struct fresh_swap *s, struct fresh_model *initial)
{
	pthread_mutex_init(&s->mu, NULL);
	s->current = initial;
}

void fresh_swap_destroy(struct fresh_swap *s)
{
	fresh_model_release(s->current);
	s->current = NULL;
	pthread_mutex_destroy(&s->mu);
}

struct fresh_model *fresh_swap_acquire(struct fresh_swap *s)
{
	struct fresh_model *m;

	pthread_mutex_lock(&s->mu);
	m = s->current;
	if (m)
		fresh_model_retain(m);
	pthread_mutex_unlock(&s->mu);
	return m;
}

void fresh_swap_publish(struct fresh_swap *s, struct fresh_model *m)
{
	struct fresh_model *old;

	pthread_mutex_lock(&s->mu);
	old = s->current;
	s->current = m;
	pthread_mutex_unlock(&s->mu);
	fresh_model_release(old);
}
