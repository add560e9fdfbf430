/* The components every dump contains, as component dump tables for the master dump table. */
#include "dump/components.h"
#include "arch/x86/boot.h"
#include "arch/x86/paging.h"
#include "dump/dumptable.h"
#include "dump/format.h"
#include "kern/crash.h"
#include "kern/memmap.h"
#include "lib/printf.h"
#include "lib/string.h"

#define RAM_AREAS_MAX 64

static struct cdt_entry crash_entries[1];
static struct cdt crash_cdt;
static struct cdt_entry kernel_entries[3];
static struct cdt kernel_cdt;
static struct cdt_entry ram_entries[RAM_AREAS_MAX];
static struct cdt ram_cdt;

static uint64_t cdt_bytes(const struct cdt *t)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < t->num_entries; i++)
		total += t->entries[i].len;
	return total;
}

static const struct cdt *crash_record_routine(int op, uint64_t *estimate)
{
	if (op == DMPRTN_ESTIMATE && estimate)
		*estimate = cdt_bytes(&crash_cdt);
	return &crash_cdt;
}

static const struct cdt *kernel_routine(int op, uint64_t *estimate)
{
	if (op == DMPRTN_ESTIMATE && estimate)
		*estimate = cdt_bytes(&kernel_cdt);
	return &kernel_cdt;
}

static const struct cdt *ram_routine(int op, uint64_t *estimate)
{
	if (op == DMPRTN_ESTIMATE && estimate)
		*estimate = cdt_bytes(&ram_cdt);
	return ram_cdt.num_entries ? &ram_cdt : 0;
}

static void set_entry(struct cdt_entry *e, const char *name, uint64_t addr, uint64_t len,
		      uint32_t flags)
{
	strncpy_pad(e->name, name, sizeof(e->name));
	e->addr = addr;
	e->len = len;
	e->flags = flags;
}

static void add_ram(uint64_t start, uint64_t end)
{
	char name[DMP_AREA_NAME_LEN];

	if (start >= end)
		return;
	if (!paging_is_mapped(start, end - start)) {
		printf("dump: RAM %#llx-%#llx is not mapped, left out of the dump\n",
		       (unsigned long long)start, (unsigned long long)end);
		return;
	}
	if (ram_cdt.num_entries == RAM_AREAS_MAX) {
		printf("dump: too many RAM regions, %#llx-%#llx left out\n", (unsigned long long)start,
		       (unsigned long long)end);
		return;
	}
	snprintf(name, sizeof(name), "ram%u", ram_cdt.num_entries);
	set_entry(&ram_entries[ram_cdt.num_entries++], name, start, end - start, 0);
}

static void build_tables(void)
{
	uint64_t kstart = (uintptr_t)__kernel_start, kend = (uintptr_t)__kernel_end;

	strncpy_pad(crash_cdt.name, "crash-record", sizeof(crash_cdt.name));
	crash_cdt.kind = COMPONENT_KIND_CRASH_RECORD;
	set_entry(&crash_entries[0], "crash-record", (uintptr_t)&crash_record, sizeof(crash_record),
		  CDT_VOLATILE);
	crash_cdt.entries = crash_entries;
	crash_cdt.num_entries = 1;

	strncpy_pad(kernel_cdt.name, "kernel", sizeof(kernel_cdt.name));
	kernel_cdt.kind = COMPONENT_KIND_KERNEL;
	set_entry(&kernel_entries[0], "text", (uintptr_t)__text_start,
		  (uintptr_t)__text_end - (uintptr_t)__text_start, 0);
	set_entry(&kernel_entries[1], "rodata", (uintptr_t)__rodata_start,
		  (uintptr_t)__rodata_end - (uintptr_t)__rodata_start, 0);
	set_entry(&kernel_entries[2], "data+bss", (uintptr_t)__data_start,
		  kend - (uintptr_t)__data_start, CDT_VOLATILE);
	kernel_cdt.entries = kernel_entries;
	kernel_cdt.num_entries = 3;

	strncpy_pad(ram_cdt.name, "ram", sizeof(ram_cdt.name));
	ram_cdt.kind = COMPONENT_KIND_RAM;
	ram_cdt.entries = ram_entries;
	ram_cdt.num_entries = 0;
	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);
		uint64_t start = r->base, end = r->base + r->len;

		if (r->type != MMAP_TYPE_USABLE)
			continue;
		/* The kernel image is its own component. */
		if (start < kend && kstart < end) {
			add_ram(start, kstart);
			add_ram(kend, end);
		} else {
			add_ram(start, end);
		}
	}
}

int dump_components_register(void)
{
	static const struct dmpctl_data builtins[] = {
		{ "crash-record", crash_record_routine },
		{ "kernel", kernel_routine },
		{ "ram", ram_routine },
	};

	build_tables();
	for (unsigned i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
		int err = dmp_ctl(DMPCTL_ADD, &builtins[i]);

		if (err)
			return err;
	}
	return 0;
}
