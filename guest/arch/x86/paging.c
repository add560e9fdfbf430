/*
 * Identity paging. boot.S maps the first 4 GiB with 2 MiB pages; memory above that (RAM of a
 * large guest, or a 64-bit BAR placed high by firmware) is mapped here on demand from a small
 * static pool of page directories, each covering 1 GiB. All paging structures live in .bss.
 *
 * The CPU sets accessed and dirty bits in them. Through this map the crash path touches only
 * the kernel image and device registers, whose 2 MiB entries were accessed and dirtied at
 * boot, and from pin_enforce_begin() on the dump runs on its own tables (arch/x86/pin.c;
 * should they fail, it reads RAM through these): so these hold still from the crash on and
 * are compared with the snapshot - all but guard_pt. It maps the kernel image's 2 MiB region
 * around the stack guard page in 4 KiB pages, some of which the crash path is the first to
 * touch (the IST stacks, the dump-time tables), so it is dump path state (lib/dumpstate.h).
 */
#include "arch/x86/paging.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "lib/dumpstate.h"
#include "lib/string.h"

#define PAGE_2M		(2ull << 20)
#define GIB		(1ull << 30)
#define LOW_MAPPED	(4 * GIB)
#define HIGH_PD_POOL	8		/* 8 GiB above 4 GiB; raise if guests get bigger */
#define PDPT_SLOTS	512		/* one PDPT: 512 GiB */

static uint64_t high_pd_pool[HIGH_PD_POOL][512] __attribute__((aligned(4096)));
/* The 4 KiB page table of the 2 MiB region holding the kernel stack's guard page. */
static uint64_t guard_pt[512] __dumpstate __attribute__((aligned(4096)));
static int high_pd_used;

static uint64_t *pd_for(uint64_t phys, bool allocate)
{
	uint64_t slot = phys / GIB;

	if (slot >= PDPT_SLOTS)
		return 0;
	if (slot < 4)
		return &boot_pd[slot * 512];
	if (!(boot_pdpt[slot] & PTE_P)) {
		uint64_t *pd;

		if (!allocate || high_pd_used == HIGH_PD_POOL)
			return 0;
		pd = high_pd_pool[high_pd_used++];
		memset(pd, 0, 4096);
		boot_pdpt[slot] = (uint64_t)pd | PTE_P | PTE_W | PTE_U;
	}
	return (uint64_t *)(boot_pdpt[slot] & ~0xfffull);
}

static void flush_tlb(void)
{
	write_cr3(read_cr3());
}

bool paging_map_identity(uint64_t phys, uint64_t len, bool uncached)
{
	uint64_t start = phys & ~(PAGE_2M - 1);
	uint64_t end = phys + len;
	bool ok = true;

	if (len == 0)
		return true;
	for (uint64_t a = start; a < end; a += PAGE_2M) {
		uint64_t *pd = pd_for(a, true);

		if (!pd) {
			ok = false;
			break;
		}
		pd[(a / PAGE_2M) % 512] = a | PTE_P | PTE_W | PTE_U | PTE_PS | (uncached ? PTE_PCD | PTE_PWT : 0);
	}
	flush_tlb();
	return ok;
}

void paging_set_uncached(uint64_t phys, uint64_t len)
{
	uint64_t end = phys + len;
	uint64_t first = (phys & ~(PAGE_2M - 1)) / PAGE_2M;
	uint64_t last = ((end < LOW_MAPPED ? end : LOW_MAPPED) + PAGE_2M - 1) / PAGE_2M;

	/* The same entries as a < end && a < LOW_MAPPED stepping by 2 MiB, four at a time: the
	 * boot marks the whole PCI hole (1536 entries for a 1 GiB guest), and where ring 0 is
	 * emulated (arch/x86/user_entry.S) every instruction counts. */
	if (first < last) {
		uint64_t *pde = &boot_pd[first], *stop = &boot_pd[last];

		for (; stop - pde >= 4; pde += 4) {
			pde[0] |= PTE_PCD | PTE_PWT;
			pde[1] |= PTE_PCD | PTE_PWT;
			pde[2] |= PTE_PCD | PTE_PWT;
			pde[3] |= PTE_PCD | PTE_PWT;
		}
		for (; pde < stop; pde++)
			*pde |= PTE_PCD | PTE_PWT;
	}
	flush_tlb();
}

bool paging_is_mapped(uint64_t phys, uint64_t len)
{
	uint64_t end = phys + len;

	if (end < phys)
		return false;
	for (uint64_t a = phys & ~(PAGE_2M - 1); a < end; a += PAGE_2M) {
		uint64_t *pd = pd_for(a, false);

		if (!pd || !(pd[(a / PAGE_2M) % 512] & PTE_P))
			return false;
	}
	return true;
}

/*
 * The page under the kernel stack (boot_stack_guard, boot.S) becomes not present: the 2 MiB
 * page holding it is split into 4 KiB pages with the same attributes, all present but that
 * one. A kernel stack overflow then faults there instead of overwriting .bss below, and
 * because the CPU cannot push the #PF frame either, it turns into a #DF (IST stack, gdt.c).
 * paging_pde() and paging_is_mapped() still see the region as mapped (the PDE is present):
 * the guard page is part of the kernel image, pinned, and dumped (at the end of the kernel's
 * `data` area, just under the dump path's state) through the dump-time map (arch/x86/pin.c),
 * which maps every pinned page.
 */
void paging_guard_kernel_stack(void)
{
	uint64_t guard = (uint64_t)boot_stack_guard;
	uint64_t region = guard & ~(PAGE_2M - 1);
	uint64_t *pde = &boot_pd[region / PAGE_2M];
	uint64_t attrs = *pde & (PTE_P | PTE_W | PTE_U | PTE_PWT | PTE_PCD);

	if (guard >= LOW_MAPPED || !(*pde & PTE_P) || !(*pde & PTE_PS))
		return;
	/* Four entries an iteration (ring 0 may be emulated: see paging_set_uncached()). */
	for (uint64_t i = 0, v = region | attrs; i < 512; i += 4, v += 4 * 4096) {
		guard_pt[i] = v;
		guard_pt[i + 1] = v + 4096;
		guard_pt[i + 2] = v + 2 * 4096;
		guard_pt[i + 3] = v + 3 * 4096;
	}
	guard_pt[(guard - region) / 4096] = 0;
	*pde = (uint64_t)guard_pt | PTE_P | PTE_W | PTE_U;
	flush_tlb();
}

uint64_t paging_pde(uint64_t phys)
{
	uint64_t *pd = pd_for(phys, false);

	return pd ? pd[(phys / PAGE_2M) % 512] : 0;
}

uint64_t paging_mapped_limit(void)
{
	uint64_t a = 0;

	while (paging_is_mapped(a, PAGE_2M))
		a += PAGE_2M;
	return a;
}
