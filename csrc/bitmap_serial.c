/*
 * Serialised form of the IPAM bitmap (format in pnl_bitmap.h) and its validating
 * loader. A blob is never trusted: every field is bounds-checked, the encoding must be
 * exactly the canonical one the serialiser would write, and the CRC-32C must match.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap_internal.h"
#include "pnl_bitmap.h"

#define HDR_SIZE 40
#define NODE_HDR 16
#define RUN_BODY 8
#define BLOCK_BODY (PNLB_CHUNK_WORDS * 8)
#define TRAILER 4
#define KIND_RUN 1u
#define KIND_BLOCK 2u
#define VERSION 1u

static const uint8_t MAGIC[4] = {'P', 'N', 'L', 'B'};

static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
	}
	return ~c;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static size_t serialized_size(const pnl_bitmap *bm)
{
	size_t n = HDR_SIZE + TRAILER;
	for (size_t i = 0; i < bm->nnodes; i++)
		n += NODE_HDR + (bm->nodes[i].blk ? BLOCK_BODY : RUN_BODY);
	return n;
}

/* Mask of the real bits of word wi in a chunk with `cap` real bits. */
static uint64_t real_mask(uint32_t cap, uint32_t wi)
{
	if (wi * 64 >= cap)
		return 0;
	uint32_t bits = cap - wi * 64;
	return bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
}

static int64_t serialize(const pnl_bitmap *bm, uint8_t *buf, size_t cap)
{
	size_t need = serialized_size(bm);
	if (!buf || cap < need)
		return -ENOBUFS;
	uint8_t *p = buf;
	memcpy(p, MAGIC, 4);
	put16(p + 4, VERSION);
	put16(p + 6, 0);
	put64(p + 8, bm->last);
	put64(p + 16, bm->used);
	put64(p + 24, bm->cursor);
	put64(p + 32, bm->nnodes);
	p += HDR_SIZE;
	for (size_t i = 0; i < bm->nnodes; i++) {
		const struct pnlb_node *nd = &bm->nodes[i];
		put64(p, nd->key);
		put32(p + 8, nd->blk ? KIND_BLOCK : KIND_RUN);
		put32(p + 12, 0);
		p += NODE_HDR;
		if (nd->blk) {
			uint32_t ccap = pnlb_chunk_cap(bm, nd->key);
			for (uint32_t wi = 0; wi < PNLB_CHUNK_WORDS; wi++, p += 8)
				put64(p, nd->blk->w[wi] & real_mask(ccap, wi));
		} else {
			put64(p, nd->n);
			p += RUN_BODY;
		}
	}
	put32(p, crc32c(buf, (size_t)(p - buf)));
	p += TRAILER;
	return (int64_t)(p - buf);
}

size_t pnl_bitmap_serialized_size(const pnl_bitmap *bm)
{
	pnlb_lock(bm);
	size_t n = serialized_size(bm);
	pnlb_unlock(bm);
	return n;
}

int64_t pnl_bitmap_serialize(const pnl_bitmap *bm, uint8_t *buf, size_t cap)
{
	pnlb_lock(bm);
	int64_t n = serialize(bm, buf, cap);
	pnlb_unlock(bm);
	return n;
}

/* Parse the node list into bm; -EBADMSG on anything non-canonical. */
static int load_nodes(pnl_bitmap *bm, const uint8_t *p, const uint8_t *end, uint64_t nnodes,
		      uint64_t *used_out)
{
	uint64_t used = 0, prev_end = 0;
	int prev_run = 0;
	for (uint64_t i = 0; i < nnodes; i++) {
		if ((size_t)(end - p) < NODE_HDR)
			return -EBADMSG;
		uint64_t key = get64(p);
		uint32_t kind = get32(p + 8);
		if (get32(p + 12) != 0 || key > bm->lastkey || (i > 0 && key < prev_end))
			return -EBADMSG;
		p += NODE_HDR;
		struct pnlb_node nd = {.key = key, .n = 1};
		uint32_t ccap;
		if (kind == KIND_RUN) {
			if ((size_t)(end - p) < RUN_BODY)
				return -EBADMSG;
			nd.n = get64(p);
			p += RUN_BODY;
			/* no zero-length run, no run past the end, no run that should merge */
			if (nd.n == 0 || nd.n - 1 > bm->lastkey - key ||
			    (i > 0 && prev_run && key == prev_end))
				return -EBADMSG;
			uint64_t bits;
			if (__builtin_mul_overflow(nd.n, (uint64_t)PNLB_CHUNK_BITS, &bits))
				return -EBADMSG;
			if (key + nd.n - 1 == bm->lastkey)
				bits -= PNLB_CHUNK_BITS - pnlb_chunk_cap(bm, bm->lastkey);
			if (__builtin_add_overflow(used, bits, &used))
				return -EBADMSG;
			prev_run = 1;
		} else if (kind == KIND_BLOCK) {
			if ((size_t)(end - p) < BLOCK_BODY)
				return -EBADMSG;
			ccap = pnlb_chunk_cap(bm, key);
			nd.blk = calloc(1, sizeof(*nd.blk));
			if (!nd.blk)
				return -ENOMEM;
			uint32_t count = 0;
			int bad = 0;
			for (uint32_t wi = 0; wi < PNLB_CHUNK_WORDS; wi++, p += 8) {
				uint64_t w = get64(p);
				bad |= (w & ~real_mask(ccap, wi)) != 0;
				nd.blk->w[wi] = w;
				if (w == ~0ULL)
					nd.blk->full |= 1ULL << wi;
				count += (uint32_t)__builtin_popcountll(w);
			}
			/* no padding bits, no empty block, no full block */
			if (bad || count == 0 || count >= ccap) {
				free(nd.blk);
				return -EBADMSG;
			}
			if (ccap < PNLB_CHUNK_BITS)
				pnlb_block_pad(nd.blk, ccap);
			nd.used = count;
			if (__builtin_add_overflow(used, (uint64_t)count, &used)) {
				free(nd.blk);
				return -EBADMSG;
			}
			prev_run = 0;
		} else {
			return -EBADMSG;
		}
		bm->nodes[bm->nnodes++] = nd;
		prev_end = key + nd.n;
	}
	if (p != end)
		return -EBADMSG;
	*used_out = used;
	return 0;
}

int pnl_bitmap_deserialize(const uint8_t *buf, size_t len, pnl_bitmap **out)
{
	if (!out || (!buf && len))
		return -EINVAL;
	if (len < HDR_SIZE + TRAILER || memcmp(buf, MAGIC, 4) != 0)
		return -EBADMSG;
	if (get16(buf + 4) != VERSION || get16(buf + 6) != 0)
		return -EBADMSG;
	if (crc32c(buf, len - TRAILER) != get32(buf + len - TRAILER))
		return -EBADMSG;
	uint64_t last = get64(buf + 8), used = get64(buf + 16), cursor = get64(buf + 24);
	uint64_t nnodes = get64(buf + 32);
	size_t body = len - HDR_SIZE - TRAILER;
	if (cursor > last || nnodes > body / (NODE_HDR + RUN_BODY))
		return -EBADMSG;

	pnl_bitmap *bm;
	int rc = pnl_bitmap_new(last, &bm);
	if (rc < 0)
		return rc;
	bm->cursor = cursor;
	if (nnodes && pnlb_reserve(bm, (size_t)nnodes) < 0) {
		pnl_bitmap_free(bm);
		return -ENOMEM;
	}
	uint64_t counted = 0;
	rc = load_nodes(bm, buf + HDR_SIZE, buf + len - TRAILER, nnodes, &counted);
	if (rc == 0 && counted != used)
		rc = -EBADMSG;
	if (rc < 0) {
		pnl_bitmap_free(bm);
		return rc;
	}
	bm->used = used;
	*out = bm;
	return 0;
}
