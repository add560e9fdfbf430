#ifndef ARCH_X86_PAGING_H
#define ARCH_X86_PAGING_H

#include <stdbool.h>
#include <stdint.h>

/* Identity map [phys, phys+len) with 2 MiB pages (above 4 GiB: from a small static pool of
 * page directories). Returns false if the range cannot be mapped. */
bool paging_map_identity(uint64_t phys, uint64_t len, bool uncached);

/* Mark the 2 MiB pages of [phys, phys+len) uncached (for MMIO in the first 4 GiB). */
void paging_set_uncached(uint64_t phys, uint64_t len);

/* Highest address (exclusive) up to which every byte is identity mapped. */
uint64_t paging_mapped_limit(void);

/* True if every byte of [phys, phys+len) is mapped. */
bool paging_is_mapped(uint64_t phys, uint64_t len);

/* The normal identity map's page directory entry (a 2 MiB page) for the region holding
 * `phys`, 0 if it is not mapped. For arch/x86/pin.c, which copies its cache attributes. */
uint64_t paging_pde(uint64_t phys);

/* Unmap the 4 KiB guard page under the kernel stack (boot_stack_guard). */
void paging_guard_kernel_stack(void);

#endif
