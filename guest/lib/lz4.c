/*
 * LZ4 block compressor (lib/lz4.h), from lz4_Block_format.md.
 *
 * A block is a run of sequences: a token (high nibble the literal length, low nibble the
 * match length - 4, 15 meaning "more bytes follow": 255s then one byte < 255), the literals,
 * a 2-byte little-endian offset back into what was already decoded and the match's extra
 * length bytes. The last sequence is literals alone. End-of-block rules: the last 5 bytes are
 * literals, the last match starts at least 12 bytes before the end (so an input shorter than
 * 13 bytes is all literals).
 */
#include "lib/lz4.h"
#include "lib/string.h"

#define MIN_MATCH	4
#define LAST_LITERALS	5	/* the block's last bytes are always literals */
#define MF_LIMIT	12	/* no match starts in the block's last 12 bytes */
#define SKIP_TRIGGER	6	/* after 2^6 misses, step 2 bytes; after 2 x 2^6 more, 3; ... */

typedef uint32_t __attribute__((aligned(1))) u32_unaligned;
typedef uint64_t __attribute__((aligned(1))) u64_unaligned;

static inline uint32_t read32(const uint8_t *p)
{
	return *(const u32_unaligned *)p;
}

static inline uint64_t read64(const uint8_t *p)
{
	return *(const u64_unaligned *)p;
}

static inline uint32_t hash4(uint32_t v)
{
	return (v * 2654435761u) >> (32 - LZ4_HASH_LOG);
}

/* Bytes of in[p, limit) equal to in[q, ...) (q < p), counted from p. */
static size_t common_length(const uint8_t *in, size_t p, size_t q, size_t limit)
{
	size_t start = p;

	while (p + 8 <= limit) {
		uint64_t diff = read64(in + p) ^ read64(in + q);

		if (diff)
			return p - start + (__builtin_ctzll(diff) >> 3);
		p += 8;
		q += 8;
	}
	while (p < limit && in[p] == in[q]) {
		p++;
		q++;
	}
	return p - start;
}

/* The extra bytes a length field of n (past the token's 15) takes. */
static size_t ext_bytes(size_t n)
{
	return n >= 15 ? (n - 15) / 255 + 1 : 0;
}

static uint8_t *put_ext(uint8_t *op, size_t n)
{
	if (n < 15)
		return op;
	for (n -= 15; n >= 255; n -= 255)
		*op++ = 255;
	*op++ = (uint8_t)n;
	return op;
}

size_t lz4_compress(struct lz4_state *st, const void *src, size_t len, void *dst, size_t cap,
		    unsigned flags)
{
	const uint8_t *in = src;
	uint8_t *op = dst, *end = op + cap;
	size_t anchor = 0, lit;

	if (len == 0 || len > LZ4_MAX_INPUT)
		return 0;
	if (len > MF_LIMIT) {
		size_t mflimit = len - MF_LIMIT, matchlimit = len - LAST_LITERALS;
		size_t ip = 1;

		/* Every entry a valid position (0): a candidate is only taken once its 4 bytes
		 * are compared equal. */
		memset(st->table, 0, sizeof(st->table));
		for (;;) {
			uint32_t misses = 1u << SKIP_TRIGGER;
			size_t cand, mlen, off;

			/* The next 4-byte match, probing further apart the longer none is found. */
			for (;;) {
				uint32_t v, h;

				if (ip > mflimit)
					goto last;
				v = read32(in + ip);
				h = hash4(v);
				cand = st->table[h];
				st->table[h] = (uint16_t)ip;
				if (read32(in + cand) == v)
					break;
				ip += misses++ >> SKIP_TRIGGER;
			}
			/* Back over equal bytes the literals would repeat, then forward. */
			while (ip > anchor && cand > 0 && in[ip - 1] == in[cand - 1]) {
				ip--;
				cand--;
			}
			mlen = MIN_MATCH + common_length(in, ip + MIN_MATCH, cand + MIN_MATCH,
							 matchlimit);
			lit = ip - anchor;
			if ((size_t)(end - op) < 1 + ext_bytes(lit) + lit + 2 +
						 ext_bytes(mlen - MIN_MATCH))
				return 0;
			*op++ = (uint8_t)((lit < 15 ? lit : 15) << 4 |
					  (mlen - MIN_MATCH < 15 ? mlen - MIN_MATCH : 15));
			op = put_ext(op, lit);
			memcpy(op, in + anchor, lit);
			op += lit;
			/* testfault=lz4-offset (deliberately wrong): one byte too far back. */
			off = ip - cand + ((flags & LZ4_BAD_OFFSET) ? 1 : 0);
			*op++ = (uint8_t)off;
			*op++ = (uint8_t)(off >> 8);
			op = put_ext(op, mlen - MIN_MATCH);

			ip += mlen;
			anchor = ip;
			if (ip > mflimit)
				break;
			st->table[hash4(read32(in + ip - 2))] = (uint16_t)(ip - 2);
		}
	}
last:
	lit = len - anchor;
	if ((size_t)(end - op) < 1 + ext_bytes(lit) + lit)
		return 0;
	*op++ = (uint8_t)((lit < 15 ? lit : 15) << 4);
	op = put_ext(op, lit);
	memcpy(op, in + anchor, lit);
	op += lit;
	return (size_t)(op - (uint8_t *)dst);
}
