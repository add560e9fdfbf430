/*
 * dmp_ctl(): the dmp_ctl side of the master dump table (docs/components.md), and the global
 * buffer. The table itself is the facility's registry (dump/registry.h), shared with the RAS
 * components so that both kinds are dumped in registration order.
 */
#include "dump/dumptable.h"
#include "dump/registry.h"
#include "lib/errno.h"
#include "kern/pinpool.h"
#include "lib/string.h"

#define DMPFUNC_KNOWN	(DMPFUNC_CALL_ON_RESTART | DMPFUNC_GLOBAL_BUFFER)

/* Allocated at configuration time only, from the pinned pool; never shrinks. */
static void *global_buf;
static size_t global_bytes;

/* Make the global buffer at least `bytes` long. A larger request reallocates: nobody has
 * data in it outside a dump, so nothing is copied. */
static int global_buffer_reserve(size_t bytes)
{
	void *nb;

	if (bytes <= global_bytes)
		return 0;
	nb = pinpool_alloc(bytes);
	if (!nb)
		return ENOMEM;
	if (global_buf)
		pinpool_free(global_buf);
	global_buf = nb;
	global_bytes = bytes;
	return 0;
}

static int dmpctl_add(const struct dmpctl_data *p)
{
	struct dmp_reg r;
	int err;

	if (p->dmpc_magic != DMPC_MAGIC1 || !p->dmpc_func || (p->dmpc_flags & ~DMPFUNC_KNOWN) ||
	    ((p->dmpc_flags & DMPFUNC_GLOBAL_BUFFER) && p->dmpc_bsize == 0) ||
	    !dmp_registry_name_ok(p->dmpc_name))
		return EINVAL;
	if (dmp_registry_find_func(p->dmpc_func) >= 0)
		return EEXIST;
	if (dmp_nregistry == DMP_MAX_COMPONENTS)
		return ENOMEM;
	if (p->dmpc_flags & DMPFUNC_GLOBAL_BUFFER) {
		err = global_buffer_reserve(p->dmpc_bsize);
		if (err)
			return err;
	}

	memset(&r, 0, sizeof(r));
	strncpy_pad(r.name, p->dmpc_name, sizeof(r.name));
	r.func = p->dmpc_func;
	r.dmpc_flags = p->dmpc_flags;
	r.bsize = (p->dmpc_flags & DMPFUNC_GLOBAL_BUFFER) ? p->dmpc_bsize : 0;
	return dmp_registry_add(&r);
}

int dmp_ctl(int op, struct dmpctl_data *parmp)
{
	int i;

	if (!parmp)
		return EINVAL;
	switch (op) {
	case DMPCTL_ADD:
		return dmpctl_add(parmp);
	case DMPCTL_DEL:
		i = parmp->dmpc_func ? dmp_registry_find_func(parmp->dmpc_func) : -1;
		if (i < 0)
			return EINVAL;
		/* The global buffer stays: it is pinned for the life of the system. */
		dmp_registry_remove(i);
		return 0;
	case DMPCTL_RTNFAILURE:
		if (!parmp->dmpc_func || dmp_registry_find_func(parmp->dmpc_func) < 0)
			return EINVAL;
		return dmp_report_failure(parmp->dmpc_func, parmp->dmpcf_rV,
					  (uint64_t)(uintptr_t)parmp->dmpcf_vaddr, parmp->dmpcf_handle);
	default:
		return EINVAL;
	}
}

void *dmp_global_buffer(size_t *bytes)
{
	if (bytes)
		*bytes = global_bytes;
	return global_buf;
}
