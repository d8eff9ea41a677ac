/*
 * heap.h - the core's one bounded heap: the best k elements seen, the
 * worst at the root, so that a new element is compared once with the
 * root. Used for top-k hits (topk.c) and for the sampler's Gumbel keys
 * (sample.c), whose elements differ; so it is written once here, as
 * static inline functions for an element type and an order:
 *
 *   FRESH_HEAP_DEFINE(prefix, type, below)
 *
 * where below(const type *a, const type *b) is true when a ranks below b
 * (the order must be total: ties broken by id). It defines
 *   void prefix_offer(type *h, size_t *n, size_t k, type e)
 *       keeps e if the heap has fewer than k elements or e ranks above
 *       the root;
 *   void prefix_sort(type *h, size_t n)
 *       leaves h[0..n) best first (destroys the heap).
 */
#ifndef FRESH_HEAP_H
#define FRESH_HEAP_H

#include <stddef.h>

#define FRESH_HEAP_DEFINE(prefix, type, below)                                \
	static inline void prefix##_sift_down(type *h, size_t n, size_t i)    \
	{                                                                     \
		type x = h[i];                                                \
		for (;;) {                                                    \
			size_t c = 2 * i + 1;                                 \
			if (c >= n)                                           \
				break;                                        \
			if (c + 1 < n && below(&h[c + 1], &h[c]))             \
				c++;                                          \
			if (!below(&h[c], &x))                                \
				break;                                        \
			h[i] = h[c];                                          \
			i = c;                                                \
		}                                                             \
		h[i] = x;                                                     \
	}                                                                     \
                                                                              \
	static inline void prefix##_offer(type *h, size_t *n, size_t k,       \
					  type e)                             \
	{                                                                     \
		if (*n < k) {                                                 \
			size_t i = (*n)++;                                    \
			while (i > 0 && below(&e, &h[(i - 1) / 2])) {         \
				h[i] = h[(i - 1) / 2];                        \
				i = (i - 1) / 2;                              \
			}                                                     \
			h[i] = e;                                             \
		} else if (k > 0 && below(&h[0], &e)) {                       \
			h[0] = e;                                             \
			prefix##_sift_down(h, k, 0);                          \
		}                                                             \
	}                                                                     \
                                                                              \
	static inline                                                         \
		__attribute__((unused)) void prefix##_sort(type *h, size_t n) \
	{                                                                     \
		/* Move the worst to the end, repeatedly. */                  \
		while (n > 1) {                                               \
			type t = h[0];                                        \
			h[0] = h[--n];                                        \
			h[n] = t;                                             \
			prefix##_sift_down(h, n, 0);                          \
		}                                                             \
	}

#endif
