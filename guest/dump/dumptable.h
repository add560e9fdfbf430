/*
 * The master dump table, after AIX dmp_ctl(): components register a dump routine; at dump
 * time each routine is called with DMPRTN_START and returns its component dump table (cdt),
 * a list of memory areas. DMPRTN_ESTIMATE asks for the size it would dump, DMPRTN_DONE tells
 * it the dump is over. A routine that returns NULL for DMPRTN_START is left out (EXCLUDED).
 */
#ifndef DUMP_DUMPTABLE_H
#define DUMP_DUMPTABLE_H

#include <stdint.h>

#define DMP_MAX_COMPONENTS	16
#define DMP_MAX_AREAS		160
#define DMP_NAME_LEN		32
#define DMP_AREA_NAME_LEN	24

#define CDT_VOLATILE		0x1	/* the guest changes this memory while dumping it */

struct cdt_entry {
	char name[DMP_AREA_NAME_LEN];
	uint64_t addr;		/* physical (= virtual, identity mapped) */
	uint64_t len;
	uint32_t flags;
};

struct cdt {
	char name[DMP_NAME_LEN];
	uint32_t kind;		/* COMPONENT_KIND_* of dump/format.h */
	uint32_t num_entries;
	const struct cdt_entry *entries;
};

enum dmprtn_op {
	DMPRTN_START = 1,
	DMPRTN_DONE,
	DMPRTN_ESTIMATE,
};

/* For DMPRTN_ESTIMATE, `estimate` receives the byte count and the return value is ignored. */
typedef const struct cdt *(*dmp_routine)(int op, uint64_t *estimate);

enum dmpctl_op {
	DMPCTL_ADD = 1,
	DMPCTL_DEL,
};

struct dmpctl_data {
	const char *name;
	dmp_routine func;
};

int dmp_ctl(int op, const struct dmpctl_data *parm);

/* What the dump will contain: filled at dump time, in registration order. */
struct dmp_component {
	char name[DMP_NAME_LEN];
	uint32_t kind;
	uint32_t status;	/* COMPONENT_DUMPED / EXCLUDED / FAILED */
	uint32_t reason;	/* errno for EXCLUDED / FAILED */
	uint32_t first_area;
	uint32_t area_count;
	dmp_routine func;
};

struct dmp_area {
	char name[DMP_AREA_NAME_LEN];
	uint64_t phys;
	uint64_t len;
	uint32_t component;
	uint32_t flags;		/* AREA_FLAG_* of dump/format.h */
};

struct dmp_collection {
	uint32_t ncomponents;
	uint32_t nareas;
	struct dmp_component components[DMP_MAX_COMPONENTS];
	struct dmp_area areas[DMP_MAX_AREAS];
};

/* Call every routine with DMPRTN_START and check what it returned. */
void dmp_collect(struct dmp_collection *c);
/* Call every routine that gave data with DMPRTN_DONE. */
void dmp_done(const struct dmp_collection *c);
/* Sum of every routine's estimate. */
uint64_t dmp_estimate(void);
int dmp_count(void);
const char *dmp_name(int i);

#endif
