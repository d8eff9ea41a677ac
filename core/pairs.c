/*
 * pairs.c - the fresh-pair buffer (see pairs.h).
 *
 * Design: slots hold the pairs (metadata array plus one float block, grown
 * by doubling up to max_pairs); a doubly linked list through the slots
 * keeps arrival order for eviction (head = oldest); an open-addressing
 * table maps id -> slot + 1, with backward-shift deletion so that lookups
 * never need tombstones. Every operation is O(1) but growth.
 */
#include "pairs.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define NIL UINT32_MAX
#define MIN_CAP 64

struct meta {
	uint64_t id, seq;
	int64_t step;
	uint32_t prev, next;
	bool has_step;
};

struct fresh_pairs {
	size_t dim, max, cap, count, used; /* used: slots ever handed out */
	struct meta *meta;
	float *g;
	uint32_t head, tail, free_list;
	uint32_t *table;
	size_t mask;
};

enum fresh_status fresh_pairs_create(size_t dim, size_t max_pairs,
				     struct fresh_pairs **out)
{
	struct fresh_pairs *p;

	if (dim == 0 || max_pairs == 0 || max_pairs >= NIL)
		return FRESH_INVALID;
	p = calloc(1, sizeof *p);
	if (!p)
		return FRESH_NOMEM;
	p->dim = dim;
	p->max = max_pairs;
	p->head = p->tail = p->free_list = NIL;
	*out = p;
	return FRESH_OK;
}

void fresh_pairs_free(struct fresh_pairs *p)
{
	if (!p)
		return;
	free(p->meta);
	free(p->g);
	free(p->table);
	free(p);
}

size_t fresh_pairs_count(const struct fresh_pairs *p)
{
	return p->count;
}
size_t fresh_pairs_dim(const struct fresh_pairs *p)
{
	return p->dim;
}
size_t fresh_pairs_capacity(const struct fresh_pairs *p)
{
	return p->max;
}

static size_t find_bucket(const struct fresh_pairs *p, uint64_t id, bool *found)
{
	size_t i = fresh_mix64(id) & p->mask;

	for (;; i = (i + 1) & p->mask) {
		uint32_t s = p->table[i];
		if (s == 0) {
			*found = false;
			return i;
		}
		if (p->meta[s - 1].id == id) {
			*found = true;
			return i;
		}
	}
}

static uint32_t lookup(const struct fresh_pairs *p, uint64_t id)
{
	bool found;
	size_t b;

	if (!p->table)
		return NIL;
	b = find_bucket(p, id, &found);
	return found ? p->table[b] - 1 : NIL;
}

static void table_delete(struct fresh_pairs *p, size_t hole)
{
	/* Backward shift: pull later entries of the probe run into the hole. */
	size_t i = hole;

	for (;;) {
		size_t home;
		i = (i + 1) & p->mask;
		if (p->table[i] == 0)
			break;
		home = fresh_mix64(p->meta[p->table[i] - 1].id) & p->mask;
		/* Move it if its home is not in (hole, i], cyclically. */
		if (((i - home) & p->mask) >= ((i - hole) & p->mask)) {
			p->table[hole] = p->table[i];
			hole = i;
		}
	}
	p->table[hole] = 0;
}

static void list_unlink(struct fresh_pairs *p, uint32_t s)
{
	struct meta *m = &p->meta[s];

	if (m->prev != NIL)
		p->meta[m->prev].next = m->next;
	else
		p->head = m->next;
	if (m->next != NIL)
		p->meta[m->next].prev = m->prev;
	else
		p->tail = m->prev;
	m->prev = m->next = NIL;
}

static void list_append(struct fresh_pairs *p, uint32_t s)
{
	struct meta *m = &p->meta[s];

	m->prev = p->tail;
	m->next = NIL;
	if (p->tail != NIL)
		p->meta[p->tail].next = s;
	else
		p->head = s;
	p->tail = s;
}

static void remove_slot(struct fresh_pairs *p, uint32_t s)
{
	bool found;
	size_t b = find_bucket(p, p->meta[s].id, &found);

	if (found)
		table_delete(p, b);
	list_unlink(p, s);
	p->meta[s].next = p->free_list;
	p->free_list = s;
	p->count--;
}

static enum fresh_status rehash(struct fresh_pairs *p, size_t want_slots)
{
	size_t cap = 16;
	uint32_t *t;

	while (cap < 2 * want_slots)
		cap <<= 1;
	if (p->table && p->mask + 1 >= cap)
		return FRESH_OK;
	t = calloc(cap, sizeof *t);
	if (!t)
		return FRESH_NOMEM;
	free(p->table);
	p->table = t;
	p->mask = cap - 1;
	for (uint32_t s = p->head; s != NIL; s = p->meta[s].next) {
		bool found;
		size_t b = find_bucket(p, p->meta[s].id, &found);
		p->table[b] = s + 1;
	}
	return FRESH_OK;
}

/* Makes room for one more slot; FRESH_NOMEM changes nothing visible. */
static enum fresh_status grow(struct fresh_pairs *p)
{
	size_t cap = p->cap ? 2 * p->cap : MIN_CAP;
	struct meta *meta;
	float *g;

	if (cap > p->max)
		cap = p->max;
	if (rehash(p, cap) != FRESH_OK)
		return FRESH_NOMEM;
	meta = realloc(p->meta, cap * sizeof *meta);
	if (!meta)
		return FRESH_NOMEM;
	p->meta = meta;
	g = realloc(p->g, cap * p->dim * sizeof *g);
	if (!g)
		return FRESH_NOMEM;
	p->g = g;
	p->cap = cap;
	return FRESH_OK;
}

static bool newer(const struct meta *held, bool has_step, int64_t step)
{
	if (has_step && held->has_step)
		return step >= held->step;
	return true;
}

bool fresh_pairs_would_keep(const struct fresh_pairs *p, uint64_t id,
			    bool has_step, int64_t step)
{
	uint32_t s = lookup(p, id);

	return s == NIL || newer(&p->meta[s], has_step, step);
}

enum fresh_status fresh_pairs_put(struct fresh_pairs *p, uint64_t id,
				  const float *g, bool has_step, int64_t step,
				  uint64_t seq, bool *kept)
{
	uint32_t s = lookup(p, id);
	bool found;
	size_t b;

	if (s != NIL) {
		struct meta *m = &p->meta[s];
		*kept = newer(m, has_step, step);
		if (!*kept)
			return FRESH_OK;
		list_unlink(p, s);
	} else {
		if (p->free_list != NIL) {
			s = p->free_list;
			p->free_list = p->meta[s].next;
		} else if (p->used < p->cap ||
			   (p->cap < p->max && grow(p) == FRESH_OK)) {
			s = (uint32_t)p->used++;
		} else if (p->count == p->max) {
			s = p->head; /* evict the oldest arrival */
			remove_slot(p, s);
			p->free_list = p->meta[s].next;
		} else {
			return FRESH_NOMEM;
		}
		if (rehash(p, p->count + 1) != FRESH_OK) {
			p->meta[s].next = p->free_list;
			p->free_list = s;
			return FRESH_NOMEM;
		}
		p->meta[s].id = id;
		b = find_bucket(p, id, &found);
		p->table[b] = s + 1;
		p->count++;
		*kept = true;
	}
	p->meta[s].has_step = has_step;
	p->meta[s].step = has_step ? step : 0;
	p->meta[s].seq = seq;
	memcpy(p->g + (size_t)s * p->dim, g, p->dim * sizeof *g);
	list_append(p, s);
	return FRESH_OK;
}

bool fresh_pairs_get(const struct fresh_pairs *p, uint64_t id,
		     struct fresh_pair *out)
{
	uint32_t s = lookup(p, id);
	const struct meta *m;

	if (s == NIL)
		return false;
	m = &p->meta[s];
	out->id = id;
	out->g = p->g + (size_t)s * p->dim;
	out->has_step = m->has_step;
	out->step = m->step;
	out->seq = m->seq;
	return true;
}

bool fresh_pairs_remove(struct fresh_pairs *p, uint64_t id)
{
	uint32_t s = lookup(p, id);

	if (s == NIL)
		return false;
	remove_slot(p, s);
	return true;
}

void fresh_pairs_clear(struct fresh_pairs *p)
{
	free(p->meta);
	free(p->g);
	free(p->table);
	p->meta = NULL;
	p->g = NULL;
	p->table = NULL;
	p->mask = 0;
	p->cap = p->count = p->used = 0;
	p->head = p->tail = p->free_list = NIL;
}

size_t fresh_pairs_filter(struct fresh_pairs *p,
			  bool (*keep)(void *arg, uint64_t id), void *arg)
{
	size_t removed = 0;
	uint32_t s = p->head;

	while (s != NIL) {
		uint32_t next = p->meta[s].next;
		if (!keep(arg, p->meta[s].id)) {
			remove_slot(p, s);
			removed++;
		}
		s = next;
	}
	return removed;
}

bool fresh_pairs_newest_step(const struct fresh_pairs *p, int64_t *step)
{
	bool any = false;

	for (uint32_t s = p->head; s != NIL; s = p->meta[s].next) {
		if (p->meta[s].has_step && (!any || p->meta[s].step > *step)) {
			*step = p->meta[s].step;
			any = true;
		}
	}
	return any;
}

size_t fresh_pairs_count_below(const struct fresh_pairs *p, int64_t min_step)
{
	size_t n = 0;

	for (uint32_t s = p->head; s != NIL; s = p->meta[s].next)
		n += p->meta[s].has_step && p->meta[s].step < min_step;
	return n;
}

size_t fresh_pairs_expire(struct fresh_pairs *p, int64_t min_step)
{
	size_t removed = 0;
	uint32_t s = p->head;

	while (s != NIL) {
		uint32_t next = p->meta[s].next;
		if (p->meta[s].has_step && p->meta[s].step < min_step) {
			remove_slot(p, s);
			removed++;
		}
		s = next;
	}
	return removed;
}

enum fresh_status fresh_pairs_snapshot(const struct fresh_pairs *p,
				       int64_t max_step_lag,
				       struct fresh_pairs_snapshot *snap)
{
	size_t n = 0, cap = p->count ? p->count : 1;
	int64_t newest = 0;
	bool lag = max_step_lag > 0 && fresh_pairs_newest_step(p, &newest);

	memset(snap, 0, sizeof *snap);
	snap->dim = p->dim;
	snap->ids = malloc(cap * sizeof *snap->ids);
	snap->g = malloc(cap * p->dim * sizeof *snap->g);
	snap->steps = malloc(cap * sizeof *snap->steps);
	snap->has_step = malloc(cap * sizeof *snap->has_step);
	snap->seqs = malloc(cap * sizeof *snap->seqs);
	if (!snap->ids || !snap->g || !snap->steps || !snap->has_step ||
	    !snap->seqs) {
		fresh_pairs_snapshot_free(snap);
		return FRESH_NOMEM;
	}
	for (uint32_t s = p->head; s != NIL; s = p->meta[s].next) {
		const struct meta *m = &p->meta[s];
		if (lag && m->has_step && newest - m->step > max_step_lag)
			continue;
		snap->ids[n] = m->id;
		snap->steps[n] = m->step;
		snap->has_step[n] = m->has_step;
		snap->seqs[n] = m->seq;
		memcpy(snap->g + n * p->dim, p->g + (size_t)s * p->dim,
		       p->dim * sizeof *snap->g);
		if (m->seq > snap->max_seq)
			snap->max_seq = m->seq;
		n++;
	}
	snap->n = n;
	return FRESH_OK;
}

void fresh_pairs_snapshot_free(struct fresh_pairs_snapshot *snap)
{
	free(snap->ids);
	free(snap->g);
	free(snap->steps);
	free(snap->has_step);
	free(snap->seqs);
	memset(snap, 0, sizeof *snap);
}
