/* The components every dump contains, as dmp_ctl routines with classic component dump tables. */
#include "dump/components.h"
#include "arch/x86/boot.h"
#include "arch/x86/paging.h"
#include "arch/x86/pin.h"
#include "dump/dumptable.h"
#include "dump/facility.h"
#include "dump/format.h"
#include "kern/crash.h"
#include "kern/memmap.h"
#include "lib/dumpstate.h"
#include "kern/pinpool.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

#define RAM_AREAS_MAX 64
#define POOL_BLOCKS_MAX 16	/* allocated blocks listed one by one; past that, one area */

/* A classic table with room for N entries, laid out as struct cdt. */
#define CDT_STORAGE(n) struct { struct cdt_head head; struct cdt_entry entries[n]; }

static CDT_STORAGE(1) crash_table;
static CDT_STORAGE(5) kernel_table;
/* Rebuilt, and the estimates answered, while the dump runs: dump path state. */
static CDT_STORAGE(RAM_AREAS_MAX) ram_table __dumpstate;
static dmp_sizeest_t crash_estimate __dumpstate, kernel_estimate __dumpstate, ram_estimate __dumpstate;

_Static_assert(offsetof(__typeof__(ram_table), entries) == offsetof(struct cdt, cdt_entry),
	       "storage laid out as struct cdt");

static struct cdt *as_cdt(void *storage)
{
	return storage;
}

static dmp_sizeest_t cdt_bytes(struct cdt *t)
{
	dmp_sizeest_t total = 0;

	for (uint32_t i = 0; i < NUM_ENTRIES(t); i++)
		total += t->cdt_entry[i].d_len;
	return total;
}

/* The tables never change after boot: START hands out the same one every time. */
static void *answer(int op, struct cdt *t, dmp_sizeest_t *estimate)
{
	switch (op) {
	case DMPRTN_START:
		return t;
	case DMPRTN_ESTIMATE:
		*estimate = cdt_bytes(t);
		return estimate;
	default:
		return 0;
	}
}

static void *crash_record_routine(int op, void *buf)
{
	return answer(op, as_cdt(&crash_table), &crash_estimate);
}

static void *kernel_routine(int op, void *buf)
{
	return answer(op, as_cdt(&kernel_table), &kernel_estimate);
}

static void build_ram_table(void);

static void *ram_routine(int op, void *buf)
{
	if (op == DMPRTN_START || op == DMPRTN_ESTIMATE)
		build_ram_table();
	/* No RAM outside the image and the pool: nothing to dump. */
	if (op == DMPRTN_START && NUM_ENTRIES(as_cdt(&ram_table)) == 0)
		return 0;
	return answer(op, as_cdt(&ram_table), &ram_estimate);
}

static void table_init(struct cdt *t, const char *name, uint32_t kind)
{
	t->cdt_head.cdt_magic = DMP_MAGIC;
	strncpy_pad(t->cdt_head.cdt_name, name, sizeof(t->cdt_head.cdt_name));
	t->cdt_head.cdt_kind = kind;
	t->cdt_head.cdt_len = sizeof(struct cdt_head);
}

static void table_add(struct cdt *t, const char *name, uint64_t addr, uint64_t len, uint32_t flags)
{
	struct cdt_entry *e = &t->cdt_entry[NUM_ENTRIES(t)];

	strncpy_pad(e->d_name, name, sizeof(e->d_name));
	e->d_ptr = (void *)(uintptr_t)addr;
	e->d_len = len;
	e->d_flags = flags;
	t->cdt_head.cdt_len += sizeof(struct cdt_entry);
}

static void add_ram(uint64_t start, uint64_t end)
{
	struct cdt *t = as_cdt(&ram_table);
	char name[DMP_AREA_NAME_LEN];

	if (start >= end)
		return;
	if (!paging_is_mapped(start, end - start)) {
		printf("dump: RAM %#llx-%#llx is not mapped, left out of the dump\n",
		       (unsigned long long)start, (unsigned long long)end);
		return;
	}
	if (NUM_ENTRIES(t) == RAM_AREAS_MAX) {
		printf("dump: too many RAM regions, %#llx-%#llx left out\n", (unsigned long long)start,
		       (unsigned long long)end);
		return;
	}
	snprintf(name, sizeof(name), "ram%u", (unsigned)NUM_ENTRIES(t));
	table_add(t, name, start, end - start, 0);
}

/* [start, end) minus the holes (sorted by address, disjoint). */
static uint64_t pool_base, pool_bytes;

/*
 * The pinned pool is RAM too: its free pages are plain RAM areas (nobody writes them after
 * the crash), its allocated blocks (staging and global buffers, filled after the crash) areas
 * of their own, VOLATILE.
 */
static void add_pool_block(uint64_t start, uint64_t bytes)
{
	if (bytes && NUM_ENTRIES(as_cdt(&ram_table)) < RAM_AREAS_MAX)
		table_add(as_cdt(&ram_table), "pinpool", start, bytes, CDT_VOLATILE);
}

static void add_pool(void)
{
	uint64_t blocks[POOL_BLOCKS_MAX][2], at = pool_base, end = pool_base + pool_bytes;
	int n = pinpool_blocks(blocks, POOL_BLOCKS_MAX);

	for (int i = 0; i < n && i < POOL_BLOCKS_MAX; i++) {
		add_ram(at, blocks[i][0]);
		add_pool_block(at = blocks[i][0], blocks[i][1]);
		at += blocks[i][1];
	}
	if (n > POOL_BLOCKS_MAX)
		add_pool_block(at, end - at);	/* too many blocks to list: the rest is volatile */
	else
		add_ram(at, end);
}

/* RAM minus the holes, in address order. The pinned pool is RAM too, so it is dumped in its
 * place as an area of its own, VOLATILE: its staging buffers are filled after the crash. */
static void add_ram_minus(uint64_t start, uint64_t end, const uint64_t (*holes)[2], int nholes)
{
	for (int h = 0; h < nholes && start < end; h++) {
		if (holes[h][1] <= start || holes[h][0] >= end)
			continue;
		add_ram(start, holes[h][0] > start ? holes[h][0] : start);
		if (pool_bytes && holes[h][0] == pool_base)
			add_pool();
		start = holes[h][1];
	}
	add_ram(start, end);
}

static uint64_t ram_holes[2][2];
static int ram_nholes;

/* Rebuilt each time the routine is asked: the pool's blocks are final only once the
 * components have registered (and nothing is allocated after the crash). */
static void build_ram_table(void)
{
	struct cdt *t = as_cdt(&ram_table);

	table_init(t, "ram", COMPONENT_KIND_RAM);
	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);

		uint64_t base = r->base;

		/* testfault=skip-low (deliberately wrong): the RAM below 1 MiB is left out. */
		if (testfault(TF_SKIP_LOW) && base < 0x100000)
			base = r->base + r->len < 0x100000 ? r->base + r->len : 0x100000;
		if (r->type == MMAP_TYPE_USABLE)
			add_ram_minus(base, r->base + r->len, (const uint64_t (*)[2])ram_holes, ram_nholes);
	}
}

static void add_kernel_area(struct cdt *t, const char *name, const char *start, const char *end,
			    uint32_t flags)
{
	if (end > start)
		table_add(t, name, (uintptr_t)start, (uintptr_t)(end - start), flags);
}

static void build_tables(void)
{
	uint64_t kstart = (uintptr_t)__kernel_start, kend = (uintptr_t)__kernel_end;
	uint64_t holes[2][2] = { { kstart, kend } };
	int nholes = 1;
	struct cdt *t;

	t = as_cdt(&crash_table);
	table_init(t, "crash-record", COMPONENT_KIND_CRASH_RECORD);
	table_add(t, "crash-record", (uintptr_t)&crash_record, sizeof(crash_record), CDT_VOLATILE);

	/* The kernel image, page aligned throughout: everything but the dump path's own state
	 * (lib/dumpstate.h) holds still from the crash on and is compared with the snapshot;
	 * `data` is .data and the stack guard page, `bss` the rest of .bss. */
	t = as_cdt(&kernel_table);
	table_init(t, "kernel", COMPONENT_KIND_KERNEL);
	add_kernel_area(t, "text", __text_start, __text_end, 0);
	add_kernel_area(t, "rodata", __rodata_start, __rodata_end, 0);
	add_kernel_area(t, "data", __data_start, __dumpstate_start, 0);
	add_kernel_area(t, "dumpstate", __dumpstate_start, __dumpstate_end, CDT_VOLATILE);
	add_kernel_area(t, "bss", __dumpstate_end, __kernel_end, 0);

	/* The kernel image is its own component; the pinned pool is an area of its own. */
	pool_bytes = 0;
	if (pinpool_range(&pool_base, &pool_bytes)) {
		int at = pool_base < kstart ? 0 : 1;

		holes[1][0] = holes[0][0];
		holes[1][1] = holes[0][1];
		holes[at][0] = pool_base;
		holes[at][1] = pool_base + pool_bytes;
		nholes = 2;
	}
	ram_holes[0][0] = holes[0][0];
	ram_holes[0][1] = holes[0][1];
	ram_holes[1][0] = holes[1][0];
	ram_holes[1][1] = holes[1][1];
	ram_nholes = nholes;
	build_ram_table();
}

int dump_components_register(void)
{
	static const struct {
		const char *name;
		dmp_func_t func;
	} builtins[] = {
		{ "crash-record", crash_record_routine },
		{ "kernel", kernel_routine },
		{ "ram", ram_routine },
	};

	/* Pinning violations in the dump path are the facility's to record. */
	pin_set_violation_hook(dmp_note_violation);
	build_tables();
	for (unsigned i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
		struct dmpctl_data d = {
			.dmpc_magic = DMPC_MAGIC1,
			.dmpc_func = builtins[i].func,
			.dmpc_name = builtins[i].name,
		};
		int err = dmp_ctl(DMPCTL_ADD, &d);

		if (err)
			return err;
	}
	return 0;
}
