/*
 * The RAM fill pattern: every word unique to its address and to the run, so a dump block
 * written to the wrong place, or not at all, cannot compare equal by accident.
 */
#include "test/fill.h"
#include "arch/x86/boot.h"
#include "arch/x86/paging.h"
#include "arch/x86/usermode.h"
#include "kern/memmap.h"

/* Pure computation: runs in ring 3 (arch/x86/user_entry.S). */
static uint64_t fill_range(uint64_t start, uint64_t end, uint64_t seed)
{
	uint64_t *p = (uint64_t *)(uintptr_t)start;
	uint64_t *e = (uint64_t *)(uintptr_t)end;
	uint64_t v = start * FILL_MULTIPLIER;

	/* addr advances by 8, so the product advances by 8 * FILL_MULTIPLIER (mod 2^64). */
	for (; p < e; p++, v += 8 * FILL_MULTIPLIER)
		*p = v ^ seed;
	return 0;
}

uint64_t fill_ram(uint64_t seed)
{
	uint64_t image_end = ((uintptr_t)__kernel_end + 4095) & ~4095ull;
	uint64_t total = 0;

	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);
		uint64_t start = r->base, end = r->base + r->len;

		if (r->type != MMAP_TYPE_USABLE)
			continue;
		if (start < image_end)
			start = image_end;
		start = (start + 7) & ~7ull;
		end &= ~7ull;
		if (start >= end)
			continue;
		/* Only what we can address; the map above 4 GiB is extended at boot. */
		if (!paging_is_mapped(start, end - start))
			continue;
		run_unprivileged(fill_range, start, end, seed);
		total += end - start;
	}
	return total;
}
