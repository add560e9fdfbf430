/*
 * Pinned memory and its enforcement while a dump runs (see arch/x86/pin.h, docs/guest.md
 * "Pinning").
 *
 * The pin table is a sorted list of disjoint page ranges, each with a reference count: pin()
 * adds one to every page of its range, unpin() takes one away (and refuses a range with an
 * unpinned page in it). The kernel image - text through the end of .bss, so every stack, the
 * page tables and all static driver state - is pinned once, the first time this file is used.
 *
 * Enforcement builds a second set of page tables in .bss (their own PML4, PDPT, page
 * directories and a pool of 4 KiB page tables) that maps, identity as always, only the pinned
 * pages (present, writable) and the areas pin_map_dumped() is given (present, read-only;
 * pages already pinned stay writable). A 2 MiB region that is all one kind is one 2 MiB
 * page; a region with mixed contents gets a page table. Every page is user-accessible, as in
 * the normal map, because the ring-3 helpers (run_unprivileged) read dumped areas and write
 * staging buffers; the cache attributes (PCD/PWT: MMIO is uncached) are copied from the normal
 * map. CR0.WP is set while enforcing so that ring 0 writes to read-only pages fault too.
 *
 * A page fault with enforcement on, inside a pin_guarded_call(), that is a not-present fault
 * on something the normal map does map, or a write to a read-only (dumped) page, is a pinning
 * violation: it is reported through the violation hook (the facility's dmp_note_violation)
 * and execution continues at the innermost guard (pin_longjmp, arch/x86/jmp.S), which returns
 * 0 with *violated set. There is
 * no IRET on that path: NMIs stay blocked for the whole dump.
 *
 * Faults taken in ring 3 land on the TSS's rsp0 stack. Normally that is ring0_stack, which is
 * also the stack the dump runs on when the crash itself came from ring 3: the fault's frame and
 * the C calls of the fault path would overwrite the live frames of the dump that the guard
 * returns into. So while enforcing, rsp0 points at a stack of this file's own; the #UD that
 * ends every user_call() trip does not care where it lands (it reloads the saved kernel stack
 * pointer). After a ring-3 violation the guard reloads ds/es/ss (ring 3 left null selectors)
 * and the next user_call() starts from scratch: its saved stack pointer is rewritten on entry.
 */
#include "arch/x86/pin.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/paging.h"
#include "arch/x86/usermode.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"

#define PAGE		4096ull
#define PAGE_2M		(2ull << 20)
#define GIB		(1ull << 30)
#define ADDR_LIMIT	(512 * GIB)		/* one PML4 entry, as the normal map */
#define ADDR_MASK	0x000ffffffffff000ull
#define CACHE_BITS	(PTE_PWT | PTE_PCD)
#define CR0_WP		(1ull << 16)

#define PIN_MAX_RANGES	64
#define PIN_PD_POOL	16			/* 16 GiB of address space touched */
#define PIN_PT_POOL	64			/* 2 MiB regions with mixed contents */
#define PIN_MAX_GUARDS	8
#define FAULT_STACK_SIZE (16 * 1024)

/* Page-fault error code bits. */
#define PF_P		(1u << 0)
#define PF_W		(1u << 1)
#define PF_U		(1u << 2)
#define PF_RSVD		(1u << 3)
#define PF_PK		(1u << 5)
#define PF_SS		(1u << 6)
#define PF_SGX		(1u << 15)

struct pin_range {
	uint64_t start, end;	/* page aligned, [start, end) */
	uint32_t count;
};

/* arch/x86/jmp.S */
struct pin_jmp {
	uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
};
int pin_setjmp(struct pin_jmp *j) __attribute__((returns_twice));
void pin_longjmp(struct pin_jmp *j, int v) __attribute__((noreturn));

extern uint64_t gdt[];		/* boot.S; the TSS descriptor is filled by gdt_init() */

static struct pin_range ranges[PIN_MAX_RANGES];
static int nranges;
static bool image_pinned;

/*
 * Everything below is written after the crash (the pin table above is not: nothing is pinned
 * or unpinned while the dump runs), so it is dump path state (lib/dumpstate.h): the dump-time
 * page tables (the CPU sets accessed and dirty bits in them too), the enforcement state, the
 * fault stack, the guards, the violation record; pin_abandon() resets the rest at the crash.
 */
static uint64_t ept_pml4[512] __dumpstate __attribute__((aligned(4096)));
static uint64_t ept_pdpt[512] __dumpstate __attribute__((aligned(4096)));
static uint64_t ept_pd[PIN_PD_POOL][512] __dumpstate __attribute__((aligned(4096)));
static uint64_t ept_pt[PIN_PT_POOL][512] __dumpstate __attribute__((aligned(4096)));
static int pd_used __dumpstate, pt_used __dumpstate;

static volatile bool enforcing __dumpstate;
uint64_t pin_cr3_writes __dumpstate;
static uint64_t saved_cr3 __dumpstate, saved_cr0 __dumpstate, saved_rsp0 __dumpstate;
static char fault_stack[FAULT_STACK_SIZE] __dumpstate __attribute__((aligned(16)));

static struct pin_jmp guards[PIN_MAX_GUARDS] __dumpstate;
static volatile int nguards __dumpstate;
static volatile bool in_check __dumpstate;

/* What the last violation was (for pin_selftest), and whether to record violations at all
 * (the self-test's own are not the facility's business). */
static volatile uint64_t last_addr __dumpstate, last_error __dumpstate;
static volatile uint32_t violation_count __dumpstate;
static volatile bool quiet __dumpstate;
/* Set once at boot, before any crash: it holds still (not dumpstate). */
static pin_violation_fn violation_hook;

void pin_set_violation_hook(pin_violation_fn fn)
{
	violation_hook = fn;
}

/* ---- the pin table --------------------------------------------------------------------- */

static int page_span(uint64_t addr, uint64_t len, uint64_t *start, uint64_t *end)
{
	uint64_t e = addr + len;

	if (len == 0 || e < addr || e > ADDR_LIMIT)
		return EINVAL;
	*start = addr & ~(PAGE - 1);
	*end = (e + PAGE - 1) & ~(PAGE - 1);
	return 0;
}

/* Pages of [start, end) covered by the table. */
static uint64_t covered(uint64_t start, uint64_t end)
{
	uint64_t n = 0;

	for (int i = 0; i < nranges; i++) {
		uint64_t a = ranges[i].start > start ? ranges[i].start : start;
		uint64_t b = ranges[i].end < end ? ranges[i].end : end;

		if (a < b)
			n += b - a;
	}
	return n;
}

static int emit(struct pin_range *out, int *n, int max, uint64_t s, uint64_t e, uint32_t count)
{
	if (s >= e || count == 0)
		return 0;
	if (*n > 0 && out[*n - 1].end == s && out[*n - 1].count == count) {
		out[*n - 1].end = e;
		return 0;
	}
	if (*n == max)
		return ENOMEM;
	out[*n].start = s;
	out[*n].end = e;
	out[*n].count = count;
	(*n)++;
	return 0;
}

/* Add `delta` (+1 or -1) to the count of every page of [start, end); pages not in the table
 * count 0. The table is replaced only if the result fits. */
static int apply(uint64_t start, uint64_t end, int delta)
{
	static struct pin_range out[PIN_MAX_RANGES];
	uint64_t cur = start;
	int n = 0, err = 0;

	for (int i = 0; i < nranges && !err; i++) {
		const struct pin_range *r = &ranges[i];
		uint64_t a = r->start > start ? r->start : start;
		uint64_t b = r->end < end ? r->end : end;

		if (delta > 0 && cur < end && cur < r->start) {
			uint64_t gap_end = r->start < end ? r->start : end;

			err = emit(out, &n, PIN_MAX_RANGES, cur, gap_end, 1);
			cur = gap_end;
		}
		if (err)
			break;
		if (a < b) {
			err = emit(out, &n, PIN_MAX_RANGES, r->start, a, r->count);
			if (!err)
				err = emit(out, &n, PIN_MAX_RANGES, a, b, (uint32_t)((int)r->count + delta));
			if (!err)
				err = emit(out, &n, PIN_MAX_RANGES, b, r->end, r->count);
			if (b > cur)
				cur = b;
		} else {
			err = emit(out, &n, PIN_MAX_RANGES, r->start, r->end, r->count);
		}
	}
	if (!err && delta > 0 && cur < end)
		err = emit(out, &n, PIN_MAX_RANGES, cur, end, 1);
	if (err)
		return err;
	for (int i = 0; i < n; i++)
		ranges[i] = out[i];
	nranges = n;
	return 0;
}

static void pin_image(void)
{
	uint64_t s, e;

	if (image_pinned)
		return;
	image_pinned = true;
	if (!page_span((uint64_t)__kernel_start, (uint64_t)(__kernel_end - __kernel_start), &s, &e))
		apply(s, e, 1);
}

static int map_range(uint64_t start, uint64_t end, bool writable, bool strict);

static void flush_ept(void)
{
	pin_cr3_writes++;
	write_cr3((uint64_t)ept_pml4);
}

int pin_phys(uint64_t phys, uint64_t len)
{
	uint64_t s, e;
	int err;

	pin_image();
	err = page_span(phys, len, &s, &e);
	if (err)
		return err;
	err = apply(s, e, 1);
	if (err || !enforcing)
		return err;
	/* Pinned during the dump: it is usable from now on. */
	err = map_range(s, e, true, false);
	flush_ept();
	if (err)
		apply(s, e, -1);
	return err;
}

int unpin_phys(uint64_t phys, uint64_t len)
{
	uint64_t s, e;
	int err;

	pin_image();
	err = page_span(phys, len, &s, &e);
	if (err)
		return err;
	if (covered(s, e) != e - s)
		return EINVAL;
	/* While enforcing, the pages stay mapped until pin_enforce_end(). */
	return apply(s, e, -1);
}

int pin(const void *addr, uint64_t len)
{
	return pin_phys((uint64_t)addr, len);	/* identity mapped */
}

int unpin(const void *addr, uint64_t len)
{
	return unpin_phys((uint64_t)addr, len);
}

bool pin_is_pinned(uint64_t phys, uint64_t len)
{
	uint64_t s, e;

	pin_image();
	if (len == 0)
		return true;
	if (page_span(phys, len, &s, &e))
		return false;
	return covered(s, e) == e - s;
}

uint64_t pin_pinned_pages(void)
{
	uint64_t pages = 0;

	for (int i = 0; i < nranges; i++)
		pages += (ranges[i].end - ranges[i].start) / 4096;
	return pages;
}

/* ---- the dump-time page tables ---------------------------------------------------------- */

static uint64_t *alloc_table(uint64_t (*pool)[512], int *used, int max)
{
	uint64_t *t;

	if (*used == max)
		return 0;
	t = pool[(*used)++];
	for (int i = 0; i < 512; i++)
		t[i] = 0;
	return t;
}

static uint64_t *ept_pd_for(uint64_t a)
{
	uint64_t slot = a / GIB;

	if (slot >= 512)
		return 0;
	if (!(ept_pdpt[slot] & PTE_P)) {
		uint64_t *pd = alloc_table(ept_pd, &pd_used, PIN_PD_POOL);

		if (!pd)
			return 0;
		ept_pdpt[slot] = (uint64_t)pd | PTE_P | PTE_W | PTE_U;
	}
	return (uint64_t *)(ept_pdpt[slot] & ADDR_MASK);
}

/*
 * Map the pages of [start, end) (page aligned) present, user, and writable or read-only;
 * a page already writable stays so. Regions the normal map does not map are skipped, or
 * EFAULT if `strict`. ENOMEM when the table pools run out (what was done stays).
 */
static int map_range(uint64_t start, uint64_t end, bool writable, bool strict)
{
	uint64_t want = PTE_P | PTE_U | (writable ? PTE_W : 0);

	for (uint64_t r = start & ~(PAGE_2M - 1); r < end; r += PAGE_2M) {
		uint64_t npde = paging_pde(r);
		uint64_t a = start > r ? start : r;
		uint64_t b = end < r + PAGE_2M ? end : r + PAGE_2M;
		uint64_t attrs = npde & CACHE_BITS;
		bool whole = a == r && b == r + PAGE_2M;
		uint64_t *pd, *pde, *pt;

		if (!(npde & PTE_P)) {
			if (strict)
				return EFAULT;
			continue;
		}
		pd = ept_pd_for(r);
		if (!pd)
			return ENOMEM;
		pde = &pd[(r / PAGE_2M) % 512];

		if ((*pde & PTE_P) && (*pde & PTE_PS)) {
			if ((*pde & PTE_W) || !writable)
				continue;		/* already at least that */
			if (whole) {
				*pde |= PTE_W;
				continue;
			}
			/* A read-only 2 MiB page of which a part becomes writable: split it. */
			pt = alloc_table(ept_pt, &pt_used, PIN_PT_POOL);
			if (!pt)
				return ENOMEM;
			for (int i = 0; i < 512; i++)
				pt[i] = (r + (uint64_t)i * PAGE) | (*pde & CACHE_BITS) | PTE_P | PTE_U;
			*pde = (uint64_t)pt | PTE_P | PTE_W | PTE_U;
		} else if (!(*pde & PTE_P)) {
			if (whole) {
				*pde = r | want | PTE_PS | attrs;
				continue;
			}
			pt = alloc_table(ept_pt, &pt_used, PIN_PT_POOL);
			if (!pt)
				return ENOMEM;
			*pde = (uint64_t)pt | PTE_P | PTE_W | PTE_U;
		}
		pt = (uint64_t *)(*pde & ADDR_MASK);
		for (uint64_t p = a; p < b; p += PAGE) {
			uint64_t *pte = &pt[(p / PAGE) % 512];

			if (!(*pte & PTE_P))
				*pte = p | want | attrs;
			else if (writable)
				*pte |= PTE_W;
		}
	}
	return 0;
}

/* The TSS's rsp0 (the stack for exceptions from ring 3), found through its GDT descriptor;
 * the TSS layout is architectural: rsp0 is the 8 bytes at offset 4. */
typedef uint64_t unaligned_u64 __attribute__((aligned(1), may_alias));

static unaligned_u64 *tss_rsp0(void)
{
	uint64_t lo = gdt[KERNEL_TSS / 8], hi = gdt[KERNEL_TSS / 8 + 1];
	uint64_t base = ((lo >> 16) & 0xffffff) | (((lo >> 56) & 0xff) << 24) | (hi << 32);

	return (unaligned_u64 *)(base + 4);
}

/*
 * The dump-time tables' work runs in ring 3 (run_unprivileged) once the boot is over: it only
 * reads the normal map and the pin table and writes the dump-time tables, all in the pinned
 * kernel image, every page of which is user-accessible (and writable) in both maps. On hosts
 * that emulate ring 0 an instruction at a time (kvm-pvm) the tables of the pinned image took
 * 19 ms at the dump's start and a GiB's dumped area 37 ms, a loop step per 2 MiB region and per
 * 4 KiB page (docs/benchmarks.md); a trip takes about 0.07 ms. The CR0 and CR3 writes that
 * follow stay in ring 0.
 */
static uint64_t tables_of_pins_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	int err = 0;

	pd_used = 0;
	pt_used = 0;
	for (int i = 0; i < 512; i++) {
		ept_pml4[i] = 0;
		ept_pdpt[i] = 0;
	}
	ept_pml4[0] = (uint64_t)ept_pdpt | PTE_P | PTE_W | PTE_U;
	for (int i = 0; i < nranges && !err; i++)
		err = map_range(ranges[i].start, ranges[i].end, true, false);
	return (uint64_t)err;
}

/* pin_map_dumped()'s checks and mapping of [phys, phys + len) (ring 3: see above). */
static uint64_t map_dumped_here(uint64_t phys, uint64_t len, uint64_t unused)
{
	uint64_t s, e;

	if (phys + len < phys || !paging_is_mapped(phys, len) || page_span(phys, len, &s, &e))
		return EFAULT;
	return enforcing ? (uint64_t)map_range(s, e, false, true) : 0;
}

int pin_enforce_begin(void)
{
	int err;

	pin_image();
	if (enforcing)
		pin_enforce_end();	/* start again from the pin table alone */

	err = (int)run_unprivileged(tables_of_pins_here, 0, 0, 0);
	if (err)
		return err;

	saved_cr0 = read_cr0();
	saved_cr3 = read_cr3();
	saved_rsp0 = *tss_rsp0();
	*tss_rsp0() = (uint64_t)(fault_stack + sizeof(fault_stack));
	write_cr0(saved_cr0 | CR0_WP);
	pin_cr3_writes++;
	write_cr3((uint64_t)ept_pml4);
	enforcing = true;
	return 0;
}

int pin_map_dumped(uint64_t phys, uint64_t len)
{
	int err;

	if (len == 0)
		return 0;
	err = (int)run_unprivileged(map_dumped_here, phys, len, 0);
	if (enforcing)
		flush_ept();	/* (after a refusal too: a strict map_range may have begun) */
	return err;
}

void pin_enforce_end(void)
{
	if (!enforcing)
		return;
	pin_cr3_writes++;
	write_cr3(saved_cr3);
	write_cr0(saved_cr0);
	*tss_rsp0() = saved_rsp0;
	enforcing = false;
}

bool pin_enforcing(void)
{
	return enforcing;
}

/* ---- guards and the fault path ---------------------------------------------------------- */

uint64_t pin_guarded_call(pin_guarded_fn fn, uint64_t a0, uint64_t a1, uint64_t a2,
			  bool *violated)
{
	struct pin_jmp *g;
	uint64_t rv;

	if (violated)
		*violated = false;
	if (nguards == PIN_MAX_GUARDS)
		return fn(a0, a1, a2);		/* too deep: the outer guards still catch */
	g = &guards[nguards];
	if (pin_setjmp(g)) {
		/* pin_check_fault() popped this guard and recorded the violation. */
		if (violated)
			*violated = true;
		return 0;
	}
	nguards++;
	rv = fn(a0, a1, a2);
	nguards--;
	return rv;
}

void pin_check_fault(uint64_t cr2, uint64_t rip, uint64_t error_code)
{
	struct pin_jmp *g;

	if (!enforcing || nguards == 0 || in_check)
		return;
	if ((read_cr3() & ADDR_MASK) != (uint64_t)ept_pml4)
		return;
	if (error_code & (PF_RSVD | PF_PK | PF_SS | PF_SGX))
		return;
	if (error_code & PF_P) {
		if (!(error_code & PF_W))
			return;			/* present and not a write: not ours */
	} else if (!paging_is_mapped(cr2, 1)) {
		return;				/* would fault without enforcement too: a bug */
	}

	in_check = true;
	g = &guards[--nguards];
	last_addr = cr2;
	last_error = error_code;
	violation_count++;
	if (!quiet && violation_hook)
		violation_hook(cr2, rip, (uint32_t)error_code);
	in_check = false;
	pin_longjmp(g, 1);
}

void pin_abandon(void)
{
	pin_enforce_end();
	nguards = 0;
	in_check = false;
	quiet = false;
}

/* ---- self-test -------------------------------------------------------------------------- */

static volatile uint64_t st_pinned_word;

static uint64_t st_read(uint64_t a, uint64_t b, uint64_t c)
{
	return *(volatile uint64_t *)a;
}

static uint64_t st_rewrite(uint64_t a, uint64_t b, uint64_t c)
{
	volatile uint64_t *p = (volatile uint64_t *)a;
	uint64_t v = *p;

	*p = v;		/* the same value: harmless should the write not fault */
	return 1;
}

static uint64_t st_user_read(uint64_t a, uint64_t b, uint64_t c)
{
	return run_unprivileged(st_read, a, 0, 0);
}

static uint64_t st_nested(uint64_t a, uint64_t b, uint64_t c)
{
	bool v = false;

	pin_guarded_call(st_read, a, 0, 0, &v);
	return v ? 42 : 1;
}

static uint64_t st_write_pinned(uint64_t a, uint64_t b, uint64_t c)
{
	st_pinned_word = a;
	return st_pinned_word;
}

static uint64_t st_find_page(uint64_t from)
{
	for (uint64_t p = from; p < 4 * GIB; p += PAGE)
		if (!pin_is_pinned(p, PAGE) && paging_is_mapped(p, PAGE))
			return p;
	return 0;
}

#define ST_CHECK(n, cond, what)                                                   \
	do {                                                                       \
		if (!(cond)) {                                                     \
			failed = (n);                                              \
			printf("pin selftest: check %d failed: %s\n", (n), (what)); \
			goto out;                                                  \
		}                                                                  \
	} while (0)

int pin_selftest(void)
{
	uint64_t flags, a, b, before_b, rv;
	uint32_t count0;
	bool v;
	int failed = 0, err;

	if (enforcing || nguards)
		return EBUSY;
	flags = irq_save();
	a = st_find_page(PAGE);
	b = a ? st_find_page(a + PAGE) : 0;

	/* Reference counts, page granular, before anything is enforced. */
	ST_CHECK(1, a && b, "no unpinned mapped pages to test with");
	ST_CHECK(2, pin((void *)a, 100) == 0 && pin((void *)a, 1) == 0 && pin_is_pinned(a, PAGE) &&
			    unpin((void *)(a + 8), 8) == 0 && pin_is_pinned(a, PAGE) &&
			    unpin((void *)a, PAGE) == 0 && !pin_is_pinned(a, 1) &&
			    unpin((void *)a, 1) == EINVAL,
		 "pin/unpin reference counts");
	ST_CHECK(3, pin((void *)a, 3 * PAGE) == 0 && unpin((void *)(a + PAGE), PAGE) == 0 &&
			    pin_is_pinned(a, PAGE) && !pin_is_pinned(a + PAGE, PAGE) &&
			    pin_is_pinned(a + 2 * PAGE, PAGE) && unpin((void *)a, 3 * PAGE) == EINVAL &&
			    unpin((void *)a, PAGE) == 0 && unpin((void *)(a + 2 * PAGE), PAGE) == 0 &&
			    !pin_is_pinned(a, 1) && !pin_is_pinned(a + 2 * PAGE, 1),
		 "partial unpin");
	ST_CHECK(4, pin(0, 0) == EINVAL, "pin of nothing");

	before_b = *(volatile uint64_t *)b;
	count0 = violation_count;
	quiet = true;
	err = pin_enforce_begin();
	if (err) {
		quiet = false;
		irq_restore(flags);
		printf("pin selftest: pin_enforce_begin: %d\n", err);
		return err;
	}
	ST_CHECK(5, pin_enforcing() && (read_cr3() & ADDR_MASK) == (uint64_t)ept_pml4,
		 "enforcing, on the dump-time page tables");

	/* Ring 0: a read of a mapped but unpinned page. */
	pin_guarded_call(st_read, a, 0, 0, &v);
	ST_CHECK(6, v && last_addr == a && !(last_error & PF_P) && violation_count == count0 + 1,
		 "ring 0 read of an unpinned page caught");

	/* A dumped page reads, and does not take a write (not even ring 0: CR0.WP). */
	ST_CHECK(7, pin_map_dumped(b, PAGE) == 0, "pin_map_dumped");
	rv = pin_guarded_call(st_read, b, 0, 0, &v);
	ST_CHECK(8, !v && rv == before_b, "ring 0 read of a dumped page");
	pin_guarded_call(st_rewrite, b, 0, 0, &v);
	ST_CHECK(9, v && last_addr == b && (last_error & (PF_P | PF_W)) == (PF_P | PF_W),
		 "ring 0 write to a dumped page caught");

	/* Pinned memory (the kernel's .bss) stays writable; nothing unmapped can be dumped. */
	rv = pin_guarded_call(st_write_pinned, 0x5a5a, 0, 0, &v);
	ST_CHECK(10, !v && rv == 0x5a5a, "write to pinned memory");
	ST_CHECK(11, pin_map_dumped(511 * GIB, PAGE) == EFAULT, "EFAULT for an unmapped area");

	/* Ring 3: the same violation, and user_call() still works afterwards. */
	if (usermode_ready) {
		pin_guarded_call(st_user_read, a, 0, 0, &v);
		ST_CHECK(12, v && last_addr == a && (last_error & PF_U), "ring 3 read caught");
		rv = pin_guarded_call(st_user_read, b, 0, 0, &v);
		ST_CHECK(13, !v && rv == before_b, "ring 3 works after a ring 3 violation");
		pin_guarded_call(st_user_read, a, 0, 0, &v);
		ST_CHECK(14, v && violation_count == count0 + 4, "a second ring 3 violation caught");
	}

	/* Nested guards: the inner one catches, the outer call goes on. */
	rv = pin_guarded_call(st_nested, a, 0, 0, &v);
	ST_CHECK(15, !v && rv == 42 && nguards == 0, "nested guards");

out:
	pin_enforce_end();
	quiet = false;
	if (!failed && (pin_enforcing() || (read_cr3() & ADDR_MASK) == (uint64_t)ept_pml4)) {
		failed = 16;
		printf("pin selftest: check 16 failed: the normal map is not back\n");
	}
	irq_restore(flags);
	return failed;
}
