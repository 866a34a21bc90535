/*
 * bitmap_fuzz: a C-level driver for the IPAM bitmap, meant for sanitizer builds
 * (cmake -DPNL_SANITIZE=ON -DPNL_BUILD_TOOLS=ON).
 *
 * 1. Random operations on bitmaps of several sizes, checked against a byte-per-bit
 *    model after each step, with a serialise/deserialise round trip now and then.
 * 2. Blob mutation: random byte flips, truncations and field rewrites (with the CRC
 *    recomputed so the structural checks are reached). Every blob the loader accepts
 *    must serialise back to exactly the same bytes: accepted means canonical.
 *
 * Usage: bitmap_fuzz [iterations-per-size] [seed]. Exit status 0 when all checks pass.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pnl_bitmap.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

#define CHECK(cond, ...)                                                                    \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "bitmap_fuzz: %s:%d: ", __FILE__, __LINE__);        \
			fprintf(stderr, __VA_ARGS__);                                       \
			fputc('\n', stderr);                                                \
			exit(1);                                                            \
		}                                                                           \
	} while (0)

struct model {
	uint64_t size, used, cursor;
	uint8_t *bit;
};

static int model_alloc(struct model *m, uint64_t lo, uint64_t hi, int next_fit, uint64_t *out)
{
	uint64_t start = next_fit && m->cursor > lo && m->cursor <= hi ? m->cursor : lo;
	for (int pass = 0; pass < 2; pass++) {
		uint64_t a = pass ? lo : start, b = pass ? start : hi + 1; /* [a, b) */
		if (pass && start == lo)
			break;
		for (uint64_t o = a; o < b; o++) {
			if (!m->bit[o]) {
				m->bit[o] = 1;
				m->used++;
				if (next_fit)
					m->cursor = o == m->size - 1 ? 0 : o + 1;
				*out = o;
				return 0;
			}
		}
	}
	return -ENOSPC;
}

static uint64_t pick(uint64_t size)
{
	switch (rnd_below(4)) {
	case 0: return rnd_below(size < 8 ? size : 8);
	case 1: return size - 1 - rnd_below(size < 8 ? size : 8);
	case 2: {
		uint64_t edge = 4096 * (1 + rnd_below(3)) + rnd_below(7) - 3;
		return edge < size ? edge : rnd_below(size);
	}
	default: return rnd_below(size);
	}
}

static void round_trip(pnl_bitmap **bmp)
{
	size_t n = pnl_bitmap_serialized_size(*bmp);
	uint8_t *buf = malloc(n), *again = malloc(n);
	CHECK(buf && again, "oom");
	CHECK(pnl_bitmap_serialize(*bmp, buf, n - 1) == -ENOBUFS, "short buffer accepted");
	CHECK(pnl_bitmap_serialize(*bmp, buf, n) == (int64_t)n, "serialize size");
	pnl_bitmap *copy;
	CHECK(pnl_bitmap_deserialize(buf, n, &copy) == 0, "own blob rejected");
	CHECK(pnl_bitmap_serialized_size(copy) == n, "size after round trip");
	CHECK(pnl_bitmap_serialize(copy, again, n) == (int64_t)n && !memcmp(buf, again, n),
	      "round trip is not the identity");
	pnl_bitmap_free(*bmp);
	*bmp = copy;
	free(buf);
	free(again);
}

static void run_model(uint64_t size, long iters)
{
	struct model m = {.size = size, .bit = calloc(size, 1)};
	pnl_bitmap *bm;
	uint64_t buf[300];
	CHECK(m.bit && pnl_bitmap_new(size - 1, &bm) == 0, "new");
	for (long it = 0; it < iters; it++) {
		uint64_t a = pick(size), b = pick(size), o, got;
		uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
		int next_fit = (int)rnd_below(2);
		int rc, want;
		switch (rnd_below(7)) {
		case 0: /* allocate in a range */
			want = model_alloc(&m, lo, hi, next_fit, &o);
			rc = pnl_bitmap_alloc(bm, lo, hi, next_fit ? PNL_BITMAP_NEXT_FIT : 0, &got);
			CHECK(rc == want && (rc || got == o), "alloc [%" PRIu64 ",%" PRIu64 "]", lo, hi);
			break;
		case 1: { /* allocate many anywhere */
			size_t n = 1 + rnd_below(300), k = 0;
			while (k < n && model_alloc(&m, 0, size - 1, next_fit, &o) == 0)
				buf[k++] = o;
			uint64_t out[300];
			int64_t r = pnl_bitmap_alloc_many(bm, 0, size - 1,
							  next_fit ? PNL_BITMAP_NEXT_FIT : 0, out, n);
			CHECK(k ? r == (int64_t)k : r == -ENOSPC, "alloc_many count");
			CHECK(!k || !memcmp(out, buf, k * sizeof(buf[0])), "alloc_many order");
			break;
		}
		case 2: /* set a specific ordinal */
			o = pick(size);
			rc = pnl_bitmap_set(bm, o);
			CHECK(rc == (m.bit[o] ? -EEXIST : 0), "set %" PRIu64, o);
			if (!m.bit[o]) {
				m.bit[o] = 1;
				m.used++;
			}
			break;
		case 3: /* release, possibly a clear bit */
		case 4:
			o = pick(size);
			rc = pnl_bitmap_unset(bm, o);
			CHECK(rc == m.bit[o], "unset %" PRIu64, o);
			m.used -= m.bit[o];
			m.bit[o] = 0;
			break;
		case 5: { /* release a contiguous batch */
			size_t n = 1 + rnd_below(300), k = 0;
			int64_t want_n = 0;
			for (o = lo; o < size && k < n; o++, k++) {
				buf[k] = o;
				want_n += m.bit[o];
				m.used -= m.bit[o];
				m.bit[o] = 0;
			}
			CHECK(pnl_bitmap_unset_many(bm, buf, k) == want_n, "unset_many");
			break;
		}
		default: { /* count in a range, test */
			uint64_t c, want_c = 0;
			if (hi - lo > 5000)
				hi = lo + 5000;
			for (o = lo; o <= hi; o++)
				want_c += m.bit[o];
			CHECK(pnl_bitmap_count_used_range(bm, lo, hi, &c) == 0 && c == want_c,
			      "count");
			CHECK(pnl_bitmap_test(bm, a) == m.bit[a], "test");
		}
		}
		CHECK(pnl_bitmap_used(bm) == m.used, "used %" PRIu64 " want %" PRIu64,
		      pnl_bitmap_used(bm), m.used);
		CHECK(pnl_bitmap_cursor(bm) == m.cursor, "cursor");
		if (it % 500 == 0)
			round_trip(&bm);
	}
	CHECK(pnl_bitmap_set(bm, size) == -ERANGE && pnl_bitmap_unset(bm, size) == -ERANGE,
	      "range check");
	pnl_bitmap_free(bm);
	free(m.bit);
}

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

static void refit_crc(uint8_t *blob, size_t n)
{
	uint32_t c = crc32c(blob, n - 4);
	for (int i = 0; i < 4; i++)
		blob[n - 4 + i] = (uint8_t)(c >> (8 * i));
}

static void run_blob_mutations(long iters)
{
	pnl_bitmap *bm;
	CHECK(pnl_bitmap_new(6 * 4096 + 99, &bm) == 0, "new");
	uint64_t tmp[3 * 4096];
	pnl_bitmap_alloc_many(bm, 0, 6 * 4096 + 99, PNL_BITMAP_NEXT_FIT, tmp, 3 * 4096);
	for (int i = 0; i < 40; i++)
		pnl_bitmap_unset(bm, rnd_below(3 * 4096));
	pnl_bitmap_set(bm, 6 * 4096 + 99);
	pnl_bitmap_set(bm, 5 * 4096);
	size_t n = pnl_bitmap_serialized_size(bm);
	uint8_t *orig = malloc(n), *blob = malloc(n + 16), *again = malloc(n + 16);
	CHECK(orig && blob && again, "oom");
	pnl_bitmap_serialize(bm, orig, n);
	pnl_bitmap_free(bm);
	long accepted = 0;
	for (long it = 0; it < iters; it++) {
		size_t len = n;
		memcpy(blob, orig, n);
		int flips = 1 + (int)rnd_below(3);
		for (int f = 0; f < flips; f++) {
			size_t at = rnd_below(n);
			switch (rnd_below(4)) {
			case 0: blob[at] ^= (uint8_t)(1u << rnd_below(8)); break;
			case 1: blob[at] = (uint8_t)rnd(); break;
			case 2: blob[at] = 0; break;
			default: blob[at] = 0xff;
			}
		}
		if (rnd_below(8) == 0)
			len = rnd_below(n + 1);
		int fix = (int)rnd_below(4) != 0;
		if (fix && len >= 4)
			refit_crc(blob, len);
		pnl_bitmap *got;
		int rc = pnl_bitmap_deserialize(blob, len, &got);
		CHECK(rc == 0 || rc == -EBADMSG, "deserialize rc %d", rc);
		if (rc == 0) {
			accepted++;
			size_t m = pnl_bitmap_serialized_size(got);
			CHECK(m == len && m <= n + 16, "accepted blob of another size");
			pnl_bitmap_serialize(got, again, m);
			CHECK(!memcmp(again, blob, len), "accepted a non-canonical blob");
			pnl_bitmap_free(got);
		}
	}
	printf("blob mutations: %ld tried, %ld accepted (all canonical)\n", iters, accepted);
	free(orig);
	free(blob);
	free(again);
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 20000;
	rng_state = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9E3779B97F4A7C15ULL;
	if (!rng_state)
		rng_state = 1;
	static const uint64_t sizes[] = {1, 2, 3, 4, 64, 256, 4095, 4096, 4097, 3 * 4096 + 17,
					 70000};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		run_model(sizes[i], iters);
		printf("model ok: size %" PRIu64 ", %ld operations\n", sizes[i], iters);
	}
	run_blob_mutations(iters * 5);
	return 0;
}
