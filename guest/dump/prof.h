/*
 * Where the dump's time goes (docs/guest-interface.md, "PROFILE"): TSC cycles and counts per
 * category, kept by the writer and the facility around what they call, printed once before
 * DONE. The categories do not overlap: only leaves are timed (a CRC feed, a staging copy, one
 * write, one routine call), never a step that contains another.
 */
#ifndef DUMP_PROF_H
#define DUMP_PROF_H

#include <stdint.h>

#include "arch/x86/cpu.h"

enum prof_cat {
	PROF_CRC,	/* feeding the body to the chunk CRCs (a ring 3 trip each) */
	PROF_COPY,	/* staging copies (a ring 3 trip each) */
	PROF_WRITE,	/* DUMPWRITE without DUMP_FSYNC: submit to polled completion (DUMP_ASYNC: to a free slot) */
	PROF_FLUSH,	/* DUMPWRITE with DUMP_FSYNC: the write and its flush */
	PROF_META,	/* building a directory and the CRC table's own CRC */
	PROF_DEVICE,	/* DUMPSTART and DUMPQUERY, DUMPEND (the driver's reset and rings) */
	PROF_PIN,	/* entering and leaving the pinning enforcement (its page tables) */
	PROF_LINES,	/* the PROGRESS lines (a port write, a VM exit, per byte) */
	PROF_CALLS,	/* the components' routine calls, under the pinning guard (the facility) */
	PROF_ZIP,	/* compressing data into frames, raw CRCs included (a ring 3 trip each) */
	PROF_NCAT
};

/* A category's start: the TSC, ordered after earlier loads (rdtsc's lfence). */
static inline uint64_t prof_begin(void)
{
	return rdtsc();
}

/* Adds the cycles since `start` to the category, and one to its count. */
void prof_end(enum prof_cat cat, uint64_t start);
/* The body's and metadata's bytes written (with PROF_WRITE / PROF_FLUSH). */
void prof_bytes(uint64_t bytes);
/* The data's bytes compressed (with PROF_ZIP). */
void prof_zip_in(uint64_t bytes);
/* At the dump's start: its TSC and the arch counters' values then. */
void prof_start(void);
/* The profile line: from prof_start() to now. */
void prof_report(void);

#endif
