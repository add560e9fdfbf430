/*
 * The sample dump components (docs/components.md, "The sample components"): one per feature of
 * the facility's component interfaces, each putting a documented pattern in the dump so the
 * harness can check every byte.
 */
#ifndef KERN_SAMPLES_H
#define KERN_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dump/ras.h"

/*
 * Register the samples named by `components_list` (the components= value: comma-separated
 * names, "all", "none", or "default" = all but smp-pinviolator) in the table's order. 0, EINVAL
 * for an unknown name (reported on the console, nothing registered), or the facility's error.
 */
int samples_register(const char *components_list);

/*
 * The pattern: fill `len` bytes at `dst` with the stream of component `name`'s area `k`.
 * samples_seed() is crc32c(name) << 32 | k, computed once; pattern_fill_seed() generates it.
 */
uint64_t samples_seed(const char *name, uint32_t k);
void pattern_fill_seed(uint64_t seed, void *dst, uint64_t len);

/* For the shell (dumpctl) and the self-tests: what each sample is and what it is set to. */
struct sample_state {
	const char *name;
	const char *interface;		/* "dmp_ctl" or "ras" */
	const char *features;		/* e.g. "classic", "unlimited,shared-staging" */
	bool registered;
	bool ras;
	ras_block_t rb;			/* RAS samples, once registered */
	bool enabled;			/* RAS: as its callback last set it */
	uint32_t level;			/* RAS: as its callback last set it (CD_LVL_NORMAL first) */
	size_t global_request;		/* its DMPCTL_ADD dmpc_bsize, 0 if none */
};

int samples_count(void);
const struct sample_state *samples_state(int i);
/* The RAS block of a registered RAS sample called `name`, or NULL. */
ras_block_t samples_ras_block(const char *name);

#endif
