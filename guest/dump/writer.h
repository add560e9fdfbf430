/*
 * The streaming writer of dump format v4 (docs/dump-format.md). One dump on one device:
 *
 *   dump_writer_begin()      plan the layout, write step 1 (the first leader, slot 0, flush)
 *   dmp_collect(gen, dump_writer_sink())   each area written at once; checkpoints (the free
 *                            slot, flush; the leader naming it, flush)
 *   dmp_finish()             (the facility's DONE calls, recorded in the directory)
 *   dump_writer_finish()     final slot, end marker (flush), trailer (flush), leader (flush)
 *
 * or, after a failure, dump_writer_write_failed(): the free slot as far as the body was
 * written, then the FAILED leader and trailer, as far as the device allows.
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
	uint64_t dir_offset;		/* directory slot 1; slot 2 follows */
	uint32_t dir_bytes;		/* one slot */
	uint64_t crc_table_offset;	/* table slot 1; slot 2 follows */
	uint32_t crc_table_bytes;	/* one slot */
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
	uint32_t compression;		/* DUMP_COMPRESSION_*: LZ4 frames, or the data as it is */
};

struct dump_result {
	int error;		/* 0 while all is well / when the dump is complete */
	const char *stage;	/* where it failed: plan, query, crc-table, directory, body, ... */
	uint64_t offset;	/* the header's failure_offset: the failed write's (a failed flush:
				 * the write it followed), ENOSPC and E2BIG: body_offset + body
				 * written, else 0 */
	bool device_error;	/* the device (or a pinning violation) failed, not the plan or space */
	uint64_t extent_bytes;	/* COMPLETE: end_offset + 4096 - 65536 + B */
	uint64_t body_bytes;	/* body the last header vouches for (= body_bytes when complete) */
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

/* After the DONE calls: step 5, the final writes. 0 or the error. */
int dump_writer_finish(void);

/* Record a failure found outside the writer's own writes (a pinning violation, the
 * collection's own error); the first failure recorded is kept. */
void dump_writer_note_failure(int err, const char *stage, uint64_t offset, bool device);

/* Offset of the write in progress, 0 outside a write: for a pinning violation. */
uint64_t dump_writer_current_offset(void);

/* After a failure: the free slot's table and directory as far as the body was written (the
 * area in progress with the length written so far, its component PARTIAL), then the leader
 * and the trailer with status FAILED, each as far as the device allows. */
void dump_writer_write_failed(void);

#endif
