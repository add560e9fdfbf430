/*
 * The dump-time side of the system dump facility: the state the writer turns into the
 * directory (docs/dump-format.md, "Component directory"), and the collection loop that calls
 * every component's routine and streams each area to the writer as soon as it is returned.
 *
 * Sequence at crash time (dump/dumpsys.c):
 *   dmp_begin(level)                  list the components, ask their estimates (generation 1)
 *   dmp_collect(1, &sink)             call the routines; sink.area() writes each area at once
 *   ... on a primary device failure: dmp_collect(2, &sink) on the secondary
 *   dmp_finish()                      DONE / FINISHED calls
 */
#ifndef DUMP_FACILITY_H
#define DUMP_FACILITY_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumptable.h"

/* dmp_component.status: COMPONENT_* of dump/format.h (DUMPED .. PENDING; PARTIAL is only the
 * writer's word, in a directory written while the component is being collected). */

/* dmp_component.flags */
#define DMPF_CALL_ON_RESTART	(1u << 0)
#define DMPF_GLOBAL_BUFFER	(1u << 1)
#define DMPF_RAS		(1u << 2)
#define DMPF_UNLIMITED		(1u << 3)
#define DMPF_PRIVATE_STAGING	(1u << 4)
#define DMPF_SHARED_STAGING	(1u << 5)
#define DMPF_SERIALIO		(1u << 6)
#define DMPF_RTNFAILURE		(1u << 7)
#define DMPF_PIN_VIOLATION	(1u << 8)
#define DMPF_ENDED_EARLY	(1u << 9)
#define DMPF_TABLE_REUSED	(1u << 10)

/* dmp_call.op */
#define DMPCALL_START		1
#define DMPCALL_AGAIN		2
#define DMPCALL_DONE		3
#define DMPCALL_ESTIMATE	4
/* dmp_call.outcome */
#define DMPCALL_TABLE		1
#define DMPCALL_NONE		2
#define DMPCALL_NEGATIVE	3
#define DMPCALL_FAULT		4
#define DMPCALL_VALUE		5
#define DMPCALL_ACK		6
#define DMPCALL_BAD		7

#define DMP_NO_COMPONENT	0xffffffffu

/* One component, as its directory entry will say. */
struct dmp_component {
	char name[DMP_NAME_LEN];
	uint32_t kind;
	uint32_t status;
	uint32_t reason;
	uint32_t first_area;
	uint32_t area_count;
	uint32_t flags;			/* DMPF_* */
	uint32_t level;
	uint32_t table_generation;
	uint64_t estimate_bytes;
	uint64_t dumped_bytes;
	int32_t failure_rv;
	uint32_t staging_bytes;
	uint64_t failure_vaddr;
	uint64_t failure_handle;
	uint64_t global_buffer_bytes;
};

struct dmp_area {
	char name[DMP_AREA_NAME_LEN];
	uint64_t phys;
	uint64_t len;
	uint64_t disk_offset;		/* set by the sink */
	uint64_t stored;		/* set by the sink: its bytes in the body before the padding
					 * (= len uncompressed, its frames' bytes compressed) */
	uint32_t component;
	uint32_t flags;			/* AREA_FLAG_* of dump/format.h */
};

struct dmp_call {
	uint32_t component;
	uint8_t op;			/* DMPCALL_START .. */
	uint8_t generation;
	uint8_t outcome;		/* DMPCALL_TABLE .. */
	uint32_t entries;
	uint32_t level;
	int64_t value;
};

struct dmp_violation {
	uint64_t address;
	uint64_t rip;
	uint32_t error_code;
	uint32_t component;		/* DMP_NO_COMPONENT: the facility or a driver */
	uint32_t op;
	uint32_t generation;
};

struct dmp_state {
	uint32_t generation;
	uint32_t level;
	uint64_t estimate_bytes;	/* sum of the components' estimates */
	uint32_t ncomponents;
	uint32_t nareas;		/* of the current generation only */
	uint32_t ncalls;		/* of every generation */
	uint32_t nviolations;
	struct dmp_component components[DMP_MAX_COMPONENTS];
	struct dmp_area areas[DMP_MAX_AREAS];
	struct dmp_call calls[DMP_MAX_CALLS];
	struct dmp_violation violations[DMP_MAX_VIOLATIONS];
};

extern struct dmp_state dmp_state;

/* The writer's side of the stream. */
struct dmp_sink {
	/* Write the area now (its memory may be reused by the routine's next call): assign
	 * a->disk_offset and write the data. 0, or an errno that stops the collection (ENOSPC
	 * when it does not fit, or the device's error). */
	int (*area)(void *ctx, struct dmp_area *a);
	/* Component `index` has its final status for this generation: a checkpoint. */
	int (*component_done)(void *ctx, uint32_t index);
	void *ctx;
};

/* Start of a dump: reset the state; list every registered component in registration order
 * (PENDING, or DISABLED for RAS components switched off); ask each enabled one for its
 * estimate at `level` (DMPCALL_ESTIMATE records, generation 1). */
void dmp_begin(uint32_t level);

/*
 * Call the routines and stream their areas through `sink`, for generation 1, or 2 (a restart:
 * the area list starts empty again; routines with DMPF_CALL_ON_RESTART and those not reached
 * in generation 1 are called; the others' saved tables are replayed, DMPF_TABLE_REUSED).
 * Returns 0, or the sink's error (the component being written stays PENDING or keeps what
 * it had).
 */
int dmp_collect(uint32_t generation, const struct dmp_sink *sink);

/* DONE / FINISHED to every component that provided data and never returned negative. */
void dmp_finish(void);

/* A pinning violation (arch/x86/pin.c calls this from the page-fault path): recorded
 * against the routine call in progress, if any. */
void dmp_note_violation(uint64_t address, uint64_t rip, uint32_t error_code);

/* For the shell: each enabled component's estimate at `level` (no records). */
uint64_t dmp_estimate_at(uint32_t level, void (*each)(const char *name, uint64_t bytes));

/* For the shell's `dump` command: the registered components. */
int dmp_registered_count(void);
const char *dmp_registered_name(int i);

#endif
