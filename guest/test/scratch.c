/* Scratch memory for the console's test tools (test/scratch.h). */
#include "test/scratch.h"
#include "arch/x86/boot.h"
#include "kern/memmap.h"

uint8_t *test_scratch(uint64_t bytes)
{
	uint64_t start = ((uintptr_t)__kernel_end + (2u << 20) - 1) & ~((uint64_t)(2u << 20) - 1);

	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);

		if (r->type == MMAP_TYPE_USABLE && r->base <= start && start + bytes <= r->base + r->len &&
		    start + bytes <= (4ull << 30))
			return (uint8_t *)(uintptr_t)start;
	}
	return 0;
}
