/*
 * wal_segment.c - the update log's segment files: their names and
 * headers, listing them, replaying them at open (a torn tail is cut, a
 * corrupt record mid-log is an error), and rolling to a new segment.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fault.h"
#include "fileio.h"
#include "wal_impl.h"

double fresh_wal_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The dir's length is checked at open, so this never truncates. */
static void seg_path(const struct fresh_wal *w, uint64_t first, char *buf,
		     size_t cap)
{
	if (snprintf(buf, cap, "%s/wal-%020" PRIu64 ".log", w->dir, first) >=
	    (int)cap)
		buf[0] = '\0';
}

static int cmp_seg(const void *a, const void *b)
{
	const struct segment *x = a, *y = b;
	return (x->first_seq > y->first_seq) - (x->first_seq < y->first_seq);
}

static enum fresh_status push_seg(struct fresh_wal *w, uint64_t first,
				  uint64_t size)
{
	if (w->nsegs == w->capsegs) {
		size_t cap = w->capsegs ? 2 * w->capsegs : 8;
		struct segment *s = realloc(w->segs, cap * sizeof *s);
		if (!s)
			return FRESH_NOMEM;
		w->segs = s;
		w->capsegs = cap;
	}
	w->segs[w->nsegs].first_seq = first;
	w->segs[w->nsegs].size = size;
	seg_path(w, first, w->segs[w->nsegs].path,
		 sizeof w->segs[w->nsegs].path);
	w->nsegs++;
	return FRESH_OK;
}

enum fresh_status fresh_wal_list_segments(struct fresh_wal *w,
					  struct fresh_error *err)
{
	DIR *d = opendir(w->dir);
	struct dirent *e;
	enum fresh_status st = FRESH_OK;

	if (!d)
		return fresh_fail(err, FRESH_IO, "%s: %s", w->dir,
				  strerror(errno));
	while ((e = readdir(d)) != NULL && st == FRESH_OK) {
		unsigned long long first;
		char tail[8];
		struct stat sb;
		char path[4200];
		if (sscanf(e->d_name, "wal-%20llu.lo%1[g]", &first, tail) !=
			    2 ||
		    strlen(e->d_name) != 28)
			continue;
		snprintf(path, sizeof path, "%s/%s", w->dir, e->d_name);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		st = push_seg(w, first, (uint64_t)sb.st_size);
	}
	closedir(d);
	if (st == FRESH_OK && w->nsegs > 1)
		qsort(w->segs, w->nsegs, sizeof *w->segs, cmp_seg);
	return st;
}

static void make_seg_header(unsigned char *h, uint64_t first, uint64_t prev_len)
{
	memset(h, 0, SEG_HEADER);
	memcpy(h, SEG_MAGIC, 8);
	fresh_put64(h + 8, first);
	fresh_put64(h + 16, prev_len);
	fresh_put32(h + 28, fresh_crc32c(0, h, 28));
}

static bool parse_seg_header(const unsigned char *h, uint64_t *first,
			     uint64_t *prev_len)
{
	if (memcmp(h, SEG_MAGIC, 8) != 0 ||
	    fresh_get32(h + 28) != fresh_crc32c(0, h, 28))
		return false;
	*first = fresh_get64(h + 8);
	*prev_len = fresh_get64(h + 16);
	return true;
}

uint32_t fresh_wal_record_crc(uint64_t seq, const void *payload, size_t len)
{
	unsigned char s[8];

	fresh_put64(s, seq);
	return fresh_crc32c(fresh_crc32c(0, s, 8), payload, len);
}

static enum fresh_status truncate_file(const char *path, uint64_t len)
{
	int fd = fresh_sys_open(path, O_WRONLY | O_CLOEXEC, 0);
	enum fresh_status st = FRESH_OK;

	if (fd < 0)
		return FRESH_IO;
	if (fresh_sys_ftruncate(fd, (off_t)len, path) != 0 ||
	    fresh_sys_fsync(fd, path) != 0)
		st = FRESH_IO;
	close(fd);
	return st;
}

/* Reads a whole segment into a new buffer. */
static enum fresh_status read_segment(const struct segment *s,
				      unsigned char **buf)
{
	int fd = open(s->path, O_RDONLY | O_CLOEXEC);
	enum fresh_status st;

	if (fd < 0)
		return FRESH_IO;
	*buf = malloc(s->size ? s->size : 1);
	if (!*buf) {
		close(fd);
		return FRESH_NOMEM;
	}
	st = fresh_pread_full(fd, *buf, s->size, 0);
	close(fd);
	if (st != FRESH_OK) {
		free(*buf);
		*buf = NULL;
	}
	return st;
}

/* Drops segments [from, nsegs) from disk and the list. */
static void drop_segments_from(struct fresh_wal *w, size_t from)
{
	while (w->nsegs > from) {
		w->nsegs--;
		unlink(w->segs[w->nsegs].path);
	}
	(void)fresh_fsync_parent(w->segs[0].path);
}

/*
 * Replays every segment. expect is the seq the next record must carry
 * (0: any, for the first record seen).
 */
enum fresh_status fresh_wal_replay(struct fresh_wal *w, uint64_t after_seq,
				   struct fresh_wal_recovery *rec,
				   struct fresh_error *err)
{
	uint64_t expect = 0;

	for (size_t i = 0; i < w->nsegs; i++) {
		struct segment *s = &w->segs[i];
		bool last = i + 1 == w->nsegs;
		uint64_t first, prev_len, limit = s->size, off = SEG_HEADER;
		unsigned char *buf = NULL;
		const char *problem = NULL;
		bool final_bad = false;
		enum fresh_status st;

		st = read_segment(s, &buf);
		if (st != FRESH_OK)
			return fresh_fail(err, st, "%s: cannot read", s->path);
		rec->segments++;
		if (s->size < SEG_HEADER ||
		    !parse_seg_header(buf, &first, &prev_len) ||
		    first != s->first_seq) {
			free(buf);
			if (last && s->size < SEG_HEADER) {
				/* Crashed while creating it: nothing inside. */
				rec->torn_bytes += s->size;
				drop_segments_from(w, i);
				break;
			}
			if (!w->cfg.salvage)
				return fresh_fail(err, FRESH_FORMAT,
						  "%s: bad segment header",
						  s->path);
			rec->salvaged_bytes += s->size;
			drop_segments_from(w, i);
			break;
		}
		/*
		 * A gap is fine when the pair snapshot covers it: records
		 * applied (interval sync) and snapshotted, then lost from the
		 * log's unsynced tail; the segment after it starts past them.
		 */
		if (expect != 0 && first != expect &&
		    !(first > expect && first <= after_seq + 1)) {
			free(buf);
			return fresh_fail(err, FRESH_FORMAT,
					  "%s: starts at record %" PRIu64
					  ", expected %" PRIu64,
					  s->path, first, expect);
		}
		if (expect == 0 && first > after_seq + 1) {
			free(buf);
			return fresh_fail(err, FRESH_FORMAT,
					  "%s: log starts at record %" PRIu64
					  " but the pair snapshot covers only "
					  "up to %" PRIu64,
					  s->path, first, after_seq);
		}
		expect = first;
		/* The next segment says how much of this one is valid. */
		if (!last) {
			unsigned char nh[SEG_HEADER];
			int fd =
				open(w->segs[i + 1].path, O_RDONLY | O_CLOEXEC);
			uint64_t nfirst, nprev;
			if (fd >= 0 && w->segs[i + 1].size >= SEG_HEADER &&
			    fresh_pread_full(fd, nh, SEG_HEADER, 0) ==
				    FRESH_OK &&
			    parse_seg_header(nh, &nfirst, &nprev) &&
			    nprev >= SEG_HEADER && nprev < limit)
				limit = nprev;
			if (fd >= 0)
				close(fd);
		}
		while (off < limit) {
			uint32_t len, crc;
			uint64_t seq;

			if (limit - off < REC_HEADER) {
				problem = "truncated record header";
				break;
			}
			len = fresh_get32(buf + off);
			crc = fresh_get32(buf + off + 4);
			seq = fresh_get64(buf + off + 8);
			if (len > FRESH_WAL_MAX_RECORD ||
			    limit - off - REC_HEADER < len) {
				problem = "truncated record";
				break;
			}
			if (fresh_wal_record_crc(seq, buf + off + REC_HEADER,
						 len) != crc) {
				problem = "checksum mismatch";
				/* Torn only if it is the very last record. */
				final_bad = off + REC_HEADER + len == limit;
				break;
			}
			if (seq != expect) {
				problem = "out-of-order sequence number";
				break;
			}
			rec->records++;
			if (seq > after_seq) {
				w->apply(w->ctx, seq, buf + off + REC_HEADER,
					 len);
				rec->replayed++;
			}
			expect = seq + 1;
			off += REC_HEADER + len;
		}
		free(buf);
		if (problem) {
			/*
			 * A torn tail: damage that runs to the end of the last
			 * segment. A truncated record is always at the end; a
			 * bad checksum only counts when it is the final record.
			 */
			bool torn = last &&
				    (strcmp(problem, "truncated record") == 0 ||
				     strcmp(problem,
					    "truncated record header") == 0 ||
				     final_bad);
			if (torn) {
				rec->torn_bytes += s->size - off;
				snprintf(rec->note, sizeof rec->note,
					 "%.400s: torn tail (%s) at offset "
					 "%" PRIu64 ", %" PRIu64 " bytes cut",
					 s->path, problem, off, s->size - off);
			} else if (w->cfg.salvage) {
				rec->salvaged_bytes += s->size - off;
				for (size_t j = i + 1; j < w->nsegs; j++)
					rec->salvaged_bytes += w->segs[j].size;
				snprintf(rec->note, sizeof rec->note,
					 "%.400s: %s at offset %" PRIu64
					 "; salvaged the records before it",
					 s->path, problem, off);
				drop_segments_from(w, i + 1);
			} else {
				return fresh_fail(
					err, FRESH_FORMAT,
					"%s: %s at offset %" PRIu64
					" with records after it (start with "
					"--salvage-log to keep what precedes "
					"it)",
					s->path, problem, off);
			}
			if (truncate_file(s->path, off) != FRESH_OK)
				return fresh_fail(err, FRESH_IO,
						  "%s: cannot truncate",
						  s->path);
			s->size = off;
			break;
		}
		if (limit < s->size) {
			/* Beyond what the next segment vouches for. */
			if (truncate_file(s->path, limit) != FRESH_OK)
				return fresh_fail(err, FRESH_IO,
						  "%s: cannot truncate",
						  s->path);
			s->size = limit;
		}
	}
	w->next_seq = expect ? expect : after_seq + 1;
	if (w->next_seq <= after_seq)
		w->next_seq = after_seq + 1;
	return FRESH_OK;
}

/* FRESH_NO_SPACE for a full disk or quota, else FRESH_IO. */
enum fresh_status fresh_wal_io_status(int e)
{
	return e == ENOSPC || e == EDQUOT ? FRESH_NO_SPACE : FRESH_IO;
}

/* Creates a new segment starting at w->next_seq; prev_len vouches for the
 * current one. Called under mu with no sync running. */
enum fresh_status fresh_wal_roll(struct fresh_wal *w, uint64_t prev_len,
				 struct fresh_error *err)
{
	unsigned char h[SEG_HEADER];
	char path[4096];
	int fd;

	seg_path(w, w->next_seq, path, sizeof path);
	/*
	 * Never overwrite a segment that holds records: its name says where
	 * the next one starts, so a clash means the counters are wrong.
	 */
	if (w->nsegs > 0 && w->segs[w->nsegs - 1].first_seq == w->next_seq) {
		if (w->segs[w->nsegs - 1].size > SEG_HEADER)
			return fresh_fail(err, FRESH_IO,
					  "%s exists and holds records", path);
		/* An empty one from a failed attempt: replace it. */
		w->total_bytes -= w->segs[w->nsegs - 1].size;
		w->nsegs--;
		if (w->nsegs > 0 && prev_len == SEG_HEADER)
			prev_len = w->segs[w->nsegs - 1].size;
	}
	fd = fresh_sys_open(path,
			    O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			    0644);
	if (fd < 0) {
		w->last_errno = errno;
		return fresh_fail(err, fresh_wal_io_status(errno), "%s: %s",
				  path, strerror(errno));
	}
	make_seg_header(h, w->next_seq, prev_len);
	if (fresh_write_full(fd, h, SEG_HEADER) != FRESH_OK ||
	    fresh_sys_fdatasync(fd, path) != 0 ||
	    fresh_fsync_parent(path) != FRESH_OK) {
		int e = errno;
		close(fd);
		unlink(path);
		w->last_errno = e;
		return fresh_fail(err, fresh_wal_io_status(e),
				  "%s: cannot create: %s", path, strerror(e));
	}
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	if (push_seg(w, w->next_seq, SEG_HEADER) != FRESH_OK) {
		/* The file exists and is valid; only our bookkeeping failed. */
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	}
	w->total_bytes += SEG_HEADER;
	w->good_len = w->synced_len = SEG_HEADER;
	w->synced_seq = w->written_seq = w->next_seq - 1;
	w->broken = false;
	return FRESH_OK;
}
