/*
 * The sample dump components (docs/components.md, "The sample components"): one per feature of
 * the facility's component interfaces, each putting a documented pattern in the dump so the
 * harness can check every byte.
 */
#ifndef TEST_SAMPLES_H
#define TEST_SAMPLES_H

#include <stdint.h>

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

#endif
