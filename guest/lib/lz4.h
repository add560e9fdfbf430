/*
 * LZ4 block compression (lz4's lz4_Block_format.md): one input of at most LZ4_MAX_INPUT bytes
 * into one block, no size prefix, no frame format. Written from the format description: a
 * greedy match finder over a hash table of 4-byte sequences, skipping faster the longer it
 * finds nothing (incompressible data costs little). Pure computation on caller-provided state:
 * it runs in ring 3 (docs/guest.md, "Ring 3") and allocates nothing.
 */
#ifndef LIB_LZ4_H
#define LIB_LZ4_H

#include <stddef.h>
#include <stdint.h>

#define LZ4_MAX_INPUT	65536u		/* offsets are 16 bits: one window, positions fit a u16 */
#define LZ4_HASH_LOG	12
#define LZ4_HASH_SIZE	(1u << LZ4_HASH_LOG)

/* The match finder's table: positions of the input, indexed by a 4-byte sequence's hash. */
struct lz4_state {
	uint16_t table[LZ4_HASH_SIZE];
};

/* lz4_compress() flags. */
#define LZ4_BAD_OFFSET	1u	/* testfault=lz4-offset: every offset written one byte too far back */

/*
 * Compress src[0, len) (1 <= len <= LZ4_MAX_INPUT) into dst, at most cap bytes. Returns the
 * block's size, or 0 if it would not fit in cap (the caller stores the data as it is).
 */
size_t lz4_compress(struct lz4_state *st, const void *src, size_t len, void *dst, size_t cap,
		    unsigned flags);

#endif
