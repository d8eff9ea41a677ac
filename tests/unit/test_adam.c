/*
 * test_adam.c - Adam steps against numbers computed by hand.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "adam.h"
#include "testutil.h"

START_TEST(first_steps_by_hand)
{
	/*
	 * lr 0.1, betas 0.9/0.999, eps 1e-8, p0 = 1, gradients 2 then -1.
	 * Step 1: m = 0.2, v = 0.004, m̂ = 2, v̂ = 4 -> p = 1 - 0.1*2/2 = 0.9.
	 * Step 2: m = 0.18 - 0.1 = 0.08, v = 0.003996 + 0.001 = 0.004996,
	 *   m̂ = 0.08/0.19 = 0.42105263, v̂ = 0.004996/0.001999 = 2.49924962,
	 *   p = 0.9 - 0.1 * 0.42105263 / 1.58090150 = 0.87336630.
	 */
	struct fresh_adam a;
	struct fresh_adam_config cfg = fresh_adam_config_default();
	float p[2] = {1.0f, 5.0f}, g[2];

	cfg.lr = 0.1f;
	ck_assert_int_eq(fresh_adam_init(&a, 2, cfg), FRESH_OK);
	g[0] = 2.0f;
	g[1] = 100.0f;
	fresh_adam_step(&a, p, g, 0, 1); /* p[1] is outside the range */
	ck_assert_float_eq_tol(p[0], 0.9f, 1e-6f);
	ck_assert_float_eq(p[1], 5.0f);
	g[0] = -1.0f;
	fresh_adam_step(&a, p, g, 0, 1);
	ck_assert_float_eq_tol(p[0], 0.87336630f, 1e-6f);
	ck_assert_uint_eq(a.t, 2);
	fresh_adam_reset(&a);
	ck_assert_uint_eq(a.t, 0);
	ck_assert_float_eq(a.m[0], 0.0f);
	fresh_adam_free(&a);
}
END_TEST

START_TEST(weight_decay_is_decoupled)
{
	/* Zero gradient: only the decay acts, p -= lr * wd * p. */
	struct fresh_adam a;
	struct fresh_adam_config cfg = fresh_adam_config_default();
	float p[1] = {2.0f}, g[1] = {0.0f};

	cfg.lr = 0.5f;
	cfg.weight_decay = 0.1f;
	ck_assert_int_eq(fresh_adam_init(&a, 1, cfg), FRESH_OK);
	fresh_adam_step(&a, p, g, 0, 1);
	ck_assert_float_eq_tol(p[0], 2.0f - 0.5f * 0.1f * 2.0f, 1e-6f);
	fresh_adam_free(&a);
}
END_TEST

START_TEST(minimizes_a_quadratic)
{
	struct fresh_adam a;
	struct fresh_adam_config cfg = fresh_adam_config_default();
	float p[3] = {3.0f, -2.0f, 0.5f}, g[3];
	const float target[3] = {1.0f, 1.0f, -1.0f};

	cfg.lr = 0.05f;
	ck_assert_int_eq(fresh_adam_init(&a, 3, cfg), FRESH_OK);
	for (int it = 0; it < 2000; it++) {
		for (int i = 0; i < 3; i++)
			g[i] = 2.0f * (p[i] - target[i]);
		fresh_adam_step(&a, p, g, 0, 3);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_float_eq_tol(p[i], target[i], 1e-3f);
	fresh_adam_free(&a);
}
END_TEST

static Suite *adam_suite(void)
{
	Suite *s = suite_create("adam");
	TCase *tc = tcase_create("steps");

	tcase_add_test(tc, first_steps_by_hand);
	tcase_add_test(tc, weight_decay_is_decoupled);
	tcase_add_test(tc, minimizes_a_quadratic);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(adam_suite());
}
