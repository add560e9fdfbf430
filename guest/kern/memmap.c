/* The physical memory map, from the multiboot copy. */
#include "kern/memmap.h"
#include "lib/string.h"

static struct mem_region regions[MEMMAP_MAX];
static int nregions;

void memmap_init(void)
{
	nregions = 0;
	for (int i = 0; i < boot_info.nmmap && nregions < MEMMAP_MAX; i++) {
		if (boot_info.mmap[i].len == 0)
			continue;
		regions[nregions++] = (struct mem_region){ boot_info.mmap[i].base, boot_info.mmap[i].len,
							   boot_info.mmap[i].type };
	}
	/* Insertion sort by base: loaders usually hand the map over sorted already. */
	for (int i = 1; i < nregions; i++)
		for (int j = i; j > 0 && regions[j - 1].base > regions[j].base; j--) {
			struct mem_region t = regions[j];

			regions[j] = regions[j - 1];
			regions[j - 1] = t;
		}
}

int memmap_count(void)
{
	return nregions;
}

const struct mem_region *memmap_region(int i)
{
	return i >= 0 && i < nregions ? &regions[i] : 0;
}

uint64_t memmap_usable_bytes(void)
{
	uint64_t total = 0;

	for (int i = 0; i < nregions; i++)
		if (regions[i].type == MMAP_TYPE_USABLE)
			total += regions[i].len;
	return total;
}

bool memmap_is_usable(uint64_t phys, uint64_t len)
{
	uint64_t end = phys + len;

	if (end < phys)
		return false;
	/* The regions are sorted: walk them, each usable one extending the covered prefix. */
	for (int i = 0; i < nregions && phys < end; i++) {
		const struct mem_region *r = &regions[i];

		if (r->type == MMAP_TYPE_USABLE && r->base <= phys && phys < r->base + r->len)
			phys = r->base + r->len;
	}
	return phys >= end;
}

uint64_t memmap_low_ram_end(void)
{
	uint64_t end = 0;

	for (int i = 0; i < nregions; i++) {
		uint64_t e = regions[i].base + regions[i].len;

		if (regions[i].type != MMAP_TYPE_USABLE || regions[i].base >= (4ull << 30))
			continue;
		if (e > (4ull << 30))
			e = 4ull << 30;
		if (e > end)
			end = e;
	}
	return end;
}

uint64_t memmap_ram_end(void)
{
	uint64_t end = 0;

	for (int i = 0; i < nregions; i++)
		if (regions[i].type == MMAP_TYPE_USABLE && regions[i].base + regions[i].len > end)
			end = regions[i].base + regions[i].len;
	return end;
}

const char *memmap_type_name(uint32_t type)
{
	switch (type) {
	case 1: return "usable";
	case 2: return "reserved";
	case 3: return "acpi-reclaimable";
	case 4: return "acpi-nvs";
	case 5: return "bad";
	default: return "other";
	}
}
