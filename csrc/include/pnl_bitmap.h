#ifndef PNL_BITMAP_H
#define PNL_BITMAP_H

/*
 * The IPAM bitmap: a set of allocated ordinals in [0, last].
 *
 * Sizes run from 1 to 2^64 ordinals. The size is never stored as a count (2^64 does
 * not fit in a uint64_t): a bitmap is described by its LAST ordinal, size - 1, so a
 * full IPv6 /64 is `last = UINT64_MAX`.
 *
 * The ordinal space is cut into aligned chunks of 4096 bits. A chunk that has no bit
 * set is not stored at all; a chunk with some bits set is a dense 4096-bit block with a
 * one-word summary of its full words (so the next clear bit is two count-trailing-zeros
 * away); runs of consecutive completely used chunks are one node with no block. Nodes
 * sit in an array sorted by chunk number. The representation is canonical: no empty
 * block, no full block, no two adjacent full runs. Finding a clear bit from any point is
 * a binary search plus a bounded number of node steps, whatever the fill level.
 *
 * Errors are negative errno values:
 *   -ENOSPC  no clear bit in the requested range
 *   -EEXIST  the requested ordinal is already set
 *   -ERANGE  an ordinal or range bound beyond `last`
 *   -EINVAL  a malformed argument (lo > hi, NULL pointer, unknown flag)
 *   -ENOMEM  out of memory (the bitmap is unchanged)
 *   -ENOBUFS serialisation buffer too small
 *   -EBADMSG a serialised blob that is corrupt or not canonical
 *
 * Every entry point but pnl_bitmap_new/free holds the bitmap's own mutex, so calls from
 * many threads are safe; the caller must not free a bitmap while a call is running.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct pnl_bitmap pnl_bitmap;

/* Search from the bitmap's cursor (wrapping once) and move the cursor past the result. */
#define PNL_BITMAP_NEXT_FIT 1u

/* A new, empty bitmap of ordinals 0..last. */
int pnl_bitmap_new(uint64_t last, pnl_bitmap **out);
void pnl_bitmap_free(pnl_bitmap *bm);

uint64_t pnl_bitmap_last(const pnl_bitmap *bm);
/* Number of set ordinals (cannot overflow: no call sequence sets 2^64 bits). */
uint64_t pnl_bitmap_used(const pnl_bitmap *bm);
/* Number of set ordinals in [lo, hi]; -ERANGE / -EINVAL on bad bounds. */
int pnl_bitmap_count_used_range(const pnl_bitmap *bm, uint64_t lo, uint64_t hi,
				uint64_t *out);
uint64_t pnl_bitmap_cursor(const pnl_bitmap *bm);
int pnl_bitmap_set_cursor(pnl_bitmap *bm, uint64_t cursor);

/* 1 if set, 0 if clear, -ERANGE beyond last. */
int pnl_bitmap_test(const pnl_bitmap *bm, uint64_t ordinal);

/* Set one specific ordinal: 0, -EEXIST, -ERANGE, -ENOMEM. */
int pnl_bitmap_set(pnl_bitmap *bm, uint64_t ordinal);

/* Clear one ordinal: 1 if it was set, 0 if it was already clear (a strict no-op that
 * changes no counter), -ERANGE, -ENOMEM (splitting a full run needs a block). */
int pnl_bitmap_unset(pnl_bitmap *bm, uint64_t ordinal);

/* Set the first clear ordinal in [lo, hi] and store it in *out. First fit searches
 * from lo; with PNL_BITMAP_NEXT_FIT it searches from the cursor when the cursor lies in
 * [lo, hi] (else from lo), wraps to lo once, and leaves the cursor just past the
 * result (0 after `last`). First fit leaves the cursor alone.
 * 0, -ENOSPC, -ERANGE, -EINVAL, -ENOMEM. */
int pnl_bitmap_alloc(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags, uint64_t *out);

/* The same in the style of strtoull, for the single-address hot path from Python (no
 * output buffer to share between threads): returns the ordinal, or UINT64_MAX with errno
 * set to ENOSPC, ERANGE, EINVAL or ENOMEM. A successful UINT64_MAX (the top of a /64)
 * sets errno to 0. */
uint64_t pnl_bitmap_alloc_one(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags);

/* Up to n allocations as by pnl_bitmap_alloc, written to out[0..]. Returns how many
 * were made: fewer than n when [lo, hi] filled up (or memory ran out part way; those
 * made stay made), -ENOSPC when none could be, or a negative errno for bad arguments
 * or ENOMEM before anything was allocated. */
int64_t pnl_bitmap_alloc_many(pnl_bitmap *bm, uint64_t lo, uint64_t hi, unsigned flags,
			      uint64_t *out, size_t n);

/* Set n specific ordinals. All are range-checked first (-ERANGE, nothing changed).
 * results[i] (if results is not NULL) is 1 when ordinals[i] was set by this call, 0 when
 * it was already set. Returns the number set, or -ENOMEM (earlier items stay set). */
int64_t pnl_bitmap_set_many(pnl_bitmap *bm, const uint64_t *ordinals, size_t n,
			    uint8_t *results);

/* Clear n ordinals. All are range-checked first (-ERANGE, nothing changed). Returns the
 * number that were set and are now clear, or -ENOMEM (earlier items stay cleared). */
int64_t pnl_bitmap_unset_many(pnl_bitmap *bm, const uint64_t *ordinals, size_t n);

/* Bytes of heap memory the bitmap holds (every allocation, as malloc sized it). */
size_t pnl_bitmap_mem_bytes(const pnl_bitmap *bm);

/* Number of stored nodes (full runs and blocks): for tests and diagnostics. */
size_t pnl_bitmap_node_count(const pnl_bitmap *bm);

/*
 * Serialised form, version 1, little endian:
 *   "PNLB" u16 version=1 u16 flags=0 u64 last u64 used u64 cursor u64 nnodes
 *   nnodes x { u64 chunk; u32 kind; u32 zero;
 *              kind 1 (full run): u64 nchunks
 *              kind 2 (block):    64 x u64 words, bits beyond `last` zero }
 *   u32 CRC-32C of all preceding bytes
 * Loading checks everything: size, magic, version, checksum, ordering, canonical form,
 * counts. Anything else is -EBADMSG, and nothing is trusted.
 */
size_t pnl_bitmap_serialized_size(const pnl_bitmap *bm);
/* Bytes written, or -ENOBUFS when cap is smaller than pnl_bitmap_serialized_size(). */
int64_t pnl_bitmap_serialize(const pnl_bitmap *bm, uint8_t *buf, size_t cap);
int pnl_bitmap_deserialize(const uint8_t *buf, size_t len, pnl_bitmap **out);

#endif
