/* Internals of the IPAM bitmap shared by bitmap.c and bitmap_serial.c. Not public. */
#ifndef PNL_BITMAP_INTERNAL_H
#define PNL_BITMAP_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pnl_bitmap.h"

#define PNLB_CHUNK_SHIFT 12
#define PNLB_CHUNK_BITS (1u << PNLB_CHUNK_SHIFT)
#define PNLB_CHUNK_WORDS (PNLB_CHUNK_BITS / 64)
/* Blocks kept after they empty or fill, so churn at a chunk edge does not hit malloc. */
#define PNLB_SPARES 4

/* A dense chunk: bit i of `full` is set when w[i] is all ones. Bits beyond `last`
 * (the padding of the final chunk) are kept set so scans never return them. */
struct pnlb_block {
	uint64_t full;
	uint64_t w[PNLB_CHUNK_WORDS];
};

/* Either a block (blk != NULL, n == 1, 0 < used < capacity of the chunk) or a run of n
 * completely used chunks starting at chunk `key` (blk == NULL). */
struct pnlb_node {
	uint64_t key;
	uint64_t n;
	struct pnlb_block *blk;
	uint32_t used;
	uint32_t reserved;
};

struct pnl_bitmap {
	uint64_t last;     /* highest ordinal: the size is last + 1 */
	uint64_t lastkey;  /* last >> PNLB_CHUNK_SHIFT */
	uint64_t used;     /* set ordinals */
	uint64_t cursor;   /* next-fit cursor, 0..last */
	struct pnlb_node *nodes; /* sorted by key, non-overlapping, canonical */
	size_t nnodes;
	size_t cap;
	size_t hint;       /* node index of the last operation: tried before a binary search */
	struct pnlb_block *spare[PNLB_SPARES]; /* freed blocks kept for reuse */
	unsigned nspare;
	pthread_mutex_t lock; /* held by every public entry point but new/free */
};

static inline void pnlb_lock(const pnl_bitmap *bm)
{
	pthread_mutex_lock((pthread_mutex_t *)&bm->lock);
}

static inline void pnlb_unlock(const pnl_bitmap *bm)
{
	pthread_mutex_unlock((pthread_mutex_t *)&bm->lock);
}

/* Real bits in chunk `key` (4096, or fewer for the final chunk). */
uint32_t pnlb_chunk_cap(const pnl_bitmap *bm, uint64_t key);
void pnlb_block_pad(struct pnlb_block *b, uint32_t cap);
/* Make room for `extra` more nodes: 0 or -ENOMEM. */
int pnlb_reserve(pnl_bitmap *bm, size_t extra);

#endif
