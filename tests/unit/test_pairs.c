/*
 * test_pairs.c - the fresh-pair buffer: the newest-pair policy, eviction
 * of the oldest arrival when full, removal, filtering, step-lag snapshots,
 * and a randomized comparison with a simple model.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "pairs.h"
#include "testutil.h"

static void vec(float *v, size_t d, float x)
{
	for (size_t i = 0; i < d; i++)
		v[i] = x + (float)i;
}

START_TEST(newest_by_step_then_arrival)
{
	struct fresh_pairs *p;
	struct fresh_pair got;
	float v[4];
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(4, 100, &p), FRESH_OK);
	vec(v, 4, 1);
	ck_assert_int_eq(fresh_pairs_put(p, 7, v, true, 100, 1, &kept),
			 FRESH_OK);
	ck_assert(kept);
	vec(v, 4, 2); /* older step: ignored */
	ck_assert_int_eq(fresh_pairs_put(p, 7, v, true, 90, 2, &kept),
			 FRESH_OK);
	ck_assert(!kept);
	ck_assert(fresh_pairs_get(p, 7, &got));
	ck_assert_float_eq(got.g[0], 1.0f);
	ck_assert_int_eq(got.step, 100);
	vec(v, 4, 3); /* same step: the later arrival wins */
	ck_assert_int_eq(fresh_pairs_put(p, 7, v, true, 100, 3, &kept),
			 FRESH_OK);
	ck_assert(kept);
	ck_assert(fresh_pairs_get(p, 7, &got));
	ck_assert_float_eq(got.g[0], 3.0f);
	ck_assert_uint_eq(got.seq, 3);
	vec(v, 4, 4); /* no step: arrival order decides */
	ck_assert(fresh_pairs_would_keep(p, 7, false, 0));
	ck_assert_int_eq(fresh_pairs_put(p, 7, v, false, 0, 4, &kept),
			 FRESH_OK);
	ck_assert(kept);
	ck_assert(fresh_pairs_get(p, 7, &got));
	ck_assert(!got.has_step);
	ck_assert_float_eq(got.g[3], 7.0f);
	ck_assert_uint_eq(fresh_pairs_count(p), 1);
	fresh_pairs_free(p);
}
END_TEST

START_TEST(evicts_oldest_arrival)
{
	struct fresh_pairs *p;
	struct fresh_pair got;
	float v[2] = {0, 0};
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(2, 3, &p), FRESH_OK);
	for (uint64_t id = 1; id <= 3; id++)
		ck_assert_int_eq(fresh_pairs_put(p, id, v, false, 0, id, &kept),
				 FRESH_OK);
	/* Refreshing 1 makes 2 the oldest. */
	ck_assert_int_eq(fresh_pairs_put(p, 1, v, false, 0, 4, &kept),
			 FRESH_OK);
	ck_assert_int_eq(fresh_pairs_put(p, 9, v, false, 0, 5, &kept),
			 FRESH_OK);
	ck_assert_uint_eq(fresh_pairs_count(p), 3);
	ck_assert(!fresh_pairs_get(p, 2, &got));
	ck_assert(fresh_pairs_get(p, 1, &got));
	ck_assert(fresh_pairs_get(p, 3, &got));
	ck_assert(fresh_pairs_get(p, 9, &got));
	fresh_pairs_free(p);
}
END_TEST

static bool keep_even(void *arg, uint64_t id)
{
	(void)arg;
	return id % 2 == 0;
}

START_TEST(remove_filter_clear)
{
	struct fresh_pairs *p;
	struct fresh_pair got;
	float v[3] = {1, 2, 3};
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(3, 1000, &p), FRESH_OK);
	for (uint64_t id = 0; id < 500; id++)
		ck_assert_int_eq(fresh_pairs_put(p, id * 1000003, v, false, 0,
						 id, &kept),
				 FRESH_OK);
	ck_assert(fresh_pairs_remove(p, 3 * 1000003));
	ck_assert(!fresh_pairs_remove(p, 3 * 1000003));
	ck_assert_uint_eq(fresh_pairs_count(p), 499);
	ck_assert_uint_eq(fresh_pairs_filter(p, keep_even, NULL), 249);
	ck_assert_uint_eq(fresh_pairs_count(p), 250);
	for (uint64_t id = 0; id < 500; id++)
		ck_assert(fresh_pairs_get(p, id * 1000003, &got) ==
			  ((id * 1000003) % 2 == 0 && id != 3));
	fresh_pairs_clear(p);
	ck_assert_uint_eq(fresh_pairs_count(p), 0);
	ck_assert(!fresh_pairs_get(p, 0, &got));
	ck_assert_int_eq(fresh_pairs_put(p, 5, v, false, 0, 1, &kept),
			 FRESH_OK);
	ck_assert(fresh_pairs_get(p, 5, &got));
	fresh_pairs_free(p);
}
END_TEST

START_TEST(snapshot_drops_lagging_steps)
{
	struct fresh_pairs *p;
	struct fresh_pairs_snapshot snap;
	float v[2];
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(2, 10, &p), FRESH_OK);
	vec(v, 2, 1);
	fresh_pairs_put(p, 1, v, true, 100, 10, &kept);
	vec(v, 2, 2);
	fresh_pairs_put(p, 2, v, true, 500, 11, &kept);
	vec(v, 2, 3);
	fresh_pairs_put(p, 3, v, false, 0, 12, &kept);
	vec(v, 2, 4);
	fresh_pairs_put(p, 4, v, true, 450, 13, &kept);
	ck_assert_int_eq(fresh_pairs_snapshot(p, 0, &snap), FRESH_OK);
	ck_assert_uint_eq(snap.n, 4);
	ck_assert_uint_eq(snap.max_seq, 13);
	ck_assert_uint_eq(snap.ids[0], 1); /* arrival order */
	ck_assert_float_eq(snap.g[2 * 3], 4.0f);
	fresh_pairs_snapshot_free(&snap);
	ck_assert_int_eq(fresh_pairs_snapshot(p, 100, &snap), FRESH_OK);
	ck_assert_uint_eq(snap.n, 3); /* step 100 is 400 behind 500 */
	ck_assert_uint_eq(snap.ids[0], 2);
	ck_assert_uint_eq(snap.ids[1], 3);
	ck_assert_uint_eq(snap.ids[2], 4);
	fresh_pairs_snapshot_free(&snap);
	fresh_pairs_free(p);
}
END_TEST

START_TEST(expire_removes_pairs_below_a_step)
{
	struct fresh_pairs *p;
	struct fresh_pair got;
	float v[2] = {0, 0};
	int64_t newest = -1;
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(2, 10, &p), FRESH_OK);
	ck_assert(!fresh_pairs_newest_step(p, &newest));
	fresh_pairs_put(p, 1, v, true, 5, 1, &kept);
	fresh_pairs_put(p, 2, v, true, 50, 2, &kept);
	fresh_pairs_put(p, 3, v, false, 0, 3, &kept);
	fresh_pairs_put(p, 4, v, true, 40, 4, &kept);
	ck_assert(fresh_pairs_newest_step(p, &newest));
	ck_assert_int_eq(newest, 50);
	ck_assert_uint_eq(fresh_pairs_count_below(p, 40), 1);
	ck_assert_uint_eq(fresh_pairs_expire(p, 40), 1);
	ck_assert(!fresh_pairs_get(p, 1, &got));
	ck_assert(fresh_pairs_get(p, 3, &got)); /* no step: never expires */
	ck_assert(fresh_pairs_get(p, 4, &got));
	ck_assert_uint_eq(fresh_pairs_count(p), 3);
	fresh_pairs_free(p);
}
END_TEST

START_TEST(randomized_against_model)
{
	/* Model: per id the newest (step, arrival); evict oldest arrival. */
	enum { IDS = 300, CAP = 120, OPS = 20000 };
	struct model {
		bool present, has_step;
		int64_t step;
		uint64_t arrival;
		float g0;
	} m[IDS];
	struct fresh_pairs *p;
	struct tu_rng r = {42};
	size_t count = 0;

	memset(m, 0, sizeof m);
	ck_assert_int_eq(fresh_pairs_create(1, CAP, &p), FRESH_OK);
	for (uint64_t t = 1; t <= OPS; t++) {
		uint64_t id = tu_next(&r) % IDS;
		bool has_step = tu_next(&r) % 4 != 0;
		int64_t step = (int64_t)(tu_next(&r) % 50);
		float g = (float)t;
		bool kept, want;

		if (tu_next(&r) % 50 == 0) {
			bool was = m[id].present;
			ck_assert(fresh_pairs_remove(p, id) == was);
			if (was)
				count--;
			m[id].present = false;
			continue;
		}
		want = !m[id].present || !has_step || !m[id].has_step ||
		       step >= m[id].step;
		ck_assert_int_eq(
			fresh_pairs_put(p, id, &g, has_step, step, t, &kept),
			FRESH_OK);
		ck_assert(kept == want);
		if (!want)
			continue;
		if (!m[id].present && count == CAP) {
			size_t oldest = IDS;
			for (size_t i = 0; i < IDS; i++)
				if (m[i].present &&
				    (oldest == IDS ||
				     m[i].arrival < m[oldest].arrival))
					oldest = i;
			m[oldest].present = false;
			count--;
		}
		if (!m[id].present)
			count++;
		m[id].present = true;
		m[id].has_step = has_step;
		m[id].step = step;
		m[id].arrival = t;
		m[id].g0 = g;
	}
	ck_assert_uint_eq(fresh_pairs_count(p), count);
	for (uint64_t id = 0; id < IDS; id++) {
		struct fresh_pair got;
		bool present = fresh_pairs_get(p, id, &got);
		ck_assert(present == m[id].present);
		if (present)
			ck_assert_float_eq(got.g[0], m[id].g0);
	}
	fresh_pairs_free(p);
}
END_TEST

static Suite *pairs_suite(void)
{
	Suite *s = suite_create("pairs");
	TCase *policy = tcase_create("policy");
	TCase *model = tcase_create("model");

	tcase_add_test(policy, newest_by_step_then_arrival);
	tcase_add_test(policy, evicts_oldest_arrival);
	tcase_add_test(policy, remove_filter_clear);
	tcase_add_test(policy, snapshot_drops_lagging_steps);
	tcase_add_test(policy, expire_removes_pairs_below_a_step);
	tcase_add_test(model, randomized_against_model);
	suite_add_tcase(s, policy);
	suite_add_tcase(s, model);
	return s;
}

int main(void)
{
	return tu_run(pairs_suite());
}
