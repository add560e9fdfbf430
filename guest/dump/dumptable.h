/*
 * The master dump table, after AIX dmp_ctl() (docs/components.md is the contract).
 *
 * Components register a dump routine with DMPCTL_ADD. At dump time the facility calls each
 * routine with DMPRTN_START; it returns a component dump table: a classic one (struct cdt,
 * DMP_MAGIC) or an unlimited one (struct cdt_u, DMP_MAGIC_U, and the routine is called again
 * with DMPRTN_AGAIN until it returns NULL). DMPRTN_ESTIMATE asks for the size it would dump,
 * DMPRTN_DONE tells it the dump is over.
 */
#ifndef DUMP_DUMPTABLE_H
#define DUMP_DUMPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define DMP_MAX_COMPONENTS	32
#define DMP_MAX_AREAS		1024
#define DMP_MAX_CALLS		1024
#define DMP_MAX_VIOLATIONS	16
#define DMP_NAME_LEN		32
#define DMP_AREA_NAME_LEN	24

#define DMPC_MAGIC1		0x444d5043u	/* "CPMD" little-endian: a dmpctl_data */
#define DMP_MAGIC		0x43445421u	/* a classic component dump table */
#define DMP_MAGIC_U		0x43445455u	/* an unlimited component dump table */

/* dmpc_flags */
#define DMPFUNC_CALL_ON_RESTART	0x1
#define DMPFUNC_GLOBAL_BUFFER	0x2
#define DMPC_GLOBAL_BUFFER	DMPFUNC_GLOBAL_BUFFER	/* the reference's example spells it so */

/* cdt_entry.d_flags */
#define CDT_VOLATILE		0x1	/* the guest changes this memory while dumping it */
#define CDT_STAGED		0x2	/* produced at dump time in a global or staging buffer */

enum dmprtn_op {
	DMPRTN_START = 1,
	DMPRTN_AGAIN,
	DMPRTN_DONE,
	DMPRTN_ESTIMATE,
};

enum dmpctl_op {
	DMPCTL_ADD = 1,
	DMPCTL_DEL,
	DMPCTL_RTNFAILURE,
};

struct cdt_entry {
	char d_name[DMP_AREA_NAME_LEN];
	uint64_t d_len;
	void *d_ptr;		/* physical = virtual (identity mapped) */
	uint32_t d_flags;	/* CDT_* */
};

/* dumpbed addition: what kind of component a table describes (format.h COMPONENT_KIND_*). */
struct cdt_head {
	uint32_t cdt_magic;	/* DMP_MAGIC */
	char cdt_name[DMP_NAME_LEN];
	uint32_t cdt_kind;	/* 0 means COMPONENT_KIND_OTHER */
	uint32_t cdt_len;	/* bytes of the whole table: head + entries */
};

struct cdt {
	struct cdt_head cdt_head;
	struct cdt_entry cdt_entry[];
};

#define NUM_ENTRIES(cp) \
	(((cp)->cdt_head.cdt_len - sizeof(struct cdt_head)) / sizeof(struct cdt_entry))

struct cdt_u {
	uint32_t cdtu_magic;	/* DMP_MAGIC_U */
	char cdtu_name[DMP_NAME_LEN];
	uint32_t cdtu_nentries;
	struct cdt_entry *cdtu_entries;
};

typedef uint64_t dmp_sizeest_t;

typedef void *(*dmp_func_t)(int op, void *buf);

struct dmpctl_data {
	uint32_t dmpc_magic;	/* DMPC_MAGIC1 */
	int dmpc_flags;		/* DMPFUNC_* */
	dmp_func_t dmpc_func;
	size_t dmpc_bsize;	/* global buffer bytes, with DMPFUNC_GLOBAL_BUFFER */
	const char *dmpc_name;	/* dumpbed: the component's name in the directory */
	/* DMPCTL_RTNFAILURE */
	int dmpcf_rV;
	void *dmpcf_vaddr;
	uint64_t dmpcf_handle;
};

int dmp_ctl(int op, struct dmpctl_data *parmp);

/* The global buffer (NULL until requested) and its size. */
void *dmp_global_buffer(size_t *bytes);

#endif
