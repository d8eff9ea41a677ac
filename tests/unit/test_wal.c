/*
 * test_wal.c - the update log: replay after reopen, torn tails cut, a
 * corrupt middle refused (and salvaged on request), group commit from many
 * threads with in-order application, injected write and sync failures
 * that acknowledge nothing, segment rolls and compaction.
 */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "wal.h"

static char dir[4096];
static void setup(void)
{
	tu_tmpdir(dir, sizeof dir);
}
static void teardown(void)
{
	tu_rmdir(dir);
}

/* What the apply callback saw. */
struct seen {
	pthread_mutex_t mu;
	size_t n;
	uint64_t seq[20000];
	uint32_t value[20000];
	bool in_order;
};

static void apply(void *ctx, uint64_t seq, const void *p, size_t len)
{
	struct seen *s = ctx;
	uint32_t v = 0;

	ck_assert_uint_eq(len, 64);
	memcpy(&v, p, 4);
	pthread_mutex_lock(&s->mu);
	if (s->n > 0 && s->seq[s->n - 1] + 1 != seq)
		s->in_order = false;
	s->seq[s->n] = seq;
	s->value[s->n++] = v;
	pthread_mutex_unlock(&s->mu);
}

static void seen_init(struct seen *s)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	s->in_order = true;
}

static struct fresh_wal_config config(void)
{
	struct fresh_wal_config c = {dir,  FRESH_SYNC_ALWAYS, 0, 0, false,
				     false};
	return c;
}

static struct fresh_wal *open_log(struct fresh_wal_config c, uint64_t after,
				  struct seen *s,
				  struct fresh_wal_recovery *rec)
{
	struct fresh_wal *w = NULL;
	struct fresh_error err;
	struct fresh_wal_recovery local;

	seen_init(s);
	ck_assert_msg(fresh_wal_open(&c, after, apply, s, &w,
				     rec ? rec : &local, &err) == FRESH_OK,
		      "open: %s", err.msg);
	return w;
}

static uint64_t append(struct fresh_wal *w, uint32_t v)
{
	unsigned char p[64];
	uint64_t seq = 0;
	struct fresh_error err;

	memset(p, (int)(v & 0xff), sizeof p);
	memcpy(p, &v, 4);
	ck_assert_msg(fresh_wal_append(w, p, sizeof p, &seq, &err) == FRESH_OK,
		      "append: %s", err.msg);
	return seq;
}

/* The newest segment file's path. */
static void last_segment(char *buf, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char best[256] = "";

	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "wal-", 4) == 0 &&
		    strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof best, "%s", e->d_name);
	closedir(d);
	snprintf(buf, cap, "%s/%s", dir, best);
}

static size_t count_segments(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "wal-", 4) == 0;
	closedir(d);
	return n;
}

static off_t file_size(const char *path)
{
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	return sb.st_size;
}

static struct seen s1, s2;

START_TEST(replays_after_reopen)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);

	for (uint32_t i = 0; i < 100; i++)
		ck_assert_uint_eq(append(w, 1000 + i), i + 1);
	ck_assert_uint_eq(s1.n, 100);
	ck_assert_uint_eq(fresh_wal_last_seq(w), 100);
	fresh_wal_close(w);
	w = open_log(config(), 0, &s2, NULL);
	ck_assert_uint_eq(s2.n, 100);
	ck_assert(s2.in_order);
	for (size_t i = 0; i < 100; i++)
		ck_assert_uint_eq(s2.value[i], 1000 + i);
	ck_assert_uint_eq(append(w, 7), 101);
	fresh_wal_close(w);
	/* after_seq skips what a snapshot already covers. */
	w = open_log(config(), 60, &s2, NULL);
	ck_assert_uint_eq(s2.n, 41);
	ck_assert_uint_eq(s2.seq[0], 61);
	fresh_wal_close(w);
}
END_TEST

START_TEST(torn_tail_is_cut)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	struct fresh_wal_recovery rec;
	char seg[4200];

	for (uint32_t i = 0; i < 10; i++)
		append(w, i);
	fresh_wal_close(w);
	last_segment(seg, sizeof seg);
	/* The newest segment is the empty one made at open; use its parent. */
	{
		DIR *d = opendir(dir);
		struct dirent *e;
		char name[256] = "";
		while ((e = readdir(d)) != NULL)
			if (strncmp(e->d_name, "wal-", 4) == 0 &&
			    (name[0] == '\0' || strcmp(e->d_name, name) < 0))
				snprintf(name, sizeof name, "%s", e->d_name);
		closedir(d);
		snprintf(seg, sizeof seg, "%s/%s", dir, name);
	}
	/* Remove the empty newest segment so the torn one is the last. */
	{
		char newest[4200];
		last_segment(newest, sizeof newest);
		if (strcmp(newest, seg) != 0)
			unlink(newest);
	}
	ck_assert_int_eq(truncate(seg, file_size(seg) - 30), 0);
	w = open_log(config(), 0, &s2, &rec);
	ck_assert_uint_eq(s2.n, 9);
	ck_assert_uint_eq(rec.torn_bytes, 80 - 30);
	ck_assert(strstr(rec.note, "torn tail") != NULL);
	ck_assert_uint_eq(append(w, 99), 10);
	fresh_wal_close(w);
	w = open_log(config(), 0, &s2, &rec);
	ck_assert_uint_eq(s2.n, 10);
	ck_assert_uint_eq(s2.value[9], 99);
	ck_assert_uint_eq(rec.torn_bytes, 0);
	fresh_wal_close(w);
}
END_TEST

/* Flips one byte at offset off of the oldest segment. */
static void flip_oldest(off_t off, char *seg, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char name[256] = "";
	FILE *f;
	int c;

	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "wal-", 4) == 0 &&
		    (name[0] == '\0' || strcmp(e->d_name, name) < 0))
			snprintf(name, sizeof name, "%s", e->d_name);
	closedir(d);
	snprintf(seg, cap, "%s/%s", dir, name);
	f = fopen(seg, "r+b");
	fseek(f, off, SEEK_SET);
	c = fgetc(f);
	fseek(f, off, SEEK_SET);
	fputc(c ^ 0x40, f);
	fclose(f);
}

START_TEST(corrupt_middle_refused_or_salvaged)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	struct fresh_wal_config c = config();
	struct fresh_wal_recovery rec;
	struct fresh_error err;
	char seg[4200];

	for (uint32_t i = 0; i < 10; i++)
		append(w, i);
	fresh_wal_close(w);
	/* Record 4 starts at 32 + 3 * 80; corrupt its payload. */
	flip_oldest(32 + 3 * 80 + 16 + 10, seg, sizeof seg);
	seen_init(&s2);
	ck_assert_int_eq(fresh_wal_open(&c, 0, apply, &s2, &w, &rec, &err),
			 FRESH_FORMAT);
	ck_assert_msg(strstr(err.msg, "checksum mismatch at offset 272") &&
			      strstr(err.msg, seg),
		      "%s", err.msg);
	c.salvage = true;
	w = open_log(c, 0, &s2, &rec);
	ck_assert_uint_eq(s2.n, 3);
	ck_assert(rec.salvaged_bytes > 0);
	ck_assert(strstr(rec.note, "salvaged") != NULL);
	ck_assert_uint_eq(append(w, 50), 4);
	fresh_wal_close(w);
	w = open_log(config(), 0, &s2, NULL);
	ck_assert_uint_eq(s2.n, 4);
	fresh_wal_close(w);
}
END_TEST

START_TEST(bad_checksum_on_final_record_is_a_tail)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	struct fresh_wal_recovery rec;
	char seg[4200], newest[4200];

	for (uint32_t i = 0; i < 5; i++)
		append(w, i);
	fresh_wal_close(w);
	last_segment(newest, sizeof newest);
	flip_oldest(32 + 4 * 80 + 16 + 40, seg, sizeof seg);
	if (strcmp(newest, seg) != 0)
		unlink(newest);
	w = open_log(config(), 0, &s2, &rec);
	ck_assert_uint_eq(s2.n, 4);
	ck_assert_uint_eq(rec.torn_bytes, 80);
	fresh_wal_close(w);
}
END_TEST

struct writer_arg {
	struct fresh_wal *w;
	uint32_t base;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	for (uint32_t i = 0; i < 200; i++)
		append(a->w, a->base + i);
	return NULL;
}

START_TEST(group_commit_from_many_threads)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	pthread_t th[8];
	struct writer_arg args[8];
	struct fresh_wal_stats st;
	static bool hit[8 * 200];

	for (int i = 0; i < 8; i++) {
		args[i].w = w;
		args[i].base = (uint32_t)i * 200;
		pthread_create(&th[i], NULL, writer, &args[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	fresh_wal_stats(w, &st);
	ck_assert_uint_eq(st.appends, 1600);
	ck_assert_uint_eq(s1.n, 1600);
	ck_assert(s1.in_order);
	/* Syncs are shared: strictly fewer than appends (plus rolls). */
	ck_assert_uint_lt(st.syncs, st.appends);
	fresh_wal_close(w);
	w = open_log(config(), 0, &s2, NULL);
	ck_assert_uint_eq(s2.n, 1600);
	memset(hit, 0, sizeof hit);
	for (size_t i = 0; i < 1600; i++) {
		ck_assert(!hit[s2.value[i]]);
		hit[s2.value[i]] = true;
		ck_assert_uint_eq(s2.value[i], s1.value[i]);
	}
	fresh_wal_close(w);
}
END_TEST

START_TEST(failed_sync_acknowledges_nothing)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	unsigned char p[64] = {0};
	uint64_t seq;
	struct fresh_error err;

	append(w, 1);
	append(w, 2);
	fresh_wal_fail_after(w, 0, 1);
	p[0] = 3;
	ck_assert_int_eq(fresh_wal_append(w, p, sizeof p, &seq, &err),
			 FRESH_IO);
	ck_assert_uint_eq(s1.n, 2); /* not applied */
	ck_assert(!fresh_wal_writable(w));
	/* The next append rolls to a new segment and succeeds. */
	ck_assert_uint_eq(append(w, 4), 3);
	ck_assert(fresh_wal_writable(w));
	fresh_wal_close(w);
	w = open_log(config(), 0, &s2, NULL);
	ck_assert_uint_eq(s2.n, 3);
	ck_assert_uint_eq(s2.value[0], 1);
	ck_assert_uint_eq(s2.value[1], 2);
	ck_assert_uint_eq(s2.value[2], 4);
	ck_assert(s2.in_order);
	fresh_wal_close(w);
}
END_TEST

START_TEST(failed_write_acknowledges_nothing)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	unsigned char p[64] = {0};
	uint64_t seq;
	struct fresh_error err;

	append(w, 1);
	fresh_wal_fail_after(w, 1, 0);
	ck_assert_int_eq(fresh_wal_append(w, p, sizeof p, &seq, &err),
			 FRESH_IO);
	ck_assert(strstr(err.msg, "write failed") != NULL);
	ck_assert_uint_eq(append(w, 5), 2);
	append(w, 6);
	fresh_wal_close(w);
	w = open_log(config(), 0, &s2, NULL);
	ck_assert_uint_eq(s2.n, 3);
	ck_assert_uint_eq(s2.value[1], 5);
	ck_assert_uint_eq(s2.value[2], 6);
	fresh_wal_close(w);
}
END_TEST

START_TEST(rolls_and_compacts)
{
	struct fresh_wal_config c = config();
	struct fresh_wal *w;
	uint64_t before;

	c.segment_bytes = 1000; /* about 12 records a segment */
	w = open_log(c, 0, &s1, NULL);
	for (uint32_t i = 0; i < 100; i++)
		append(w, i);
	ck_assert_uint_ge(count_segments(), 8);
	before = fresh_wal_bytes(w);
	ck_assert_int_eq(fresh_wal_compact(w, 50, NULL), FRESH_OK);
	ck_assert_uint_lt(fresh_wal_bytes(w), before);
	fresh_wal_close(w);
	/* Everything after 50 is still there. */
	w = open_log(c, 50, &s2, NULL);
	ck_assert_uint_eq(s2.n, 50);
	ck_assert_uint_eq(s2.seq[0], 51);
	ck_assert_int_eq(fresh_wal_compact(w, 100, NULL), FRESH_OK);
	ck_assert_uint_eq(count_segments(), 1);
	fresh_wal_close(w);
	w = open_log(c, 100, &s2, NULL);
	ck_assert_uint_eq(s2.n, 0);
	ck_assert_uint_eq(append(w, 1), 101);
	fresh_wal_close(w);
}
END_TEST

START_TEST(interval_policy)
{
	struct fresh_wal_config c = config();
	struct fresh_wal *w;
	struct fresh_wal_stats st;

	c.sync = FRESH_SYNC_INTERVAL;
	c.interval_ms = 5;
	w = open_log(c, 0, &s1, NULL);
	for (uint32_t i = 0; i < 300; i++)
		append(w, i);
	/* The interval's sync comes in its own time: wait for it (10 s). */
	for (int t = 0; t < 10000; t++) {
		fresh_wal_stats(w, &st);
		if (st.syncs >= 1)
			break;
		usleep(1000);
	}
	ck_assert_uint_ge(st.syncs, 1);
	ck_assert_uint_lt(st.syncs, 300);
	fresh_wal_close(w);
	w = open_log(c, 0, &s2, NULL);
	ck_assert_uint_eq(s2.n, 300);
	fresh_wal_close(w);
}
END_TEST

START_TEST(gap_before_log_is_refused)
{
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);
	struct fresh_wal_config c = config();
	struct fresh_wal_recovery rec;
	struct fresh_error err;

	for (uint32_t i = 0; i < 20; i++)
		append(w, i);
	ck_assert_int_eq(fresh_wal_compact(w, 20, NULL), FRESH_OK);
	append(w, 21);
	fresh_wal_close(w);
	/* A snapshot that claims only up to 10: records 11..20 are gone. */
	seen_init(&s2);
	ck_assert_int_eq(fresh_wal_open(&c, 10, apply, &s2, &w, &rec, &err),
			 FRESH_FORMAT);
	ck_assert(strstr(err.msg, "covers only up to 10") != NULL);
}
END_TEST

START_TEST(reopen_over_an_empty_segment)
{
	/* A compaction leaves an empty newest segment; reopening must write
	 * on into it, not clobber it (which once cut the segment before). */
	struct fresh_wal *w = open_log(config(), 0, &s1, NULL);

	for (uint32_t i = 0; i < 10; i++)
		append(w, i);
	ck_assert_int_eq(fresh_wal_compact(w, 5, NULL), FRESH_OK);
	fresh_wal_close(w);
	w = open_log(config(), 5, &s2, NULL);
	ck_assert_uint_eq(s2.n, 5);
	ck_assert_uint_eq(append(w, 77), 11);
	fresh_wal_close(w);
	w = open_log(config(), 5, &s2, NULL);
	ck_assert_uint_eq(s2.n, 6);
	ck_assert_uint_eq(s2.value[5], 77);
	ck_assert(s2.in_order);
	fresh_wal_close(w);
}
END_TEST

static Suite *wal_suite(void)
{
	Suite *s = suite_create("wal");
	TCase *tc = tcase_create("log");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, replays_after_reopen);
	tcase_add_test(tc, torn_tail_is_cut);
	tcase_add_test(tc, corrupt_middle_refused_or_salvaged);
	tcase_add_test(tc, bad_checksum_on_final_record_is_a_tail);
	tcase_add_test(tc, group_commit_from_many_threads);
	tcase_add_test(tc, failed_sync_acknowledges_nothing);
	tcase_add_test(tc, failed_write_acknowledges_nothing);
	tcase_add_test(tc, rolls_and_compacts);
	tcase_add_test(tc, interval_policy);
	tcase_add_test(tc, gap_before_log_is_refused);
	tcase_add_test(tc, reopen_over_an_empty_segment);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(wal_suite());
}
