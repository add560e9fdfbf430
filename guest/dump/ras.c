/*
 * RAS dump components (docs/components.md, "ras_control"): registration, the component's own
 * settings (ras_control) and the administrator's side (ras_admin_*). The dump-time calls are in
 * facility.c. Staging buffers come from the pinned pool, at configuration time only.
 */
#include "dump/ras.h"
#include "dump/registry.h"
#include "lib/errno.h"
#include "kern/pinpool.h"
#include "lib/string.h"

static struct ras_block blocks[DMP_MAX_COMPONENTS];

/* One shared staging buffer, as large as the largest requirement; freed when none is left. */
static void *shared_buf;
static uint64_t shared_bytes;

void *ras_shared_staging(uint64_t *bytes)
{
	*bytes = shared_bytes;
	return shared_buf;
}

static bool valid(ras_block_t rb)
{
	uintptr_t a = (uintptr_t)rb, lo = (uintptr_t)blocks;

	return a >= lo && a < lo + sizeof(blocks) && (a - lo) % sizeof(blocks[0]) == 0 &&
	       rb->in_use && dmp_registry_find_ras(rb) >= 0;
}

/* After a requirement went away: keep the buffer while anybody still needs it. A smaller
 * remaining requirement keeps the larger buffer (reallocating could only fail). */
static void shared_release(void)
{
	for (int i = 0; i < DMP_MAX_COMPONENTS; i++)
		if (blocks[i].in_use && blocks[i].shared_request)
			return;
	if (shared_buf)
		pinpool_free(shared_buf);
	shared_buf = 0;
	shared_bytes = 0;
}

static int set_private_staging(ras_block_t rb, uint64_t bytes)
{
	void *nb = 0;

	if (bytes > RAS_SDMP_STAGING_MAX)
		return EINVAL;
	if (bytes && rb->shared_request)
		return EEXIST;
	if (bytes == rb->staging_bytes)
		return 0;
	if (bytes) {
		nb = pinpool_alloc(bytes);
		if (!nb)
			return ENOMEM_RAS_SDMP_STAGING;
	}
	if (rb->staging)
		pinpool_free(rb->staging);
	rb->staging = nb;
	rb->staging_bytes = bytes;
	return 0;
}

static int set_shared_staging(ras_block_t rb, uint64_t bytes)
{
	if (bytes > RAS_SDMP_STAGING_MAX)
		return EINVAL;
	if (bytes && rb->staging)
		return EEXIST;
	if (bytes > shared_bytes) {
		void *nb = pinpool_alloc(bytes);

		if (!nb)
			return ENOMEM_RAS_SDMP_STAGING;
		if (shared_buf)
			pinpool_free(shared_buf);
		shared_buf = nb;
		shared_bytes = bytes;
	}
	rb->shared_request = bytes;
	if (!bytes)
		shared_release();
	return 0;
}

int ras_register(ras_block_t *rbp, const char *name, ras_callback_t cb, void *priv)
{
	struct ras_block *rb = 0;
	struct dmp_reg r;
	int err;

	if (!rbp || !cb || !dmp_registry_name_ok(name))
		return EINVAL;
	if (dmp_registry_find_name(name) >= 0)
		return EEXIST;
	for (int i = 0; i < DMP_MAX_COMPONENTS && !rb; i++)
		if (!blocks[i].in_use)
			rb = &blocks[i];
	if (!rb)
		return ENOMEM;

	memset(rb, 0, sizeof(*rb));
	rb->cb = cb;
	rb->priv = priv;
	rb->enabled = true;
	rb->level = CD_LVL_NORMAL;
	memset(&r, 0, sizeof(r));
	strncpy_pad(r.name, name, sizeof(r.name));
	r.rb = rb;
	err = dmp_registry_add(&r);
	if (err)
		return err;
	rb->in_use = true;
	*rbp = rb;
	return 0;
}

int ras_unregister(ras_block_t rb)
{
	if (!valid(rb))
		return EINVAL;
	dmp_registry_remove(dmp_registry_find_ras(rb));
	if (rb->staging)
		pinpool_free(rb->staging);
	rb->in_use = false;
	if (rb->shared_request) {
		rb->shared_request = 0;
		shared_release();
	}
	return 0;
}

int ras_customize(ras_block_t rb)
{
	if (!valid(rb))
		return EINVAL;
	rb->customized = true;
	return 0;
}

int ras_control(ras_block_t rb, int action, uint64_t arg)
{
	if (!valid(rb))
		return EINVAL;
	switch (action) {
	case RASCD_SET_SDMP_ON:
		rb->enabled = true;
		return 0;
	case RASCD_SET_SDMP_OFF:
		rb->enabled = false;
		return 0;
	case RASCD_SET_SDMP_LVL:
		if (arg > CD_LVL_MAX)
			return EINVAL;
		rb->level = (uint32_t)arg;
		return 0;
	case RASCD_SET_SDMP_CALLONRESTART:
		rb->call_on_restart = true;
		return 0;
	case RASCD_SET_SDMP_STAGING:
		return set_private_staging(rb, arg);
	case RASCD_SET_SDMP_SHARED_STAGING:
		return set_shared_staging(rb, arg);
	case RASCD_SET_SDMP_SERIALIO:
		if (rb->customized)
			return EPERM;
		rb->serialio = true;
		return 0;
	default:
		return EINVAL;
	}
}

/* The callback performs the change itself, with ras_control(). */
int ras_admin_enable(ras_block_t rb, int on)
{
	if (!valid(rb))
		return EINVAL;
	rb->cb(rb, on ? RASCD_SDMP_ON : RASCD_SDMP_OFF, 0, rb->priv);
	return 0;
}

int ras_admin_level(ras_block_t rb, uint32_t level)
{
	if (!valid(rb) || level > CD_LVL_MAX)
		return EINVAL;
	rb->cb(rb, RASCD_SDMP_LVL, (void *)(uintptr_t)level, rb->priv);
	return 0;
}

void ras_admin_level_all(uint32_t level)
{
	struct ras_block *todo[DMP_MAX_COMPONENTS];
	int n = 0;

	if (level > CD_LVL_MAX)
		return;
	/* In registration order, over a copy: a callback may unregister itself. */
	for (int i = 0; i < dmp_nregistry; i++)
		if (dmp_registry[i].rb)
			todo[n++] = dmp_registry[i].rb;
	for (int i = 0; i < n; i++)
		ras_admin_level(todo[i], level);
}
