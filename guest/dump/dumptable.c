/* The master dump table: registration and collection of component dump tables. */
#include "dump/dumptable.h"
#include "arch/x86/paging.h"
#include "dump/format.h"
#include "lib/errno.h"
#include "lib/string.h"

static struct dmpctl_data table[DMP_MAX_COMPONENTS];
static int ntable;

int dmp_ctl(int op, const struct dmpctl_data *parm)
{
	int i;

	if (!parm || !parm->func)
		return EINVAL;
	for (i = 0; i < ntable; i++)
		if (table[i].func == parm->func)
			break;

	switch (op) {
	case DMPCTL_ADD:
		if (i < ntable)
			return EEXIST;
		if (ntable == DMP_MAX_COMPONENTS)
			return ENOSPC;
		table[ntable++] = *parm;
		return 0;
	case DMPCTL_DEL:
		if (i == ntable)
			return EINVAL;
		memmove(&table[i], &table[i + 1], (size_t)(ntable - i - 1) * sizeof(table[0]));
		ntable--;
		return 0;
	default:
		return EINVAL;
	}
}

int dmp_count(void)
{
	return ntable;
}

const char *dmp_name(int i)
{
	return i >= 0 && i < ntable ? table[i].name : 0;
}

uint64_t dmp_estimate(void)
{
	uint64_t total = 0;

	for (int i = 0; i < ntable; i++) {
		uint64_t e = 0;

		table[i].func(DMPRTN_ESTIMATE, &e);
		total += e;
	}
	return total;
}

/* An area is dumpable if it is non-empty and entirely mapped (the writer reads it). */
static int check_cdt(const struct cdt *t, uint32_t room)
{
	if (t->num_entries == 0 || !t->entries)
		return ENODATA;
	if (t->num_entries > room)
		return E2BIG;
	for (uint32_t k = 0; k < t->num_entries; k++) {
		const struct cdt_entry *e = &t->entries[k];

		if (e->len == 0 || e->addr + e->len < e->addr || !paging_is_mapped(e->addr, e->len))
			return EFAULT;
	}
	return 0;
}

void dmp_collect(struct dmp_collection *c)
{
	c->ncomponents = 0;
	c->nareas = 0;
	for (int i = 0; i < ntable; i++) {
		struct dmp_component *comp = &c->components[c->ncomponents];
		const struct cdt *t = table[i].func(DMPRTN_START, 0);
		int err;

		memset(comp, 0, sizeof(*comp));
		strncpy_pad(comp->name, table[i].name, sizeof(comp->name));
		comp->func = table[i].func;
		comp->kind = COMPONENT_KIND_OTHER;
		comp->first_area = c->nareas;
		c->ncomponents++;

		if (!t) {
			comp->status = COMPONENT_EXCLUDED;
			comp->reason = ENODATA;
			continue;
		}
		comp->kind = t->kind;
		err = check_cdt(t, DMP_MAX_AREAS - c->nareas);
		if (err) {
			comp->status = COMPONENT_FAILED;
			comp->reason = (uint32_t)err;
			continue;
		}
		comp->status = COMPONENT_DUMPED;
		comp->area_count = t->num_entries;
		for (uint32_t k = 0; k < t->num_entries; k++) {
			struct dmp_area *a = &c->areas[c->nareas++];

			strncpy_pad(a->name, t->entries[k].name, sizeof(a->name));
			a->phys = t->entries[k].addr;
			a->len = t->entries[k].len;
			a->component = c->ncomponents - 1;
			a->flags = (t->entries[k].flags & CDT_VOLATILE) ? AREA_FLAG_VOLATILE : 0;
		}
	}
}

void dmp_done(const struct dmp_collection *c)
{
	for (uint32_t i = 0; i < c->ncomponents; i++)
		if (c->components[i].status == COMPONENT_DUMPED)
			c->components[i].func(DMPRTN_DONE, 0);
}
