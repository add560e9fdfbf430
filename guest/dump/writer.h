/*
 * The streaming writer of dump format v2 (docs/dump-format.md). One dump on one device:
 *
 *   dump_writer_begin()      plan the layout, write step 1 (table slot, directory, leader)
 *   dmp_collect(gen, dump_writer_sink())   each area written at once, checkpoints
 *   dmp_finish()             (the facility's DONE calls, recorded in the directory)
 *   dump_writer_finish()     final table, directory, end marker, flush, leader, trailer, flush
 *
 * or, after a failure, dump_writer_write_failed(): the directory and table as far as the body
 * was written, then the FAILED leader and trailer, as far as the device allows.
 */
#ifndef DUMP_WRITER_H
#define DUMP_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumpdev.h"
#include "dump/facility.h"
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
	uint64_t body_offset;
	uint64_t body_room;		/* the largest body that leaves room for end marker + trailer */
	uint64_t trailer_offset;	/* partition_bytes - block_size */
};

struct dump_params {
	uint8_t dump_id[16];
	uint32_t generation;		/* 1, or 2 on the secondary after a restart */
	uint32_t device_role;		/* DUMP_ROLE_PRIMARY / DUMP_ROLE_SECONDARY */
	uint32_t restart_error;		/* generation 2: what ended generation 1 */
	uint64_t restart_offset;
	uint64_t ram_bytes;
	uint64_t tsc_hz;
};

struct dump_result {
	int error;		/* 0 while all is well / when the dump is complete */
	const char *stage;	/* where it failed: plan, query, crc-table, directory, body, ... */
	uint64_t offset;	/* partition offset of the failed write */
	bool device_error;	/* the device (or a pinning violation) failed, not the plan or space */
	uint64_t extent_bytes;	/* COMPLETE: end_offset + 4096 - 65536 + B */
	uint64_t body_bytes;	/* body written so far (= body_bytes when complete) */
};

/* The fixed layout of a partition; ENOSPC if not even an empty dump fits. */
int dump_layout_plan(uint64_t partition_bytes, uint32_t block_size, struct dump_layout *l);

/* Plan, header, step 1 of the write order. DUMPSTART and DUMPQUERY must have been done.
 * 0 or the error (also recorded in *res, which stays the writer's until the next begin). */
int dump_writer_begin(struct dumpdev *dev, const struct dmp_query *q,
		      const struct crash_record *cr, const struct dump_params *p,
		      struct dump_result *res);

/* The sink to hand to dmp_collect(). */
const struct dmp_sink *dump_writer_sink(void);

/* After the DONE calls: steps 4..8. 0 or the error. */
int dump_writer_finish(void);

/* Record a failure found outside the writer's own writes (a pinning violation, the
 * collection's own error); the first failure recorded is kept. */
void dump_writer_note_failure(int err, const char *stage, uint64_t offset, bool device);

/* Offset of the write in progress, 0 outside a write: for a pinning violation. */
uint64_t dump_writer_current_offset(void);

/* After a failure: the directory and table as far as the body was written (the area in
 * progress with the length written so far), then the leader and the trailer with status
 * FAILED, each as far as the device allows. */
void dump_writer_write_failed(void);

#endif
