/*
 * The IPAM bitmap: allocation, release and search over a sparse, canonical set of
 * 4096-bit chunks. The layout is described in pnl_bitmap.h; serialisation lives in
 * bitmap_serial.c and shares the internals through bitmap_internal.h.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap_internal.h"
#include "pnl_bitmap.h"

/* --- chunks --------------------------------------------------------------------------- */

uint32_t pnlb_chunk_cap(const pnl_bitmap *bm, uint64_t key)
{
	return key == bm->lastkey ? (uint32_t)(bm->last & (PNLB_CHUNK_BITS - 1)) + 1
				  : PNLB_CHUNK_BITS;
}

/* Mark the bits of a chunk that lie beyond `last` as set, so scans never return them. */
void pnlb_block_pad(struct pnlb_block *b, uint32_t cap)
{
	for (uint32_t wi = cap / 64; wi < PNLB_CHUNK_WORDS; wi++) {
		uint32_t from = wi * 64 < cap ? cap - wi * 64 : 0;
		b->w[wi] |= from ? ~0ULL << from : ~0ULL;
		if (b->w[wi] == ~0ULL)
			b->full |= 1ULL << wi;
	}
}

/* A block for a chunk with `cap` real bits: all set (to split a full run) or empty with
 * its padding set. Reuses a spare block when there is one. */
static struct pnlb_block *block_new(pnl_bitmap *bm, uint32_t cap, int all_set)
{
	struct pnlb_block *b = bm->nspare ? bm->spare[--bm->nspare] : malloc(sizeof(*b));
	if (!b)
		return NULL;
	if (all_set) {
		memset(b->w, 0xff, sizeof(b->w));
		b->full = ~0ULL;
	} else {
		memset(b, 0, sizeof(*b));
		if (cap < PNLB_CHUNK_BITS)
			pnlb_block_pad(b, cap);
	}
	return b;
}

/* A block no node uses any more: keep it as a spare or free it. */
static void block_drop(pnl_bitmap *bm, struct pnlb_block *b)
{
	if (bm->nspare < PNLB_SPARES)
		bm->spare[bm->nspare++] = b;
	else
		free(b);
}

static inline int block_test(const struct pnlb_block *b, uint32_t bit)
{
	return (b->w[bit >> 6] >> (bit & 63)) & 1;
}

static inline void block_set(struct pnlb_block *b, uint32_t bit)
{
	uint32_t wi = bit >> 6;
	b->w[wi] |= 1ULL << (bit & 63);
	if (b->w[wi] == ~0ULL)
		b->full |= 1ULL << wi;
}

static inline void block_clear(struct pnlb_block *b, uint32_t bit)
{
	uint32_t wi = bit >> 6;
	b->w[wi] &= ~(1ULL << (bit & 63));
	b->full &= ~(1ULL << wi);
}

/* First clear bit at or after `off` in the block, or -1. Padding bits are set. */
static inline int block_find(const struct pnlb_block *b, uint32_t off)
{
	uint32_t wi = off >> 6;
	uint64_t word = ~b->w[wi] & (~0ULL << (off & 63));
	if (word)
		return (int)(wi * 64 + (uint32_t)__builtin_ctzll(word));
	if (wi == PNLB_CHUNK_WORDS - 1)
		return -1;
	uint64_t notfull = ~b->full & (~0ULL << (wi + 1));
	if (!notfull)
		return -1;
	wi = (uint32_t)__builtin_ctzll(notfull);
	return (int)(wi * 64 + (uint32_t)__builtin_ctzll(~b->w[wi]));
}

/* --- the node array -------------------------------------------------------------------- */

/* Index of the first node whose last chunk is >= key (nnodes when none). */
static inline size_t node_lower(const pnl_bitmap *bm, uint64_t key)
{
	size_t lo = 0, hi = bm->nnodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pnlb_node *nd = &bm->nodes[mid];
		if (nd->key + nd->n - 1 < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static inline int lower_ok(const pnl_bitmap *bm, size_t i, uint64_t key)
{
	return i <= bm->nnodes &&
	       (i == bm->nnodes || bm->nodes[i].key + bm->nodes[i].n - 1 >= key) &&
	       (i == 0 || bm->nodes[i - 1].key + bm->nodes[i - 1].n - 1 < key);
}

/* node_lower, trying the last operation's node and its successor first: consecutive
 * next-fit allocations and batch releases mostly stay in one chunk or move to the next. */
static inline size_t node_lower_hint(const pnl_bitmap *bm, uint64_t key)
{
	size_t h = bm->hint;
	if (lower_ok(bm, h, key))
		return h;
	if (lower_ok(bm, h + 1, key))
		return h + 1;
	return node_lower(bm, key);
}

static inline int node_has(const pnl_bitmap *bm, size_t i, uint64_t key)
{
	return i < bm->nnodes && bm->nodes[i].key <= key;
}

int pnlb_reserve(pnl_bitmap *bm, size_t extra)
{
	if (bm->nnodes + extra <= bm->cap)
		return 0;
	size_t cap = bm->cap ? bm->cap : 4;
	while (cap < bm->nnodes + extra) {
		if (cap > SIZE_MAX / 2 / sizeof(struct pnlb_node))
			return -ENOMEM;
		cap *= 2;
	}
	struct pnlb_node *nodes = realloc(bm->nodes, cap * sizeof(*nodes));
	if (!nodes)
		return -ENOMEM;
	bm->nodes = nodes;
	bm->cap = cap;
	return 0;
}

/* Insert at index i; capacity must have been reserved. */
static void node_insert(pnl_bitmap *bm, size_t i, struct pnlb_node nd)
{
	memmove(&bm->nodes[i + 1], &bm->nodes[i], (bm->nnodes - i) * sizeof(nd));
	bm->nodes[i] = nd;
	bm->nnodes++;
}

static void node_remove(pnl_bitmap *bm, size_t i)
{
	memmove(&bm->nodes[i], &bm->nodes[i + 1], (bm->nnodes - i - 1) * sizeof(bm->nodes[0]));
	bm->nnodes--;
}

/* Node i is a full run (block already freed): merge it with full neighbours. */
static void merge_full(pnl_bitmap *bm, size_t i)
{
	if (i > 0) {
		struct pnlb_node *prev = &bm->nodes[i - 1];
		if (!prev->blk && prev->key + prev->n == bm->nodes[i].key) {
			prev->n += bm->nodes[i].n;
			node_remove(bm, i);
			i--;
		}
	}
	if (i + 1 < bm->nnodes) {
		struct pnlb_node *cur = &bm->nodes[i], *next = &bm->nodes[i + 1];
		if (!next->blk && cur->key + cur->n == next->key) {
			cur->n += next->n;
			node_remove(bm, i + 1);
		}
	}
}

/* --- lifecycle and queries -------------------------------------------------------------- */

int pnl_bitmap_new(uint64_t last, pnl_bitmap **out)
{
	if (!out)
		return -EINVAL;
	pnl_bitmap *bm = calloc(1, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	bm->last = last;
	bm->lastkey = last >> PNLB_CHUNK_SHIFT;
	if (pthread_mutex_init(&bm->lock, NULL) != 0) {
		free(bm);
		return -ENOMEM;
	}
	*out = bm;
	return 0;
}

void pnl_bitmap_free(pnl_bitmap *bm)
{
	if (!bm)
		return;
	for (size_t i = 0; i < bm->nnodes; i++)
		free(bm->nodes[i].blk);
	for (unsigned i = 0; i < bm->nspare; i++)
		free(bm->spare[i]);
	free(bm->nodes);
	pthread_mutex_destroy(&bm->lock);
	free(bm);
}


static int do_set_cursor(pnl_bitmap *bm, uint64_t cursor)
{
	if (cursor > bm->last)
		return -ERANGE;
	bm->cursor = cursor;
	return 0;
}

static size_t do_mem_bytes(const pnl_bitmap *bm)
{
	size_t total = malloc_usable_size((void *)bm);
	if (bm->nodes)
		total += malloc_usable_size(bm->nodes);
	for (size_t i = 0; i < bm->nnodes; i++)
		if (bm->nodes[i].blk)
			total += malloc_usable_size(bm->nodes[i].blk);
	for (unsigned i = 0; i < bm->nspare; i++)
		total += malloc_usable_size(bm->spare[i]);
	return total;
}

static int do_test(const pnl_bitmap *bm, uint64_t ordinal)
{
	if (ordinal > bm->last)
		return -ERANGE;
	uint64_t key = ordinal >> PNLB_CHUNK_SHIFT;
	size_t i = node_lower(bm, key);
	if (!node_has(bm, i, key))
		return 0;
	const struct pnlb_node *nd = &bm->nodes[i];
	return nd->blk ? block_test(nd->blk, (uint32_t)(ordinal & (PNLB_CHUNK_BITS - 1))) : 1;
}

/* Popcount of the real bits in [from, to] of a block. */
static uint64_t block_count(const struct pnlb_block *b, uint32_t from, uint32_t to)
{
	uint64_t n = 0;
	for (uint32_t wi = from >> 6; wi <= to >> 6; wi++) {
		uint64_t m = ~0ULL;
		if (wi == from >> 6)
			m &= ~0ULL << (from & 63);
		if (wi == to >> 6 && (to & 63) != 63)
			m &= (1ULL << ((to & 63) + 1)) - 1;
		n += (uint64_t)__builtin_popcountll(b->w[wi] & m);
	}
	return n;
}

static int do_count_used_range(const pnl_bitmap *bm, uint64_t lo, uint64_t hi,
				uint64_t *out)
{
	if (!out)
		return -EINVAL;
	if (lo > bm->last || hi > bm->last)
		return -ERANGE;
	if (lo > hi)
		return -EINVAL;
	uint64_t n = 0;
	uint64_t klo = lo >> PNLB_CHUNK_SHIFT, khi = hi >> PNLB_CHUNK_SHIFT;
	for (size_t i = node_lower(bm, klo); i < bm->nnodes && bm->nodes[i].key <= khi; i++) {
		const struct pnlb_node *nd = &bm->nodes[i];
		/* Overlap of [lo, hi] with the node's ordinals, inclusive. */
		uint64_t first = nd->key << PNLB_CHUNK_SHIFT;
		uint64_t lastkey = nd->key + nd->n - 1;
		uint64_t lastord = lastkey == bm->lastkey
					   ? bm->last
					   : (lastkey << PNLB_CHUNK_SHIFT) | (PNLB_CHUNK_BITS - 1);
		uint64_t a = lo > first ? lo : first, b = hi < lastord ? hi : lastord;
		if (nd->blk)
			n += block_count(nd->blk, (uint32_t)(a & (PNLB_CHUNK_BITS - 1)),
					 (uint32_t)(b & (PNLB_CHUNK_BITS - 1)));
		else
			n += b - a + 1;
	}
	*out = n;
	return 0;
}

/* --- set and clear ------------------------------------------------------------------- */

/* Set a bit known to be clear (absent chunk, or clear in block). */
static int set_clear_bit(pnl_bitmap *bm, size_t i, uint64_t ordinal)
{
	uint64_t key = ordinal >> PNLB_CHUNK_SHIFT;
	uint32_t bit = (uint32_t)(ordinal & (PNLB_CHUNK_BITS - 1));
	uint32_t cap = pnlb_chunk_cap(bm, key);

	if (!node_has(bm, i, key)) {
		if (pnlb_reserve(bm, 1) < 0)
			return -ENOMEM;
		struct pnlb_node nd = {.key = key, .n = 1, .blk = NULL, .used = 1};
		if (cap > 1) {
			nd.blk = block_new(bm, cap, 0);
			if (!nd.blk)
				return -ENOMEM;
			block_set(nd.blk, bit);
		}
		node_insert(bm, i, nd);
		bm->used++;
		if (!nd.blk)
			merge_full(bm, i);
		return 0;
	}
	struct pnlb_node *nd = &bm->nodes[i];
	block_set(nd->blk, bit);
	nd->used++;
	bm->used++;
	if (nd->used == cap) {
		block_drop(bm, nd->blk);
		nd->blk = NULL;
		merge_full(bm, i);
	}
	return 0;
}

static int do_set(pnl_bitmap *bm, uint64_t ordinal)
{
	if (ordinal > bm->last)
		return -ERANGE;
	uint64_t key = ordinal >> PNLB_CHUNK_SHIFT;
	size_t i = node_lower_hint(bm, key);
	bm->hint = i;
	if (node_has(bm, i, key)) {
		const struct pnlb_node *nd = &bm->nodes[i];
		if (!nd->blk ||
		    block_test(nd->blk, (uint32_t)(ordinal & (PNLB_CHUNK_BITS - 1))))
			return -EEXIST;
	}
	return set_clear_bit(bm, i, ordinal);
}

/* Clear one bit of full run i: split it into [key, k) full, block k, (k, end) full. */
static int split_full(pnl_bitmap *bm, size_t i, uint64_t ordinal)
{
	uint64_t k = ordinal >> PNLB_CHUNK_SHIFT;
	uint32_t cap = pnlb_chunk_cap(bm, k);
	struct pnlb_node run = bm->nodes[i];
	if (pnlb_reserve(bm, 2) < 0)
		return -ENOMEM;
	struct pnlb_block *b = NULL;
	if (cap > 1) {
		b = block_new(bm, cap, 1);
		if (!b)
			return -ENOMEM;
		block_clear(b, (uint32_t)(ordinal & (PNLB_CHUNK_BITS - 1)));
	}
	node_remove(bm, i);
	size_t at = i;
	if (k > run.key)
		node_insert(bm, at++, (struct pnlb_node){.key = run.key, .n = k - run.key});
	if (b)
		node_insert(bm, at++, (struct pnlb_node){.key = k, .n = 1, .blk = b, .used = cap - 1});
	if (k + 1 < run.key + run.n)
		node_insert(bm, at, (struct pnlb_node){.key = k + 1, .n = run.key + run.n - k - 1});
	bm->used--;
	return 1;
}

static int unset_at(pnl_bitmap *bm, size_t i, uint64_t ordinal)
{
	uint64_t key = ordinal >> PNLB_CHUNK_SHIFT;
	if (!node_has(bm, i, key))
		return 0;
	struct pnlb_node *nd = &bm->nodes[i];
	if (!nd->blk)
		return split_full(bm, i, ordinal);
	uint32_t bit = (uint32_t)(ordinal & (PNLB_CHUNK_BITS - 1));
	if (!block_test(nd->blk, bit))
		return 0;
	block_clear(nd->blk, bit);
	nd->used--;
	bm->used--;
	if (nd->used == 0) {
		block_drop(bm, nd->blk);
		node_remove(bm, i);
	}
	return 1;
}

static int do_unset(pnl_bitmap *bm, uint64_t ordinal)
{
	if (ordinal > bm->last)
		return -ERANGE;
	size_t i = node_lower_hint(bm, ordinal >> PNLB_CHUNK_SHIFT);
	bm->hint = i;
	return unset_at(bm, i, ordinal);
}

/* --- search and allocation -------------------------------------------------------------- */

/* First clear ordinal in [a, b] (a <= b <= last). Returns 1 and *out, or 0 when none.
 * *idx gets the node index for key(*out) as node_lower would return it. */
static int find_clear(const pnl_bitmap *bm, uint64_t a, uint64_t b, uint64_t *out, size_t *idx)
{
	uint64_t pos = a;
	size_t i = node_lower_hint(bm, pos >> PNLB_CHUNK_SHIFT);
	for (;;) {
		uint64_t key = pos >> PNLB_CHUNK_SHIFT;
		while (i < bm->nnodes && bm->nodes[i].key + bm->nodes[i].n - 1 < key)
			i++;
		if (!node_has(bm, i, key)) {
			*out = pos;
			*idx = i;
			return 1;
		}
		const struct pnlb_node *nd = &bm->nodes[i];
		uint64_t next_key = nd->key + nd->n;  /* the chunk after this node */
		if (nd->blk) {
			int r = block_find(nd->blk, (uint32_t)(pos & (PNLB_CHUNK_BITS - 1)));
			if (r >= 0) {
				uint64_t cand = (key << PNLB_CHUNK_SHIFT) | (uint64_t)r;
				if (cand > b)
					return 0;
				*out = cand;
				*idx = i;
				return 1;
			}
		}
		if (next_key > bm->lastkey || next_key == 0)
			return 0;
		pos = next_key << PNLB_CHUNK_SHIFT;
		if (pos > b)
			return 0;
		i++;
	}
}

static int alloc_one(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags, uint64_t *out)
{
	uint64_t start = lo, found;
	size_t idx;
	if ((flags & PNL_BITMAP_NEXT_FIT) && bm->cursor > lo && bm->cursor <= hi)
		start = bm->cursor;
	if (!find_clear(bm, start, hi, &found, &idx) &&
	    (start == lo || !find_clear(bm, lo, start - 1, &found, &idx)))
		return -ENOSPC;
	int rc = set_clear_bit(bm, idx, found);
	if (rc < 0)
		return rc;
	bm->hint = idx;
	if (flags & PNL_BITMAP_NEXT_FIT)
		bm->cursor = found == bm->last ? 0 : found + 1;
	*out = found;
	return 0;
}

static int check_alloc_args(const pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags,
			    const void *out)
{
	if (!out || (flags & ~PNL_BITMAP_NEXT_FIT))
		return -EINVAL;
	if (lo > bm->last || hi > bm->last)
		return -ERANGE;
	if (lo > hi)
		return -EINVAL;
	return 0;
}

static int do_alloc(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags, uint64_t *out)
{
	int rc = check_alloc_args(bm, lo, hi, flags, out);
	return rc < 0 ? rc : alloc_one(bm, lo, hi, flags, out);
}

static int64_t do_alloc_many(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags,
			      uint64_t *out, size_t n)
{
	int rc = check_alloc_args(bm, lo, hi, flags, out);
	if (rc < 0)
		return rc;
	if (n > INT64_MAX)
		return -EINVAL;
	size_t k = 0;
	for (; k < n; k++) {
		rc = alloc_one(bm, lo, hi, flags, &out[k]);
		if (rc == -ENOSPC)
			break;
		if (rc < 0)
			return k ? (int64_t)k : rc;
	}
	return k || n == 0 ? (int64_t)k : -ENOSPC;
}

static int64_t do_set_many(pnl_bitmap *bm, const uint64_t *ordinals, size_t n,
			    uint8_t *results)
{
	if ((!ordinals && n) || n > INT64_MAX)
		return -EINVAL;
	for (size_t k = 0; k < n; k++)
		if (ordinals[k] > bm->last)
			return -ERANGE;
	int64_t done = 0;
	for (size_t k = 0; k < n; k++) {
		int rc = do_set(bm, ordinals[k]);
		if (rc == -ENOMEM)
			return rc;
		if (results)
			results[k] = rc == 0;
		done += rc == 0;
	}
	return done;
}

static int64_t do_unset_many(pnl_bitmap *bm, const uint64_t *ordinals, size_t n)
{
	if ((!ordinals && n) || n > INT64_MAX)
		return -EINVAL;
	for (size_t k = 0; k < n; k++)
		if (ordinals[k] > bm->last)
			return -ERANGE;
	int64_t done = 0;
	for (size_t k = 0; k < n; k++) {
		int rc = do_unset(bm, ordinals[k]);
		if (rc < 0)
			return rc;
		done += rc;
	}
	return done;
}

/* --- public entry points: each holds the bitmap's mutex ---------------------------------- */

#define LOCKED(type, call)                                                                  \
	do {                                                                                \
		pnlb_lock(bm);                                                              \
		type rc_ = call;                                                            \
		pnlb_unlock(bm);                                                            \
		return rc_;                                                                 \
	} while (0)

uint64_t pnl_bitmap_last(const pnl_bitmap *bm) { return bm->last; /* immutable */ }
uint64_t pnl_bitmap_used(const pnl_bitmap *bm) { LOCKED(uint64_t, bm->used); }
uint64_t pnl_bitmap_cursor(const pnl_bitmap *bm) { LOCKED(uint64_t, bm->cursor); }
size_t pnl_bitmap_node_count(const pnl_bitmap *bm) { LOCKED(size_t, bm->nnodes); }
size_t pnl_bitmap_mem_bytes(const pnl_bitmap *bm) { LOCKED(size_t, do_mem_bytes(bm)); }

int pnl_bitmap_set_cursor(pnl_bitmap *bm, uint64_t cursor)
{
	LOCKED(int, do_set_cursor(bm, cursor));
}

int pnl_bitmap_count_used_range(const pnl_bitmap *bm, uint64_t lo, uint64_t hi,
				uint64_t *out)
{
	LOCKED(int, do_count_used_range(bm, lo, hi, out));
}

int pnl_bitmap_test(const pnl_bitmap *bm, uint64_t ordinal)
{
	LOCKED(int, do_test(bm, ordinal));
}

int pnl_bitmap_set(pnl_bitmap *bm, uint64_t ordinal) { LOCKED(int, do_set(bm, ordinal)); }
int pnl_bitmap_unset(pnl_bitmap *bm, uint64_t ordinal) { LOCKED(int, do_unset(bm, ordinal)); }

int pnl_bitmap_alloc(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags, uint64_t *out)
{
	LOCKED(int, do_alloc(bm, lo, hi, flags, out));
}

uint64_t pnl_bitmap_alloc_one(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags)
{
	uint64_t ordinal = UINT64_MAX;
	pnlb_lock(bm);
	int rc = do_alloc(bm, lo, hi, flags, &ordinal);
	pnlb_unlock(bm);
	errno = rc < 0 ? -rc : 0;
	return rc < 0 ? UINT64_MAX : ordinal;
}

int64_t pnl_bitmap_alloc_many(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags,
			      uint64_t *out, size_t n)
{
	LOCKED(int64_t, do_alloc_many(bm, lo, hi, flags, out, n));
}

int64_t pnl_bitmap_set_many(pnl_bitmap *bm, const uint64_t *ordinals, size_t n,
			    uint8_t *results)
{
	LOCKED(int64_t, do_set_many(bm, ordinals, n, results));
}

int64_t pnl_bitmap_unset_many(pnl_bitmap *bm, const uint64_t *ordinals, size_t n)
{
	LOCKED(int64_t, do_unset_many(bm, ordinals, n));
}
