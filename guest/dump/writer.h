#ifndef DUMP_WRITER_H
#define DUMP_WRITER_H

#include <stdint.h>

#include "dump/dumpdev.h"
#include "dump/dumptable.h"
#include "dump/format.h"

/* Where everything goes in the partition (docs/dump-format.md, "Layout"). */
struct dump_layout {
	uint64_t partition_bytes;
	uint32_t block_size;
	uint64_t dir_offset;
	uint32_t dir_bytes;
	uint64_t crc_table_offset;
	uint32_t crc_table_bytes;
	uint32_t chunk_size;
	uint32_t nchunks;
	uint64_t body_offset;
	uint64_t body_bytes;
	uint64_t end_offset;
	uint64_t trailer_offset;	/* partition_bytes - block_size */
	uint64_t extent_bytes;		/* leader slot .. end marker, plus the trailer block */
	uint64_t area_offset[DMP_MAX_AREAS];
};

struct dump_params {
	uint8_t dump_id[16];
	uint32_t generation;
	uint64_t ram_bytes;
	uint64_t tsc_hz;
};

struct dump_result {
	int error;		/* 0 when the dump is complete */
	const char *stage;	/* where it failed: plan, leader, directory, body, crc-table, ... */
	uint64_t offset;	/* partition offset of the failed write */
	uint64_t extent_bytes;
	uint64_t body_bytes;
};

/* Compute the layout; ENOSPC if the dump does not fit the partition. */
int dump_layout_plan(const struct dmp_collection *c, uint64_t partition_bytes,
		     uint32_t block_size, struct dump_layout *l);

/*
 * Write a complete dump in the order of the format's "Write order", through dev's DUMPWRITE.
 * DUMPSTART must have been done. On failure, writes FAILED leader and trailer as far as the
 * device allows. Prints PROGRESS lines on the result channel.
 */
int dump_write(struct dumpdev *dev, const struct dmp_query *q, const struct dmp_collection *c,
	       const struct crash_record *cr, const struct dump_params *p, struct dump_result *res);

#endif
