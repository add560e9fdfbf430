/*
 * Inside the dump facility: the one registry of components (dmp_ctl routines and RAS blocks,
 * in registration order) shared by dumptable.c, ras.c and facility.c. Not for components.
 */
#ifndef DUMP_REGISTRY_H
#define DUMP_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumptable.h"
#include "dump/ras.h"

struct ras_block {
	bool in_use;
	ras_callback_t cb;
	void *priv;
	bool enabled;			/* RASCD_SET_SDMP_ON / _OFF */
	bool customized;		/* ras_customize() was called */
	bool call_on_restart;		/* asked for explicitly */
	bool serialio;
	uint32_t level;			/* 0..9 */
	void *staging;			/* private staging buffer, from the pinned pool */
	uint64_t staging_bytes;
	uint64_t shared_request;	/* shared staging requirement, 0 if none */
};

struct dmp_reg {
	char name[DMP_NAME_LEN];
	dmp_func_t func;		/* a dmp_ctl routine, or NULL */
	int dmpc_flags;
	uint64_t bsize;			/* its global buffer request */
	struct ras_block *rb;		/* a RAS component, or NULL */
};

/* facility.c: the registry. */
extern struct dmp_reg dmp_registry[DMP_MAX_COMPONENTS];
extern int dmp_nregistry;
/* 0 or ENOMEM (full). */
int dmp_registry_add(const struct dmp_reg *r);
void dmp_registry_remove(int i);
int dmp_registry_find_func(dmp_func_t func);
int dmp_registry_find_ras(const struct ras_block *rb);
int dmp_registry_find_name(const char *name);
/* A directory name: 1 to DMP_NAME_LEN - 1 characters. */
bool dmp_registry_name_ok(const char *name);
/* DMPCTL_RTNFAILURE against the dump in progress: 0, or EINVAL (no dump, or not a component
 * of it). */
int dmp_report_failure(dmp_func_t func, int rv, uint64_t vaddr, uint64_t handle);

/* ras.c: the shared staging buffer (NULL while nobody requires one). */
void *ras_shared_staging(uint64_t *bytes);

#endif
