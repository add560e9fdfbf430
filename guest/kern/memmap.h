#ifndef KERN_MEMMAP_H
#define KERN_MEMMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "kern/multiboot.h"

#define MEMMAP_MAX 64

/* The loader's memory map sorted by address; regions exactly as the loader reported them. */
struct mem_region {
	uint64_t base;
	uint64_t len;
	uint32_t type;
};

void memmap_init(void);
int memmap_count(void);
const struct mem_region *memmap_region(int i);
/* Sum of the usable (type 1) regions: the "ram" of the READY line and of the header. */
uint64_t memmap_usable_bytes(void);
/* True if every byte of [phys, phys+len) lies in usable RAM. */
bool memmap_is_usable(uint64_t phys, uint64_t len);
/* End of the highest usable region below 4 GiB. */
uint64_t memmap_low_ram_end(void);
/* End of the highest usable region. */
uint64_t memmap_ram_end(void);
const char *memmap_type_name(uint32_t type);

#endif
