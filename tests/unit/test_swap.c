/*
 * test_swap.c - the publication pointer: acquire hands out counted
 * references to the current model, publish replaces it and the previous
 * model is freed exactly when its last reference goes (not before, not
 * never), destroy drops the last one; and readers acquiring from several
 * threads during a stream of publishes only ever hold live models, whose
 * versions never go back.
 *
 * A model frees its corrector when it is freed, and the model API has no
 * free callback, so this test is linked with the corrector's free wrapped
 * (meson.build: -Wl,--wrap=fresh_corrector_free): the wrapper records
 * which model's corrector went, which is exactly when the model went.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "corrector.h"
#include "index.h"
#include "model.h"
#include "pool.h"
#include "swap.h"
#include "testutil.h"

#define MAX_MODELS 4096

/* The corrector of each model built, by version, and whether it went. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct fresh_corrector *reg_corr[MAX_MODELS];
static atomic_bool reg_freed[MAX_MODELS];
static atomic_size_t reg_count, frees;

void __real_fresh_corrector_free(struct fresh_corrector *c);
void __wrap_fresh_corrector_free(struct fresh_corrector *c);

void __wrap_fresh_corrector_free(struct fresh_corrector *c)
{
	if (c) {
		/* A freed pointer may come back from malloc for a later
		 * model: match the one entry still live. */
		pthread_mutex_lock(&reg_mu);
		for (size_t v = 0; v < atomic_load(&reg_count); v++)
			if (reg_corr[v] == c && !atomic_load(&reg_freed[v])) {
				atomic_store(&reg_freed[v], true);
				break;
			}
		pthread_mutex_unlock(&reg_mu);
		atomic_fetch_add(&frees, 1);
	}
	__real_fresh_corrector_free(c);
}

static struct fresh_index *idx;
static struct fresh_pool *pool;

static void setup(void)
{
	float x[16 * 4];
	struct tu_rng r = {1};

	tu_fill_normal(&r, x, 16 * 4);
	ck_assert_int_eq(fresh_index_create(16, 4, x, NULL, "swap", &idx, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(1, 0, &pool), FRESH_OK);
	pthread_mutex_lock(&reg_mu);
	atomic_store(&reg_count, 0);
	atomic_store(&frees, 0);
	pthread_mutex_unlock(&reg_mu);
}

static void teardown(void)
{
	fresh_index_release(idx);
	fresh_pool_free(pool);
}

/* A new (identity) model whose version is its registry slot. */
static struct fresh_model *new_model(void)
{
	struct fresh_corrector_shape sh = {FRESH_CORRECTOR_AFFINE,
					   FRESH_ACT_RELU, 4, 4, 0};
	struct fresh_corrector *c;
	struct fresh_model *m;
	size_t v;

	ck_assert_int_eq(fresh_corrector_create(&sh, &c, NULL), FRESH_OK);
	ck_assert_int_eq(
		fresh_model_build(idx, c, pool, NULL, NULL, NULL, &m, NULL),
		FRESH_OK);
	pthread_mutex_lock(&reg_mu);
	v = atomic_load(&reg_count);
	ck_assert_uint_lt(v, MAX_MODELS);
	reg_corr[v] = c;
	atomic_store(&reg_freed[v], false);
	atomic_store(&reg_count, v + 1);
	pthread_mutex_unlock(&reg_mu);
	fresh_model_stamp(m, v, 0);
	return m;
}

static bool freed(uint64_t v)
{
	return atomic_load(&reg_freed[v]);
}

START_TEST(wrapper_sees_frees)
{
	/* The instrument itself: a model alone, released, is seen to go. */
	struct fresh_model *m = new_model();

	ck_assert(!freed(0));
	fresh_model_release(m);
	ck_assert(freed(0));
	ck_assert_uint_eq(atomic_load(&frees), 1);
}
END_TEST

START_TEST(acquire_counts_references)
{
	struct fresh_swap s;
	struct fresh_model *a, *b, *c;

	fresh_swap_init(&s, new_model()); /* version 0 */
	a = fresh_swap_acquire(&s);
	b = fresh_swap_acquire(&s);
	ck_assert_ptr_eq(a, b);
	ck_assert_uint_eq(fresh_model_version(a), 0);
	fresh_model_release(a);
	fresh_model_release(b);
	ck_assert(!freed(0)); /* the swap still holds it */
	c = fresh_swap_acquire(&s);
	ck_assert_uint_eq(fresh_model_version(c), 0);
	fresh_model_release(c);
	fresh_swap_destroy(&s);
	ck_assert(freed(0));
	ck_assert_uint_eq(atomic_load(&frees), 1);
}
END_TEST

START_TEST(publish_frees_after_last_release)
{
	struct fresh_swap s;
	struct fresh_model *r1, *r2, *r3;

	fresh_swap_init(&s, new_model()); /* 0 */
	r1 = fresh_swap_acquire(&s);
	r2 = fresh_swap_acquire(&s);
	fresh_swap_publish(&s, new_model()); /* 1 */
	ck_assert(!freed(0));		     /* two readers hold 0 */
	r3 = fresh_swap_acquire(&s);
	ck_assert_uint_eq(fresh_model_version(r3), 1);
	/* Readers of the old model still see it whole. */
	ck_assert_uint_eq(fresh_model_version(r1), 0);
	ck_assert_ptr_eq(fresh_model_index(r1), idx);
	fresh_model_release(r1);
	ck_assert(!freed(0));
	fresh_model_release(r2);
	ck_assert(freed(0)); /* the last reference went */
	ck_assert(!freed(1));
	/* A model nobody reads goes at the next publish. */
	fresh_swap_publish(&s, new_model()); /* 2 */
	ck_assert(!freed(1));		     /* r3 */
	fresh_model_release(r3);
	ck_assert(freed(1));
	fresh_swap_publish(&s, new_model()); /* 3 */
	ck_assert(freed(2));
	ck_assert(!freed(3));
	fresh_swap_destroy(&s);
	ck_assert(freed(3));
	ck_assert_uint_eq(atomic_load(&frees), 4);
}
END_TEST

START_TEST(empty_swap)
{
	struct fresh_swap s;

	fresh_swap_init(&s, NULL);
	ck_assert_ptr_null(fresh_swap_acquire(&s));
	fresh_swap_publish(&s, new_model());
	{
		struct fresh_model *m = fresh_swap_acquire(&s);
		ck_assert_ptr_nonnull(m);
		ck_assert_uint_eq(fresh_model_version(m), 0);
		fresh_model_release(m);
	}
	fresh_swap_destroy(&s);
	ck_assert(freed(0));
}
END_TEST

struct reader {
	struct fresh_swap *s;
	atomic_bool *stop;
	size_t acquired, errors;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint64_t last = 0;

	while (!atomic_load(r->stop)) {
		struct fresh_model *m = fresh_swap_acquire(r->s);
		uint64_t v = fresh_model_version(m);
		/* Held: never freed under us, and never older than before. */
		if (v < last || freed(v))
			r->errors++;
		if (fresh_model_index(m) != idx)
			r->errors++;
		last = v;
		fresh_model_release(m);
		r->acquired++;
	}
	return NULL;
}

START_TEST(readers_during_publishes)
{
	enum { READERS = 4, PUBLISHES = 1000 };
	struct fresh_swap s;
	struct reader rd[READERS];
	pthread_t th[READERS];
	atomic_bool stop;
	size_t total = 0;

	atomic_init(&stop, false);
	fresh_swap_init(&s, new_model());
	for (int i = 0; i < READERS; i++) {
		rd[i] = (struct reader){&s, &stop, 0, 0};
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
	}
	for (int p = 0; p < PUBLISHES; p++) {
		fresh_swap_publish(&s, new_model());
		/* Let the readers in now and then on a 2-core machine. */
		if (p % 50 == 0)
			sched_yield();
	}
	atomic_store(&stop, true);
	for (int i = 0; i < READERS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(rd[i].errors, 0);
		total += rd[i].acquired;
	}
	ck_assert_uint_gt(total, 0);
	/* Every model but the current one is gone, and only once. */
	ck_assert_uint_eq(atomic_load(&frees), PUBLISHES);
	for (uint64_t v = 0; v < PUBLISHES; v++)
		ck_assert(freed(v));
	ck_assert(!freed(PUBLISHES));
	fresh_swap_destroy(&s);
	ck_assert_uint_eq(atomic_load(&frees), PUBLISHES + 1);
}
END_TEST

static Suite *swap_suite(void)
{
	Suite *s = suite_create("swap");
	TCase *refs = tcase_create("references");
	TCase *conc = tcase_create("concurrency");

	tcase_add_checked_fixture(refs, setup, teardown);
	tcase_add_checked_fixture(conc, setup, teardown);
	tcase_set_timeout(conc, 120);
	tcase_add_test(refs, wrapper_sees_frees);
	tcase_add_test(refs, acquire_counts_references);
	tcase_add_test(refs, publish_frees_after_last_release);
	tcase_add_test(refs, empty_swap);
	tcase_add_test(conc, readers_during_publishes);
	suite_add_tcase(s, refs);
	suite_add_tcase(s, conc);
	return s;
}

int main(void)
{
	return tu_run(swap_suite());
}
